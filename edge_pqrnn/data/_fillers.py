"""Deterministic values for the lists home-assistant-intents leaves empty.

``{name}``, ``{area}`` and ``{floor}`` are filled at run time from the user's home and
seven lists are wildcards, so the package has no values for them. These small tables
give each default language a few natural values per list; device names depend on the
template's entity domain (a lock gets "front door", a vacuum "robot vacuum").
Languages without a table use the English one (recorded in the dataset notes).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Iterable

#: Entity domain -> filler group for ``{name}``.
DOMAIN_GROUPS = {
    "light": "light",
    "switch": "device",
    "input_boolean": "device",
    "button": "device",
    "input_button": "device",
    "valve": "device",
    "fan": "fan",
    "cover": "cover",
    "lock": "lock",
    "media_player": "media",
    "climate": "climate",
    "vacuum": "vacuum",
    "lawn_mower": "mower",
    "todo": "list",
    "person": "person",
    "weather": "weather",
    "scene": "scene",
    "script": "scene",
    "sensor": "sensor",
    "binary_sensor": "sensor",
}

#: List name -> filler group, for the lists that are empty or wildcards everywhere.
LIST_GROUPS = {
    "area": "area",
    "floor": "floor",
    "message": "message",
    "zone": "zone",
    "timer_name": "timer",
    "timer_command": "command",
    "shopping_list_item": "item",
    "todo_list_item": "item",
}

#: Media search queries: names that stay as they are in every language.
SEARCH_QUERIES = ("Mozart", "ABBA", "Bohemian Rhapsody", "Taylor Swift")

# One row per language: group -> "|"-separated values, in fillers.json (data, not code).
_TABLES: dict[str, dict[str, str]] = json.loads(
    (pathlib.Path(__file__).with_name("fillers.json")).read_text(encoding="utf-8"))


@dataclasses.dataclass(frozen=True)
class Fillers:
    """The filler values of one language."""

    language: str
    groups: dict[str, tuple[str, ...]]

    def values_for(self, list_name: str, domains: Iterable[str]) -> tuple[str, ...]:
        """Values for an empty/wildcard list; ``{name}`` values follow the domains.

        Args:
            list_name: the referenced list (``name``, ``area``, ``message``...).
            domains: the template block's entity domains (for ``{name}``).

        Returns:
            A non-empty tuple of values.
        """
        if list_name == "search_query":
            return SEARCH_QUERIES
        if list_name in LIST_GROUPS:
            return self.groups[LIST_GROUPS[list_name]]
        # {name} and any other unfilled list: device names of the template's domains.
        values = tuple(
            value
            for group in sorted({DOMAIN_GROUPS[d] for d in domains if d in DOMAIN_GROUPS})
            for value in self.groups[group]
        )
        return values or self.groups["device"]


def has_language(language: str) -> bool:
    """Whether ``language`` has its own table (otherwise English values are used)."""
    return language in _TABLES


def for_language(language: str) -> Fillers:
    """The fillers of a language (English ones when it has no table)."""
    table = _TABLES.get(language, _TABLES["en"])
    return Fillers(language, {group: tuple(values.split("|")) for group, values in table.items()})

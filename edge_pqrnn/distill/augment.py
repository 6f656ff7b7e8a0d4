"""Text augmentations for distillation: new training texts the teacher labels.

The student learns from the teacher's logits on these texts, so they need no gold
labels; slot spans are still carried along (mapped through every edit) so that they can
be inspected or used as weak labels. Every augmentation works on whitespace words, each
remembering the slot it belongs to (by character overlap), and the text is rebuilt with
single spaces; the slot spans are the runs of words of one slot.

Operations (DESIGN.md §12; the paper's augmentation needs no other model):

* ``mask``: replace words by a mask token (``<mask>``, the teacher's own mask piece).
* ``drop``: delete words.
* ``swap``: exchange two words at most ``swap_distance`` apart, both outside slots or
  both inside the same slot (so spans stay contiguous).
* ``substitute``: replace a slot's value by another value of the same slot type seen in
  the training data (``"from boston"`` -> ``"from san diego"``): the span moves with it.
* ``char_noise``: delete, duplicate, move or insert a character inside a word, like the
  projection's training-time distortion.
* ``reorder``: move whole units (a slot's words, or one word outside slots) to other
  positions: templates of one intent often differ only in word order (verb first or
  last), which a sequence model otherwise learns as a cue. In scripts without spaces
  (Chinese, Thai, ...) a word is first cut where a slot begins or ends, so the slot
  values and the text between them move, and the pieces join without spaces. Weight 0
  by default, so the variants (and teacher label caches) of the other operations stay
  as they were.
* other locales (multilingual data): :func:`other_locale_examples` adds sentences of
  languages the student is not trained on.

Everything is seeded: variant ``k`` of an example depends only on ``(seed, text, k)``,
so the same call gives the same texts on every machine and in any order (the teacher's
label cache is keyed by text and relies on it).

Example:
    >>> from edge_pqrnn.data.records import Example
    >>> ex = Example("flights from boston to denver", "atis_flight", ((13, 19, "fromloc"), (23, 29, "toloc")))
    >>> out = augment([ex, Example("from dallas to denver", "atis_flight", ((5, 11, "fromloc"),))],
    ...               AugmentConfig(copies=1, weights={"substitute": 1.0}))
    >>> [a.text for a in out]
    ['flights from dallas to denver', 'from boston to denver']
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence

from edge_pqrnn.data import load_dataset
from edge_pqrnn.data.records import Example, stable_seed
from edge_pqrnn.errors import ConfigError
from edge_pqrnn.projection.reference import SPLIT, char_class

OPERATIONS = ("mask", "drop", "swap", "substitute", "char_noise", "reorder")
MASK_TOKEN = "<mask>"

_DEFAULT_WEIGHTS = {"mask": 1.0, "drop": 1.0, "swap": 1.0, "substitute": 2.0, "char_noise": 1.0}


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """How many variants and which operations.

    Args:
        copies: variants made per example (duplicates of an original or of each other
            are dropped, so the result may be smaller).
        weights: relative probability of each operation (``OPERATIONS``); one
            operation is drawn per variant. Missing operations have weight 0.
        rate: fraction of words an operation touches (at least one).
        swap_distance: how far apart swapped words may be.
        mask_token: what ``mask`` writes.
        seed: the seed of every random choice.

    Raises:
        ConfigError: negative values, unknown operations, or all weights zero.
    """

    copies: int = 2
    weights: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(_DEFAULT_WEIGHTS))
    rate: float = 0.15
    swap_distance: int = 2
    mask_token: str = MASK_TOKEN
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.copies, int) or self.copies < 0:
            raise ConfigError(f"augment copies must be an integer >= 0, got {self.copies!r}")
        unknown = set(self.weights) - set(OPERATIONS)
        if unknown:
            raise ConfigError(f"unknown augmentation {sorted(unknown)}; choose from {', '.join(OPERATIONS)}")
        if any(w < 0 for w in self.weights.values()) or (self.copies and not any(self.weights.values())):
            raise ConfigError(f"augmentation weights must be >= 0 and not all zero, got {dict(self.weights)}")
        if not 0.0 < self.rate <= 1.0:
            raise ConfigError(f"augment rate must be in (0, 1], got {self.rate!r}")
        if self.swap_distance < 1:
            raise ConfigError(f"swap_distance must be >= 1, got {self.swap_distance!r}")

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        data = dataclasses.asdict(self)
        data["weights"] = dict(self.weights)
        return data


# A word and the index of the slot it belongs to (-1: none).
_Word = tuple[str, int]


def _word_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) of each whitespace-separated word of ``text``."""
    spans: list[tuple[int, int]] = []
    i = 0
    for part in text.split():
        start = text.index(part, i)
        i = start + len(part)
        spans.append((start, i))
    return spans


def _words(example: Example) -> list[_Word]:
    return [(example.text[s:e], _slot_of(example, s, e)) for s, e in _word_spans(example.text)]


def _slot_of(example: Example, start: int, end: int) -> int:
    """The index of the slot overlapping ``text[start:end]`` most (-1: none)."""
    slot, best = -1, 0
    for k, (s, e, _) in enumerate(example.slots):
        overlap = min(e, end) - max(s, start)
        if overlap > best:
            slot, best = k, overlap
    return slot


def _pieces(example: Example) -> list[_Word]:
    """The words, each cut where a slot begins or ends inside it when both characters at
    the cut are of a script without spaces (a Latin word with a slot on part of it, like
    Hungarian ``konyhában``, stays whole)."""
    text = example.text
    cuts = {i for s, e, _ in example.slots for i in (s, e)
            if 0 < i < len(text) and char_class(ord(text[i - 1])) == SPLIT == char_class(ord(text[i]))}
    out: list[_Word] = []
    for start, end in _word_spans(text):
        bounds = [start] + sorted(i for i in cuts if start < i < end) + [end]
        out += [(text[a:b], _slot_of(example, a, b)) for a, b in zip(bounds, bounds[1:])]
    return out


def _rebuild(example: Example, words: list[_Word], slot_types: Mapping[int, str] | None = None,
             sep: str = " ") -> Example:
    """Text of the words joined by ``sep``; spans are the runs of words of one slot."""
    types = dict(enumerate(span[2] for span in example.slots))
    types.update(slot_types or {})
    parts: list[str] = []
    spans: list[tuple[int, int, str]] = []
    position = 0
    previous = -1
    for word, slot in words:
        if parts:
            position += len(sep)
        start, end = position, position + len(word)
        parts.append(word)
        position = end
        if slot >= 0 and slot == previous and spans:
            spans[-1] = (spans[-1][0], end, spans[-1][2])
        elif slot >= 0:
            spans.append((start, end, types[slot]))
        previous = slot
    return dataclasses.replace(example, text=sep.join(parts), slots=tuple(spans))


def _pick(rng: random.Random, n: int, rate: float) -> list[int]:
    count = max(1, round(rate * n))
    return sorted(rng.sample(range(n), min(count, n)))


def mask_words(example: Example, rng: random.Random, rate: float = 0.15, token: str = MASK_TOKEN) -> Example:
    """Replace about ``rate`` of the words (at least one) by ``token``; spans kept."""
    words = _words(example)
    if not words:
        return example
    for i in _pick(rng, len(words), rate):
        words[i] = (token, words[i][1])
    return _rebuild(example, words)


def drop_words(example: Example, rng: random.Random, rate: float = 0.15) -> Example:
    """Delete about ``rate`` of the words (at least one, never all)."""
    words = _words(example)
    if len(words) < 2:
        return example
    gone = set(_pick(rng, len(words), rate)[: len(words) - 1])
    return _rebuild(example, [w for i, w in enumerate(words) if i not in gone])


def swap_words(example: Example, rng: random.Random, rate: float = 0.15, distance: int = 2) -> Example:
    """Swap pairs of words at most ``distance`` apart, both outside slots or in the same slot."""
    words = _words(example)
    pairs = [
        (i, j)
        for i in range(len(words))
        for j in range(i + 1, min(len(words), i + distance + 1))
        if words[i][1] == words[j][1] and words[i][0] != words[j][0]
    ]
    if not pairs:
        return example
    for i, j in rng.sample(pairs, min(len(pairs), max(1, round(rate * len(words))))):
        words[i], words[j] = words[j], words[i]
    return _rebuild(example, words)


def slot_values(examples: Sequence[Example]) -> dict[str, list[str]]:
    """Each slot type's distinct values in ``examples`` (sorted, for determinism)."""
    values: dict[str, set[str]] = defaultdict(set)
    for ex in examples:
        for start, end, slot_type in ex.slots:
            value = " ".join(ex.text[start:end].split())
            if value:
                values[(ex.language, slot_type)].add(value)
    return {key: sorted(v) for key, v in values.items()}


def substitute_slots(example: Example, rng: random.Random, values: Mapping, rate: float = 0.15) -> Example:
    """Replace slot values by other values of the same slot type (and language).

    Args:
        example: the example.
        rng: the random generator.
        values: from :func:`slot_values`.
        rate: fraction of the example's slots replaced (at least one).

    Returns:
        The new example, its spans on the new values (unchanged when it has no slot
        with an alternative value).
    """
    words = _words(example)
    present = sorted({slot for _, slot in words if slot >= 0})
    candidates = [k for k in present if len(values.get((example.language, example.slots[k][2]), ())) > 1]
    if not candidates:
        return example
    chosen = set(rng.sample(candidates, min(len(candidates), max(1, round(rate * len(present))))))
    out: list[_Word] = []
    done: set[int] = set()
    for word, slot in words:
        if slot not in chosen:
            out.append((word, slot))
            continue
        if slot in done:
            continue
        done.add(slot)
        current = " ".join(example.text[example.slots[slot][0] : example.slots[slot][1]].split())
        options = [v for v in values[(example.language, example.slots[slot][2])] if v != current]
        out += [(w, slot) for w in rng.choice(options).split()]
    return _rebuild(example, out)


def char_noise(example: Example, rng: random.Random, rate: float = 0.15) -> Example:
    """Delete, duplicate, move or insert one character in about ``rate`` of the words."""
    words = _words(example)
    if not words:
        return example
    alphabet = sorted({c for w, _ in words for c in w}) or ["e"]
    for i in _pick(rng, len(words), rate):
        word, slot = words[i]
        chars = list(word)
        kind = rng.choice(("delete", "duplicate", "move", "insert") if len(chars) > 1 else ("duplicate", "insert"))
        at = rng.randrange(len(chars))
        if kind == "delete":
            del chars[at]
        elif kind == "duplicate":
            chars.insert(at, chars[at])
        elif kind == "move":
            c = chars.pop(at)
            chars.insert(rng.randrange(len(chars) + 1), c)
        else:
            chars.insert(rng.randrange(len(chars) + 1), rng.choice(alphabet))
        words[i] = ("".join(chars), slot)
    return _rebuild(example, words)


def reorder_units(example: Example, rng: random.Random, rate: float = 0.15) -> Example:
    """Move about ``rate`` of the units (at least one) to random new positions; a unit is
    a slot's run of words or one word outside slots, so spans stay whole. In scripts
    without spaces words are cut at slot boundaries first, and a text without any
    whitespace is joined back without spaces (``"打开客厅的灯"`` -> ``"客厅的灯打开"``)."""
    units: list[list[_Word]] = []
    for word in _pieces(example):
        if units and word[1] >= 0 and units[-1][0][1] == word[1]:
            units[-1].append(word)
        else:
            units.append([word])
    if len(units) < 2:
        return example
    for _ in _pick(rng, len(units), rate):
        unit = units.pop(rng.randrange(len(units)))
        units.insert(rng.randrange(len(units) + 1), unit)
    sep = " " if any(c.isspace() for c in example.text) else ""
    return _rebuild(example, [w for unit in units for w in unit], sep=sep)


def augment_one(example: Example, operation: str, rng: random.Random, config: AugmentConfig,
                values: Mapping | None = None) -> Example:
    """Apply one named operation (``OPERATIONS``) to ``example``."""
    if operation == "mask":
        return mask_words(example, rng, config.rate, config.mask_token)
    if operation == "drop":
        return drop_words(example, rng, config.rate)
    if operation == "swap":
        return swap_words(example, rng, config.rate, config.swap_distance)
    if operation == "substitute":
        return substitute_slots(example, rng, values or {}, config.rate)
    if operation == "char_noise":
        return char_noise(example, rng, config.rate)
    if operation == "reorder":
        return reorder_units(example, rng, config.rate)
    raise ConfigError(f"unknown augmentation {operation!r}; choose from {', '.join(OPERATIONS)}")


def augment(examples: Sequence[Example], config: AugmentConfig | None = None) -> list[Example]:
    """``config.copies`` augmented variants of each example, new texts only.

    Variant ``k`` of an example draws its operation and edits from a generator seeded
    by ``(config.seed, text, k)``. Variants equal to an original text or to an earlier
    variant are dropped; an operation that cannot apply (e.g. ``substitute`` on a text
    without slots) falls back to another one of positive weight.

    Args:
        examples: the training examples (their slot values feed ``substitute``).
        config: the settings (default :class:`AugmentConfig`).

    Returns:
        The new examples (intent and language copied; spans mapped through the edits),
        grouped by source example in input order.
    """
    config = config or AugmentConfig()
    values = slot_values(examples) if "substitute" in active_operations(config)[0] else {}
    seen = {ex.text for ex in examples}
    out: list[Example] = []
    for ex in examples:
        for k in range(config.copies):
            for new in _attempts(ex, k, config, values):
                if new.text and new.text not in seen:
                    seen.add(new.text)
                    out.append(new)
                    break
    return out


def active_operations(config: AugmentConfig) -> tuple[list[str], list[float]]:
    """The operations of positive weight, in :data:`OPERATIONS` order, and their weights."""
    operations = [op for op in OPERATIONS if config.weights.get(op, 0) > 0]
    return operations, [config.weights[op] for op in operations]


def _attempts(example: Example, k: int, config: AugmentConfig, values: Mapping) -> Iterator[Example]:
    """Variant ``k``'s tries, lazily: the drawn operation, then the others as fallbacks,
    all from one generator seeded by ``(config.seed, text, k)``."""
    operations, weights = active_operations(config)
    rng = random.Random(stable_seed(config.seed, example.text, k))
    first = rng.choices(operations, weights)[0]
    for operation in [first] + [op for op in operations if op != first]:
        yield augment_one(example, operation, rng, config, values)


def variant_candidates(example: Example, config: AugmentConfig, values: Mapping) -> list[list[str | None]]:
    """For each copy ``k``, the texts :func:`augment` would try for ``example``, in its
    order (the drawn operation, then the fallbacks), from the same generator.

    Computing every fallback eagerly consumes the generator in the same order as
    ``augment`` does lazily, so candidate ``i`` is the text ``augment`` gets if the
    first ``i`` are rejected (the choice: :func:`edge_pqrnn.distill.label.pick_variants`).
    An operation that raises ends the list with ``None``.
    """
    out: list[list[str | None]] = []
    for k in range(config.copies):
        texts: list[str | None] = []
        tries = _attempts(example, k, config, values)
        while True:
            try:
                texts.append(next(tries).text)
            except StopIteration:
                break
            except Exception:  # noqa: BLE001 - augment() would raise only if it got here
                texts.append(None)
                break
        out.append(texts)
    return out


def other_locale_examples(languages: Sequence[str], exclude: Sequence[str] = (), per_intent: int = 20,
                          seed: int = 0) -> list[Example]:
    """Training sentences of other locales from the multilingual generator, for the
    teacher to label (the student sees more languages' words without gold labels).

    Args:
        languages: locale codes to take sentences from (home-assistant-intents codes).
        exclude: locales to skip (the student's own).
        per_intent: at most this many sentences per (language, intent).
        seed: generation seed.

    Returns:
        The examples (train split of each locale).

    Raises:
        DataError: an unknown locale (the message lists the valid ones).
    """
    wanted = [lang for lang in languages if lang not in set(exclude)]
    if not wanted:
        return []
    dataset = load_dataset("multilingual", languages=wanted, seed=seed, max_per_intent=per_intent)
    return list(dataset.train)


__all__ = [
    "MASK_TOKEN",
    "OPERATIONS",
    "AugmentConfig",
    "active_operations",
    "augment",
    "augment_one",
    "char_noise",
    "drop_words",
    "mask_words",
    "other_locale_examples",
    "slot_values",
    "substitute_slots",
    "swap_words",
    "variant_candidates",
]

"""The records every loader returns: one labelled utterance and a split dataset.

Slots are character spans into the text, never word indices: the projection tokenises
differently from any dataset (punctuation apart, CJK/Thai per character), so tags are
derived from spans per token row by :func:`edge_pqrnn.data.align.bio_tags`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Sequence

from edge_pqrnn.errors import DataError

Span = tuple[int, int, str]


@dataclasses.dataclass(frozen=True)
class Example:
    """One utterance.

    Attributes:
        text: the utterance as the model sees it.
        intent: the intent label (multi-intent ATIS labels keep the full ``a;b`` string).
        slots: ``(start, end, type)`` character spans, ``[start, end)`` into ``text``;
            the type has no ``B-``/``I-`` prefix.
        language: a language code (``"en"``, ``"pt-BR"``, ``"zh-CN"``...).
    """

    text: str
    intent: str
    slots: tuple[Span, ...] = ()
    language: str = "en"


@dataclasses.dataclass
class Dataset:
    """A dataset split into train/dev/test, with its label inventories.

    Attributes:
        name: the spec it was loaded from (``"atis"``, ``"csv:/path/file.csv"``...).
        train, dev, test: the examples of each split.
        intents: sorted intent labels of train + dev: what a model can predict. Test
            labels outside it are kept and always scored wrong (see ``notes``).
        slot_types: sorted slot types seen in train (``[]`` without slots).
        has_slots: whether the dataset carries slot annotations.
        languages: sorted language codes present in the data.
        notes: provenance, counts and how unseen test labels are scored.
    """

    name: str
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    intents: list[str]
    slot_types: list[str]
    has_slots: bool
    languages: list[str]
    notes: dict


def stable_bucket(key: str, buckets: int = 100) -> int:
    """A bucket in ``[0, buckets)`` for a string, the same on every machine and run.

    Python's ``hash()`` is salted per process, so splits use a cryptographic digest.
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % buckets


def stable_seed(*parts: object) -> int:
    """A 64-bit seed derived from the parts (for per-item generators independent of order)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def cap_per_intent(examples: Sequence[Example], max_per_intent: int | None, seed: int) -> list[Example]:
    """Keep at most ``max_per_intent`` examples per (language, intent), chosen by seed.

    Args:
        examples: the examples of one split.
        max_per_intent: the cap; ``None`` keeps everything.
        seed: selects which examples survive (the kept order is the input order).

    Returns:
        The kept examples, in their original order.

    Raises:
        DataError: when ``max_per_intent`` is smaller than 1.
    """
    if max_per_intent is None:
        return list(examples)
    if max_per_intent < 1:
        raise DataError(f"max_per_intent must be at least 1 (or None for no cap), got {max_per_intent}")
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        groups[(ex.language, ex.intent)].append(i)
    keep: set[int] = set()
    for key, indices in sorted(groups.items()):
        if len(indices) > max_per_intent:
            indices = random.Random(stable_seed(seed, *key)).sample(indices, max_per_intent)
        keep.update(indices)
    return [ex for i, ex in enumerate(examples) if i in keep]


def build_dataset(
    name: str,
    train: list[Example],
    dev: list[Example],
    test: list[Example],
    *,
    has_slots: bool,
    notes: dict,
) -> Dataset:
    """Assemble a :class:`Dataset`: label inventories, counts and unseen-label notes.

    Args:
        name: the dataset spec.
        train, dev, test: the split examples.
        has_slots: whether slots are annotated.
        notes: provenance notes to extend (copied, not modified).

    Returns:
        The dataset, with ``notes`` extended by ``counts``, ``unseen_test_intents`` and
        ``unseen_test_slot_types`` and a ``scoring`` sentence.

    Raises:
        DataError: when train is empty or has a single intent.
    """
    if not train:
        raise DataError(f"{name}: the train split is empty; give more data or a split column with 'train' rows")
    intents = sorted({ex.intent for ex in train} | {ex.intent for ex in dev})
    if len(intents) < 2:
        raise DataError(
            f"{name}: only one intent ({intents[0]!r}) in train/dev; a classifier needs at "
            "least two labels (check the label column)"
        )
    slot_types = sorted({span[2] for ex in train for span in ex.slots})
    languages = sorted({ex.language for ex in (*train, *dev, *test)})
    known = set(intents)
    unseen_intents = Counter(ex.intent for ex in test if ex.intent not in known)
    known_slots = set(slot_types)
    unseen_slots = Counter(span[2] for ex in test for span in ex.slots if span[2] not in known_slots)
    notes = dict(notes)
    notes["counts"] = {
        "train": len(train),
        "dev": len(dev),
        "test": len(test),
        "intents": len(intents),
        "slot_types": len(slot_types),
        "languages": len(languages),
    }
    notes["unseen_test_intents"] = dict(sorted(unseen_intents.items()))
    notes["unseen_test_slot_types"] = dict(sorted(unseen_slots.items()))
    notes["scoring"] = (
        "strict: test examples whose intent is not in train/dev stay in test and always count "
        "as wrong; gold spans of slot types not seen in train stay and count as misses"
    )
    return Dataset(
        name=name,
        train=train,
        dev=dev,
        test=test,
        intents=intents,
        slot_types=slot_types,
        has_slots=has_slots,
        languages=languages,
        notes=notes,
    )

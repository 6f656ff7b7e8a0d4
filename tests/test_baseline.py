"""Tests for edge_pqrnn.baseline on the shipped fixtures."""

from __future__ import annotations

from edge_pqrnn.baseline import run_baseline
from edge_pqrnn.data import load_dataset


def test_baseline_beats_majority_on_snips_fixture():
    result = run_baseline(load_dataset("fixture:snips"))
    assert result["features"]["analyzer"] == "word"
    assert result["n_test"] == 28
    assert result["majority"]["intent_accuracy"] < 0.2  # 7 balanced intents
    assert result["intent_accuracy"] >= 0.8
    assert result["macro_f1"] > result["majority"]["macro_f1"] + 0.5


def test_baseline_is_per_language_with_char_ngrams():
    result = run_baseline(load_dataset("fixture:multilingual"))
    assert result["features"]["analyzer"] == "char"
    assert list(result["per_language"]) == ["de", "en", "th", "zh-CN"]
    for language, scores in result["per_language"].items():
        assert scores["accuracy"] > result["majority"]["per_language"][language]["accuracy"], language


def test_baseline_keeps_unseen_test_intents():
    ds = load_dataset("fixture:atis")
    assert any(ex.intent not in ds.intents for ex in ds.test)
    assert run_baseline(ds)["n_test"] == len(ds.test)  # scored (as wrong), not dropped

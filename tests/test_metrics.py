"""Tests for edge_pqrnn.metrics against hand-computed values and seqeval's semantics."""

from __future__ import annotations

import pytest

from edge_pqrnn.data.align import spans_from_tags
from edge_pqrnn.errors import DataError
from edge_pqrnn.metrics import exact_match, intent_accuracy, macro_f1, per_language, slot_f1
from edge_pqrnn.projection.reference import tokenize


def test_intent_accuracy():
    assert intent_accuracy(["a", "b", "c", "a"], ["a", "b", "a", "b"]) == 0.5


def test_macro_f1_by_hand():
    # a: P 1/1, R 1/2 -> 2/3; b: P 1/3, R 1/1 -> 1/2; c: 0  => (2/3 + 1/2 + 0) / 3 = 7/18
    assert macro_f1(["a", "a", "b", "c"], ["a", "b", "b", "b"]) == pytest.approx(7 / 18)


def test_macro_f1_counts_labels_only_predicted():
    # gold never has "x": it still enters the average with F1 0 (sklearn's convention)
    assert macro_f1(["a", "a"], ["a", "x"]) == pytest.approx((2 / 3 + 0) / 2)


def test_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    gold = ["a", "b", "c", "a", "b", "d", "a"]
    pred = ["a", "c", "c", "b", "b", "a", "e"]
    assert macro_f1(gold, pred) == pytest.approx(f1_score(gold, pred, average="macro", zero_division=0))


def tags_to_spans(tag_rows: list[list[str]]) -> list[tuple]:
    out = []
    for tags in tag_rows:
        tokens = tokenize(" ".join(f"w{i}" for i in range(len(tags))))
        out.append(spans_from_tags(tags, tokens))
    return out


def test_slot_f1_seqeval_readme_example():
    # seqeval's README example: f1_score(y_true, y_pred) == 0.50
    y_true = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    y_pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    assert slot_f1(tags_to_spans(y_true), tags_to_spans(y_pred)) == pytest.approx(0.5)


def test_slot_f1_orphan_i_starts_an_entity_like_seqeval():
    # seqeval (default mode) reads "I-PER I-PER" as one PER entity, equal to "B-PER I-PER"
    gold = tags_to_spans([["B-PER", "I-PER", "O"]])
    assert slot_f1(gold, tags_to_spans([["I-PER", "I-PER", "O"]])) == 1.0
    # a type switch inside a chunk splits it: 2 predicted entities, none exact
    assert slot_f1(gold, tags_to_spans([["B-PER", "I-LOC", "O"]])) == 0.0


def test_slot_f1_by_hand():
    gold = [[(0, 3, "a"), (4, 7, "b")], [(0, 2, "a")], []]
    pred = [[(0, 3, "a"), (4, 6, "b")], [], [(1, 2, "c")]]
    # tp 1, 3 predicted, 3 gold -> P = R = F1 = 1/3
    assert slot_f1(gold, pred) == pytest.approx(1 / 3)
    assert slot_f1([[]], [[]]) == 0.0


def test_exact_match_needs_intent_and_every_slot():
    gold_i, pred_i = ["a", "a", "b", "b"], ["a", "a", "b", "c"]
    gold_s = [[(0, 1, "x")], [(0, 1, "x")], [], []]
    pred_s = [[(0, 1, "x")], [(0, 2, "x")], [], []]
    assert exact_match(gold_i, pred_i, gold_s, pred_s) == 0.5


def test_per_language_scores_each_subset():
    gold = ["a", "b", "a", "c", "c"]
    pred = ["a", "a", "a", "c", "d"]
    langs = ["en", "en", "de", "de", "de"]
    result = per_language(gold, pred, langs)
    assert list(result) == ["de", "en"]
    assert result["en"] == {"n": 2, "accuracy": 0.5, "macro_f1": pytest.approx((2 / 3 + 0) / 2)}
    # de: a F1 1, c P 1 R 1/2 -> 2/3, d 0  => 5/9
    assert result["de"]["accuracy"] == pytest.approx(2 / 3)
    assert result["de"]["macro_f1"] == pytest.approx(5 / 9)
    with_slots = per_language(gold, pred, langs, [[(0, 1, "x")]] * 5, [[(0, 1, "x")]] * 2 + [[]] * 3)
    assert with_slots["en"]["slot_f1"] == 1.0 and with_slots["de"]["slot_f1"] == 0.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: intent_accuracy(["a"], ["a", "b"]), "different lengths \\[1, 2\\]"),
        (lambda: macro_f1([], []), "no utterances"),
        (lambda: slot_f1([[]], []), "different lengths"),
        (lambda: per_language(["a"], ["a"], ["en"], gold_spans=[[]]), "both gold_spans and pred_spans"),
    ],
)
def test_metric_errors(call, message):
    with pytest.raises(DataError, match=message):
        call()

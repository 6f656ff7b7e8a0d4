"""Intent and slot metrics, with the conventions the field reports.

* Intent accuracy and macro-F1 over the union of gold and predicted labels (as
  ``sklearn.metrics.f1_score(average="macro", zero_division=0)``): a gold label the
  model cannot predict (unseen in train) scores F1 = 0 and pulls the macro down.
* Slot F1 is entity-level micro F1 over exact ``(start, end, type)`` matches, as
  seqeval computes it over chunks decoded from BIO tags (no gold and no predicted
  entities gives 0.0, like seqeval with ``zero_division=0``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from edge_pqrnn.errors import DataError


def _check_lengths(name: str, *sequences: Sequence) -> None:
    lengths = {len(s) for s in sequences}
    if len(lengths) != 1:
        raise DataError(
            f"{name}: inputs have different lengths {[len(s) for s in sequences]}; pass one item per utterance"
        )
    if lengths == {0}:
        raise DataError(f"{name}: no utterances to score")


def intent_accuracy(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Fraction of utterances whose predicted intent equals the gold one.

    Args:
        gold: gold intent per utterance.
        pred: predicted intent per utterance.

    Returns:
        Accuracy in [0, 1].

    Raises:
        DataError: on empty or different-length inputs.

    Example:
        >>> intent_accuracy(["a", "b", "b"], ["a", "b", "a"])
        0.6666666666666666
    """
    _check_lengths("intent_accuracy", gold, pred)
    return sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)


def _f1(tp: int, n_pred: int, n_gold: int) -> float:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def macro_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Unweighted mean of per-label F1 over every label in gold or pred.

    Args:
        gold: gold label per utterance.
        pred: predicted label per utterance.

    Returns:
        Macro-F1 in [0, 1]; a label with zero precision and recall counts as 0.

    Raises:
        DataError: on empty or different-length inputs.

    Example:
        >>> round(macro_f1(["a", "a", "b"], ["a", "b", "b"]), 4)  # F1 a = 2/3, b = 2/3
        0.6667
    """
    _check_lengths("macro_f1", gold, pred)
    tp: Counter = Counter(g for g, p in zip(gold, pred, strict=True) if g == p)
    n_gold, n_pred = Counter(gold), Counter(pred)
    labels = set(n_gold) | set(n_pred)
    return sum(_f1(tp[label], n_pred[label], n_gold[label]) for label in labels) / len(labels)


def slot_f1(gold_spans: Sequence[Sequence[tuple]], pred_spans: Sequence[Sequence[tuple]]) -> float:
    """Entity-level micro F1 over exact ``(start, end, type)`` matches (seqeval semantics).

    Args:
        gold_spans: per utterance, its gold spans.
        pred_spans: per utterance, its predicted spans (e.g. from
            :func:`edge_pqrnn.data.align.spans_from_tags`).

    Returns:
        F1 in [0, 1]; 0.0 when there are neither gold nor predicted entities.

    Raises:
        DataError: on empty or different-length inputs.

    Example:
        >>> slot_f1([[(0, 3, "city")], [(4, 8, "date")]], [[(0, 3, "city")], [(4, 7, "date")]])
        0.5
    """
    _check_lengths("slot_f1", gold_spans, pred_spans)
    tp = n_gold = n_pred = 0
    for gold, pred in zip(gold_spans, pred_spans, strict=True):
        gold_count, pred_count = Counter(map(tuple, gold)), Counter(map(tuple, pred))
        tp += sum((gold_count & pred_count).values())
        n_gold += len(gold)
        n_pred += len(pred)
    return _f1(tp, n_pred, n_gold)


def exact_match(
    gold_intents: Sequence[str],
    pred_intents: Sequence[str],
    gold_spans: Sequence[Sequence[tuple]],
    pred_spans: Sequence[Sequence[tuple]],
) -> float:
    """Fraction of utterances with the right intent *and* exactly the right slot set
    ("sentence accuracy" in the joint intent/slot literature).

    Args:
        gold_intents, pred_intents: intent per utterance.
        gold_spans, pred_spans: spans per utterance (order does not matter).

    Returns:
        Exact-match rate in [0, 1].

    Raises:
        DataError: on empty or different-length inputs.

    Example:
        >>> exact_match(["a", "a"], ["a", "a"], [[(0, 1, "x")], []], [[(0, 1, "x")], [(2, 3, "y")]])
        0.5
    """
    _check_lengths("exact_match", gold_intents, pred_intents, gold_spans, pred_spans)
    hits = sum(
        gi == pi and Counter(map(tuple, gs)) == Counter(map(tuple, ps))
        for gi, pi, gs, ps in zip(gold_intents, pred_intents, gold_spans, pred_spans, strict=True)
    )
    return hits / len(gold_intents)


def per_language(
    gold: Sequence[str],
    pred: Sequence[str],
    languages: Sequence[str],
    gold_spans: Sequence[Sequence[tuple]] | None = None,
    pred_spans: Sequence[Sequence[tuple]] | None = None,
) -> dict[str, dict]:
    """Accuracy and macro-F1 (and slot F1 when spans are given) for each language.

    Each language is scored on its own subset, so its macro-F1 runs over its own
    intents (intent sets differ by language).

    Args:
        gold, pred: intent per utterance.
        languages: language code per utterance.
        gold_spans, pred_spans: optional spans per utterance, for ``slot_f1``.

    Returns:
        ``{language: {"n", "accuracy", "macro_f1"[, "slot_f1"]}}``, languages sorted.

    Raises:
        DataError: on empty or different-length inputs, or only one span argument.

    Example:
        >>> per_language(["a", "b"], ["a", "a"], ["en", "de"])["en"]
        {'n': 1, 'accuracy': 1.0, 'macro_f1': 1.0}
    """
    _check_lengths("per_language", gold, pred, languages)
    if (gold_spans is None) != (pred_spans is None):
        raise DataError("per_language: give both gold_spans and pred_spans, or neither")
    if gold_spans is not None:
        _check_lengths("per_language", gold, gold_spans, pred_spans)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, language in enumerate(languages):
        groups[language].append(i)
    result: dict[str, dict] = {}
    for language in sorted(groups):
        idx = groups[language]
        g, p = [gold[i] for i in idx], [pred[i] for i in idx]
        scores = {"n": len(idx), "accuracy": intent_accuracy(g, p), "macro_f1": macro_f1(g, p)}
        if gold_spans is not None:
            scores["slot_f1"] = slot_f1([gold_spans[i] for i in idx], [pred_spans[i] for i in idx])
        result[language] = scores
    return result

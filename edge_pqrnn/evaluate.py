"""Score any predictor (float Keras run, int8 .tflite, ...) on labelled examples.

A predictor maps raw texts to logits; this module turns logits into labels (argmax
intent, argmax tag per token row -> character spans) and scores them against the gold
labels. Gold slots are the dataset's character spans, so spans the tokenisation cannot
represent, or cut off by truncation, count as misses (strict scoring); so do gold intents
outside the label vocabulary.

Example:
    >>> metrics = evaluate(load_run("runs/atis"), dataset.test)  # doctest: +SKIP
    >>> metrics["intent_accuracy"]  # doctest: +SKIP
    0.97
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from edge_pqrnn.data.align import spans_from_tags
from edge_pqrnn.data.records import Example, Span
from edge_pqrnn.errors import ConfigError, DataError
from edge_pqrnn.metrics import exact_match, intent_accuracy, macro_f1, per_language, slot_f1
from edge_pqrnn.projection import ProjectionSpec, Token
from edge_pqrnn.projection.reference import decode as decode_text
from edge_pqrnn.projection.reference import token_rows


class Logits(NamedTuple):
    """A predictor's output for N texts.

    Attributes:
        intent: float [N, num_intents].
        slots: float [N, T, num_tags], or None for a model without slot head.
    """

    intent: np.ndarray
    slots: np.ndarray | None


#: A bare prediction function: raw texts -> logits (a ``Logits`` or an ``(intent, slots)`` pair).
PredictFn = Callable[[Sequence[str]], "Logits | tuple[np.ndarray, np.ndarray | None]"]


@dataclasses.dataclass(frozen=True)
class Labels:
    """The label vocabularies that give logits their meaning (``labels.json``).

    Attributes:
        intents: intent label of each intent logit.
        tags: BIO tag of each slot logit (``()`` without slot head).
        slot_types: slot types the tags were built from.
    """

    intents: tuple[str, ...]
    tags: tuple[str, ...] = ()
    slot_types: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, list[str]]:
        """A JSON-ready dict (the content of ``labels.json``)."""
        return {"intents": list(self.intents), "tags": list(self.tags), "slot_types": list(self.slot_types)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Labels":
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: missing ``intents`` or unknown keys.
        """
        unknown = set(data) - {"intents", "tags", "slot_types"}
        if unknown or "intents" not in data:
            raise ConfigError(f"labels need 'intents' (and optionally 'tags', 'slot_types'); got keys {sorted(data)}")
        return cls(tuple(data["intents"]), tuple(data.get("tags", ())), tuple(data.get("slot_types", ())))


@runtime_checkable
class Predictor(Protocol):
    """Anything that predicts logits for raw texts and knows its labels and projection
    (``edge_pqrnn.run.Run`` is one; an int8 .tflite predictor can be another)."""

    labels: Labels

    @property
    def spec(self) -> ProjectionSpec: ...

    def predict(self, texts: Sequence[str]) -> Logits: ...


def decode(
    logits: Logits, tokens: Sequence[Sequence[Token]], labels: Labels
) -> tuple[list[str], list[tuple[Span, ...]] | None]:
    """Predicted intents and slot spans from logits.

    Args:
        logits: the predictor's output for N texts.
        tokens: the token rows of each text (``Projection.tokens``).
        labels: the label vocabularies.

    Returns:
        The intent labels and, with slot logits, the character spans of each text.

    Raises:
        DataError: the logits do not match the label vocabularies or the number of texts.
    """
    intent = np.asarray(logits.intent)
    if intent.ndim != 2 or intent.shape != (len(tokens), len(labels.intents)):
        raise DataError(
            f"intent logits have shape {intent.shape}, expected ({len(tokens)}, {len(labels.intents)}): "
            "does the predictor belong to these labels?"
        )
    intents = [labels.intents[i] for i in intent.argmax(-1)]
    if logits.slots is None:
        return intents, None
    slots = np.asarray(logits.slots)
    if slots.ndim != 3 or slots.shape[0] != len(tokens) or slots.shape[2] != len(labels.tags):
        raise DataError(
            f"slot logits have shape {slots.shape}, expected ({len(tokens)}, T, {len(labels.tags)}): "
            "does the predictor belong to these labels?"
        )
    best = slots.argmax(-1)
    spans = [
        spans_from_tags([labels.tags[k] for k in best[n, : len(rows)]], rows) for n, rows in enumerate(tokens)
    ]
    return intents, spans


def score(
    examples: Sequence[Example], logits: Logits, tokens: Sequence[Sequence[Token]], labels: Labels
) -> dict[str, Any]:
    """Metrics of predicted logits against gold labels.

    Args:
        examples: the gold examples.
        logits: the predictions for ``[ex.text for ex in examples]``.
        tokens: the token rows of each example under the predictor's projection spec.
        labels: the label vocabularies.

    Returns:
        ``intent_accuracy``, ``macro_f1`` (intents), ``slot_f1`` (entity level; None
        without slot logits), ``exact_match`` (intent and all spans right; intent only
        without slots), ``num_examples`` and, when the examples have more than one language,
        ``per_language``: ``{language: {n, accuracy, macro_f1[, slot_f1]}}``.

    Raises:
        DataError: shapes do not match.
    """
    intents, spans = decode(logits, tokens, labels)
    gold_intents = [ex.intent for ex in examples]
    gold_spans = [ex.slots for ex in examples] if spans is not None else None
    result: dict[str, Any] = {
        "intent_accuracy": intent_accuracy(gold_intents, intents),
        "macro_f1": macro_f1(gold_intents, intents),
        "slot_f1": slot_f1(gold_spans, spans) if spans is not None else None,
        # Without a slot head, exact match is intent accuracy (no spans on either side).
        "exact_match": exact_match(
            gold_intents, intents, gold_spans or [()] * len(examples), spans or [()] * len(examples)
        ),
        "num_examples": len(examples),
    }
    languages = [ex.language for ex in examples]
    if len(set(languages)) > 1:
        result["per_language"] = per_language(gold_intents, intents, languages, gold_spans, spans)
    return result


def evaluate(
    predictor: Predictor | PredictFn,
    examples: Sequence[Example],
    *,
    labels: Labels | None = None,
    spec: ProjectionSpec | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Predict ``examples`` with any predictor and score the result.

    Args:
        predictor: a :class:`Predictor` (e.g. ``load_run(...)``), or a bare function
            texts -> logits, in which case ``labels`` and ``spec`` are required.
        examples: a dataset split.
        labels: the label vocabularies (overrides the predictor's).
        spec: the projection spec whose tokens the slot logits refer to (overrides the
            predictor's).
        batch_size: texts per prediction call.

    Returns:
        The metrics of :func:`score`.

    Raises:
        ConfigError: a bare function without ``labels``/``spec``.
        DataError: no examples, or the predictions do not match the labels.

    Example:
        >>> evaluate(load_run("runs/atis"), load_dataset("atis").test)["slot_f1"]  # doctest: +SKIP
        0.945
        >>> evaluate(int8_predict, examples, labels=run.labels, spec=run.spec)  # doctest: +SKIP
    """
    if isinstance(predictor, Predictor):
        labels = labels or predictor.labels
        spec = spec or predictor.spec
        predict = predictor.predict
    else:
        if labels is None or spec is None:
            raise ConfigError(
                "evaluate() with a bare prediction function needs labels= and spec= "
                "(or pass a run from load_run())"
            )
        predict = predictor
    if not examples:
        raise DataError("evaluate() got no examples; pass a non-empty split")
    texts = [ex.text for ex in examples]
    intents, slots = [], []
    for i in range(0, len(texts), batch_size):
        out = Logits(*predict(texts[i : i + batch_size]))
        intents.append(np.asarray(out.intent))
        if out.slots is not None:
            slots.append(np.asarray(out.slots))
    logits = Logits(np.concatenate(intents), np.concatenate(slots) if slots else None)
    tokens = [token_rows(decode_text(text), spec) for text in texts]
    return score(examples, logits, tokens, labels)

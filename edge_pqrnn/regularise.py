"""Training defaults chosen from the data: the one place where ``train`` decides how much to
regularise a dataset it has not seen before.

The defaults of :class:`edge_pqrnn.model.ModelConfig`, :class:`edge_pqrnn.train.TrainConfig`
and :class:`edge_pqrnn.projection.ProjectionSpec` were tuned on short, closed-vocabulary
intent data (ATIS, SNIPS, the multilingual set). On open-vocabulary texts (reviews, questions)
the same model overfits within two or three epochs and ends below a TF-IDF baseline, so
:func:`plan_regularisation` measures the train split and changes only what the
measurements call for:

* **open vocabulary** (at least :data:`OPEN_VOCABULARY` of the dev words never occur in
  train: reviews 8.7%, TREC questions 10.5%): more dropout, early stopping on a 3-epoch
  moving average of the dev score with a short patience, a short cosine schedule, and
  gold-labelled word-drop/mask variants. Measured: with the intent defaults both sets
  end below the TF-IDF baseline (docs/results.md, "Held-out checks");
* **long, open-vocabulary texts** (also at least :data:`LONG_TEXT_TOKENS` tokens on
  average): dropout 0.5 instead of 0.3 (reviews, 22.5 tokens: dev 0.7805 against 0.7648
  at epoch 5; the short questions lose with 0.5: test 0.8327 against 0.8587);
* **texts longer than T**: ``max_tokens`` grows to cover 99% of the train texts
  (powers of two up to :data:`MAX_AUTO_TOKENS`; the weights, so the file size, do not
  depend on T);
* **texts without spaces** (most train texts have none: Chinese, Japanese, Thai...):
  ``char`` mode.

ATIS (0.5% unseen dev words, 99% of texts <= 27 tokens), SNIPS (5.6%, 18 words) and the
multilingual set (4.2%, 13.5% of texts without spaces) trigger none of them, so their
published defaults stand. An option the user gives explicitly is never changed.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection
from typing import Any

import numpy as np

from edge_pqrnn.data.records import Dataset
from edge_pqrnn.projection import ProjectionSpec, tokenize

#: Share of dev word occurrences unseen in train from which the vocabulary counts as open
#: (between SNIPS's 5.6% and the reviews' 8.7%).
OPEN_VOCABULARY = 0.07
#: Mean projection tokens per train text from which open-vocabulary texts count as long.
LONG_TEXT_TOKENS = 15.0
#: Their dropout.
LONG_TEXT_DROPOUT = 0.5
#: Share of train texts without a space from which ``char`` mode is chosen.
NO_SPACE_SHARE = 0.5
#: Largest ``max_tokens`` chosen automatically.
MAX_AUTO_TOKENS = 256

#: What open-vocabulary data gets (option name -> value).
OPEN_VOCABULARY_SETTINGS: dict[str, Any] = {
    "dropout": 0.3,
    "smooth": 3,
    "patience": 3,
    "epochs": 8,
    "augment_copies": 1,
    "augment_ops": "drop,mask",
}


@dataclasses.dataclass(frozen=True)
class TextStats:
    """What the rules look at, measured on a dataset.

    Attributes:
        train: train texts.
        per_class: median train texts per label.
        mean_tokens: mean projection tokens (word mode) per train text.
        p99_tokens: 99th percentile of the same.
        unseen_dev_words: share of dev word occurrences (lower-cased, whitespace split)
            that never occur in train.
        no_space_share: share of train texts without a space.
    """

    train: int
    per_class: float
    mean_tokens: float
    p99_tokens: int
    unseen_dev_words: float
    no_space_share: float


def text_stats(dataset: Dataset) -> TextStats:
    """Measure ``dataset`` for :func:`plan_regularisation` (a second or two on 100k texts).

    Args:
        dataset: the loaded dataset (train and dev are read).

    Returns:
        The :class:`TextStats`.
    """
    texts = [ex.text for ex in dataset.train]
    lengths = np.array([len(tokenize(text)) for text in texts] or [0])
    vocabulary = Counter(word for text in texts for word in text.lower().split())
    dev_words = [word for ex in dataset.dev for word in ex.text.lower().split()]
    unseen = sum(word not in vocabulary for word in dev_words) / max(1, len(dev_words))
    per_class = Counter(ex.intent for ex in dataset.train)
    return TextStats(
        train=len(texts),
        per_class=float(np.median(list(per_class.values()))) if per_class else 0.0,
        mean_tokens=float(lengths.mean()),
        p99_tokens=int(np.percentile(lengths, 99, method="higher")),
        unseen_dev_words=unseen,
        no_space_share=sum(" " not in text.strip() for text in texts) / max(1, len(texts)),
    )


@dataclasses.dataclass(frozen=True)
class Plan:
    """The settings the data calls for.

    Attributes:
        stats: the measurements.
        settings: option name -> value to use (``dropout``, ``smooth``, ``patience``,
            ``epochs``, ``augment_copies``, ``augment_ops``, ``max_tokens``, ``mode``); only
            what differs from the defaults, never an option given explicitly.
        reasons: option name -> why (for the settings, and for explicit options kept).
    """

    stats: TextStats
    settings: dict[str, Any]
    reasons: dict[str, str]

    def taken(self, names: Collection[str]) -> dict[str, Any]:
        """The planned settings among ``names`` (e.g. the ModelConfig fields a caller applies)."""
        return {k: v for k, v in self.settings.items() if k in names}

    def describe(self) -> str:
        """One line for the start of training, e.g. ``regularisation: dropout 0.3 (...), ...``."""
        s = self.stats
        measured = (f"train texts avg {s.mean_tokens:.1f} tokens, {s.unseen_dev_words:.1%} of dev words unseen "
                    f"in train, {s.per_class:.0f} texts per label")
        if not self.settings:
            return f"regularisation: the defaults ({measured}; none of the rules applies)"
        by_reason: dict[str, list[str]] = {}
        for name, value in self.settings.items():
            by_reason.setdefault(self.reasons[name], []).append(f"{name} {value}")
        parts = [f"{', '.join(names)} ({why})" for why, names in by_reason.items()]
        kept = [name for name in self.reasons if name not in self.settings]
        given = f"; kept as given: {', '.join(kept)}" if kept else ""
        return f"regularisation: {'; '.join(parts)}{given}"


def plan_regularisation(dataset: Dataset, explicit: Collection[str] = (),
                        spec: ProjectionSpec | None = None) -> Plan:
    """Choose the training settings the data calls for (the rules: module docstring).

    Args:
        dataset: the loaded dataset.
        explicit: option names the user set (``dropout``, ``max_tokens``, ``augment_copies``...):
            the plan leaves them alone.
        spec: the projection in use (``max_tokens`` only grows beyond it).

    Returns:
        The :class:`Plan`.
    """
    stats, spec = text_stats(dataset), spec or ProjectionSpec()
    wanted: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    if stats.unseen_dev_words >= OPEN_VOCABULARY:
        why = (f"open vocabulary: {stats.unseen_dev_words:.1%} >= {OPEN_VOCABULARY:.0%} of dev words unseen in "
               f"train; texts avg {stats.mean_tokens:.1f} tokens, {stats.per_class:.0f} per label")
        for name, value in OPEN_VOCABULARY_SETTINGS.items():
            wanted[name], reasons[name] = value, why
        if stats.mean_tokens >= LONG_TEXT_TOKENS:
            wanted["dropout"] = LONG_TEXT_DROPOUT
            reasons["dropout"] = f"long open-vocabulary texts: avg {stats.mean_tokens:.1f} >= {LONG_TEXT_TOKENS:g} tokens"
    needed = stats.p99_tokens + int(spec.add_bos) + int(spec.add_eos)
    if needed > spec.max_tokens:
        tokens = spec.max_tokens
        while tokens < needed and tokens * 2 <= MAX_AUTO_TOKENS:
            tokens *= 2
        if tokens > spec.max_tokens:
            wanted["max_tokens"] = tokens
            reasons["max_tokens"] = f"99% of train texts have <= {stats.p99_tokens} tokens"
    if stats.no_space_share > NO_SPACE_SHARE and spec.mode != "char":
        wanted["mode"] = "char"
        reasons["mode"] = f"{stats.no_space_share:.0%} of train texts have no space"
    settings = {name: value for name, value in wanted.items() if name not in explicit}
    reasons.update({name: "given" for name in wanted if name in explicit})
    return Plan(stats, settings, reasons)

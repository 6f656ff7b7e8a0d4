"""A classical intent baseline: TF-IDF features + logistic regression.

It sets the floor a pQRNN must clear and the ceiling of "what bag-of-n-grams already
gets": word 1-2-grams for English-only data; for anything else, character 1-4-grams
(no word segmentation needed for zh/th) with one model per language, since intent sets
and scripts differ by language. Trained on train only; scored on test (or the split
asked for), strictly (intents unseen in train count as wrong).
"""

from __future__ import annotations

import time
from collections import Counter

from edge_pqrnn.data.records import Dataset, Example
from edge_pqrnn.errors import ConfigError, DataError
from edge_pqrnn.metrics import intent_accuracy, macro_f1, per_language


def _features(dataset: Dataset) -> dict:
    if dataset.languages == ["en"]:
        return {"analyzer": "word", "ngram_range": (1, 2)}
    return {"analyzer": "char", "ngram_range": (1, 4)}


def _fit_predict(train: list[Example], test: list[Example], features: dict) -> list[str]:
    """Predictions for ``test`` from a model fitted on ``train`` (one language)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    labels = {ex.intent for ex in train}
    if len(labels) == 1:  # LogisticRegression refuses a single class; the answer is fixed
        return [next(iter(labels))] * len(test)
    vectorizer = TfidfVectorizer(sublinear_tf=True, lowercase=True, **features)
    x_train = vectorizer.fit_transform([ex.text for ex in train])
    model = LogisticRegression(C=10.0, max_iter=2000)
    # These problems are small: multi-threaded BLAS only adds contention (measured 5x
    # slower on 2 busy cores than one thread).
    with threadpool_limits(limits=1):
        model.fit(x_train, [ex.intent for ex in train])
    return list(model.predict(vectorizer.transform([ex.text for ex in test])))


def run_baseline(dataset: Dataset, split: str = "test") -> dict:
    """Train and score the TF-IDF + logistic-regression intent baseline.

    Args:
        dataset: a loaded dataset (its train split trains).
        split: the split scored: ``"test"``, ``"dev"`` or ``"train"``.

    Returns:
        ``{"intent_accuracy", "macro_f1", "per_language", "majority", "features",
        "n_train", "n_test", "seconds"}``; ``majority`` holds accuracy and macro-F1 of
        always predicting each language's most frequent train intent.

    Example:
        >>> from edge_pqrnn.data import load_dataset
        >>> result = run_baseline(load_dataset("fixture:snips"))
        >>> result["intent_accuracy"] > result["majority"]["intent_accuracy"]
        True
    """
    if split not in ("test", "dev", "train"):
        raise ConfigError(f"split must be test, dev or train, got {split!r}")
    scored = getattr(dataset, split)
    if not scored:
        raise DataError(f"{dataset.name}: the {split} split is empty; nothing to score the baseline on")
    started = time.perf_counter()
    features = _features(dataset)
    gold: list[str] = []
    predicted: list[str] = []
    majority: list[str] = []
    langs: list[str] = []
    for language in dataset.languages:
        train = [ex for ex in dataset.train if ex.language == language]
        test = [ex for ex in scored if ex.language == language]
        if not test:
            continue
        if train:
            predicted += _fit_predict(train, test, features)
            top = Counter(ex.intent for ex in train).most_common(1)[0][0]
        else:  # no training data in this language: nothing can be right
            predicted += [""] * len(test)
            top = ""
        majority += [top] * len(test)
        gold += [ex.intent for ex in test]
        langs += [language] * len(test)
    return {
        "intent_accuracy": intent_accuracy(gold, predicted),
        "macro_f1": macro_f1(gold, predicted),
        "per_language": per_language(gold, predicted, langs),
        "majority": {
            "intent_accuracy": intent_accuracy(gold, majority),
            "macro_f1": macro_f1(gold, majority),
            "per_language": per_language(gold, majority, langs),
        },
        "features": {**features, "ngram_range": list(features["ngram_range"]), "per_language": True},
        "n_train": len(dataset.train),
        "split": split,
        "n_test": len(gold),
        "seconds": round(time.perf_counter() - started, 2),
    }

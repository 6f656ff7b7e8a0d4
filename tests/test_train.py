"""Training, run directories (atomic, refuse overwrite), load_run and evaluate()."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import artifact_fixtures
import edge_pqrnn.train as train_module
from edge_pqrnn.data.records import Dataset, Example, build_dataset
from edge_pqrnn.errors import ArtifactError, ConfigError
from edge_pqrnn.evaluate import Logits, evaluate
from edge_pqrnn.model import ModelConfig
from edge_pqrnn.projection import ProjectionSpec
from edge_pqrnn.run import load_run
from edge_pqrnn.train import TrainConfig, train

CITIES = ["boston", "denver", "new york", "san francisco", "dallas", "st. louis", "atlanta", "oakland"]
DAYS = ["monday", "tuesday", "friday", "sunday"]
TEMPLATES = {
    "flight": [
        "show me flights from {fromloc} to {toloc}",
        "i want to fly from {fromloc} to {toloc} on {day}",
        "flights to {toloc} please",
        "list flights leaving {fromloc} on {day}",
    ],
    "airfare": [
        "how much is a ticket from {fromloc} to {toloc}",
        "what is the cheapest fare to {toloc}",
        "price of a {day} ticket to {toloc}",
        "fares from {fromloc} please",
    ],
    "ground_service": [
        "ground transportation in {city}",
        "is there a taxi in {city} on {day}",
        "rental cars at {city}",
        "how do i get downtown in {city}",
    ],
}
FILLERS = {"fromloc": CITIES, "toloc": CITIES, "city": CITIES, "day": DAYS}


def make_examples(count: int, seed: int) -> list[Example]:
    """Template utterances with character-span slots (a stand-in for a real dataset)."""
    return artifact_fixtures.examples(count, seed, TEMPLATES, FILLERS)


def tiny_dataset(with_slots: bool = True) -> Dataset:
    splits = [make_examples(n, seed) for n, seed in ((240, 0), (40, 1), (60, 2))]
    if not with_slots:
        splits = [[dataclasses.replace(ex, slots=()) for ex in split] for split in splits]
    return build_dataset("tiny", *splits, has_slots=with_slots, notes={})


TINY_MODEL = ModelConfig(
    num_intents=3,
    num_tags=1,
    projection=ProjectionSpec(feature_size=128, max_tokens=16),
    bottleneck=32,
    state=32,
    layers=1,
    dropout=0.0,
)
TINY_TRAIN = TrainConfig(epochs=8, batch_size=16, learning_rate=1e-2, patience=8)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return tiny_dataset()


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    return train(dataset, TINY_MODEL, TINY_TRAIN, run_dir, progress=False)


def test_tiny_run_learns(trained, dataset):
    test = trained.metrics["test"]
    assert test["intent_accuracy"] >= 0.8  # chance is 1/3
    assert test["slot_f1"] >= 0.6
    assert test["num_examples"] == len(dataset.test)
    assert trained.history[-1]["loss"] < 0.5 * trained.history[0]["loss"]
    assert trained.config.num_tags == 9 and trained.config.slot_head  # O + B/I of 4 slot types


def test_run_dir_holds_config_labels_weights_history_metrics(trained):
    files = {p.name for p in trained.run_dir.iterdir()}
    assert files == {"config.json", "labels.json", "model.weights.h5", "history.json", "metrics.json"}
    config = json.loads((trained.run_dir / "config.json").read_text())
    assert ModelConfig.from_dict(config) == trained.config
    assert config["projection"]["max_tokens"] == 16
    labels = json.loads((trained.run_dir / "labels.json").read_text())
    assert labels["tags"][0] == "O" and labels["intents"] == ["airfare", "flight", "ground_service"]
    assert len(json.loads((trained.run_dir / "history.json").read_text())) == len(trained.history)
    # No temporary directory is left next to the run.
    assert [p.name for p in trained.run_dir.parent.iterdir()] == ["tiny"]


def test_load_run_predicts_like_the_trained_model_and_evaluate_reproduces_metrics(trained, dataset):
    run = load_run(trained.run_dir)
    assert run.config == trained.config and run.labels == trained.labels
    texts = [ex.text for ex in dataset.test[:5]]
    logits = run.predict(texts)
    from edge_pqrnn.projection import project

    p = project(texts, run.spec)
    ref = trained.model({"features": p.features, "mask": p.mask, "pool_weights": p.pool_weights}, training=False)
    np.testing.assert_allclose(logits.intent, ref["intent_logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits.slots, ref["slot_logits"], rtol=1e-5, atol=1e-5)
    assert evaluate(run, dataset.test) == pytest.approx(trained.metrics["test"])


def test_evaluate_accepts_a_bare_prediction_function(trained, dataset):
    run = load_run(trained.run_dir)
    calls = []

    def predict(texts):
        calls.append(len(texts))
        out = run.predict(texts)
        return out.intent, out.slots  # a plain pair is accepted too

    metrics = evaluate(predict, dataset.test, labels=run.labels, spec=run.spec, batch_size=25)
    assert metrics == pytest.approx(trained.metrics["test"])
    assert calls == [25, 25, 10]
    with pytest.raises(ConfigError, match="needs labels= and spec="):
        evaluate(predict, dataset.test)


def test_evaluate_scores_a_known_prediction(trained, dataset):
    """Gold logits give perfect scores; all-"O" slots give F1 0 and exact match 0."""
    run = load_run(trained.run_dir)
    examples = dataset.test[:6]

    def oracle(texts):
        intent = np.zeros((len(texts), len(run.labels.intents)), np.float32)
        slots = np.zeros((len(texts), run.spec.max_tokens, len(run.labels.tags)), np.float32)
        from edge_pqrnn.data.align import bio_tags
        from edge_pqrnn.projection import project

        rows = project(texts, run.spec).tokens
        for n, ex in enumerate(examples):
            intent[n, run.labels.intents.index(ex.intent)] = 1.0
            for t, tag in enumerate(bio_tags(ex, rows[n])):
                slots[n, t, run.labels.tags.index(tag)] = 1.0
        return Logits(intent, slots)

    perfect = evaluate(oracle, examples, labels=run.labels, spec=run.spec)
    assert perfect == {"intent_accuracy": 1.0, "macro_f1": 1.0, "slot_f1": 1.0, "exact_match": 1.0, "num_examples": 6}
    no_slots = evaluate(
        lambda texts: Logits(oracle(texts).intent, np.zeros((len(texts), 16, len(run.labels.tags)))),
        examples,
        labels=run.labels,
        spec=run.spec,
    )
    assert no_slots["intent_accuracy"] == 1.0 and no_slots["slot_f1"] == 0.0 and no_slots["exact_match"] == 0.0


def test_intent_only_dataset_and_per_language(tmp_path):
    data = tiny_dataset(with_slots=False)
    # Two languages in the test split turn on the per-language breakdown.
    data.test = [dataclasses.replace(ex, language="de" if i % 2 else "en") for i, ex in enumerate(data.test)]
    result = train(data, TINY_MODEL, dataclasses.replace(TINY_TRAIN, epochs=2), tmp_path / "intents", progress=False)
    assert not result.config.slot_head and result.labels.tags == ()
    test = result.metrics["test"]
    assert test["slot_f1"] is None and test["exact_match"] == test["intent_accuracy"]
    assert set(test["per_language"]) == {"de", "en"} and test["per_language"]["de"]["n"] == 30
    assert "slot_logits" not in load_run(tmp_path / "intents").model.output


def test_refuses_to_overwrite_a_finished_or_foreign_directory(trained, dataset, tmp_path):
    with pytest.raises(ArtifactError, match="already holds a finished run; pass overwrite=True"):
        train(dataset, TINY_MODEL, TINY_TRAIN, trained.run_dir, progress=False)
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="is not empty and is not a finished run"):
        train(dataset, TINY_MODEL, TINY_TRAIN, foreign, progress=False)
    assert (foreign / "todo.txt").read_text() == "mine"


@pytest.mark.slow  # four short trainings
def test_crash_mid_training_leaves_no_finished_run(dataset, tmp_path, monkeypatch):
    real_score = train_module.score
    calls = []

    def crash_on_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C looks like mid-run
        return real_score(*args, **kwargs)

    config = dataclasses.replace(TINY_TRAIN, epochs=3)
    monkeypatch.setattr(train_module, "score", crash_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(dataset, TINY_MODEL, config, tmp_path / "new", progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the run nor its temporary directory

    monkeypatch.setattr(train_module, "score", real_score)
    finished = train(dataset, TINY_MODEL, dataclasses.replace(config, epochs=1), tmp_path / "run", progress=False)
    before = (finished.run_dir / "metrics.json").read_text()
    calls.clear()
    monkeypatch.setattr(train_module, "score", crash_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(dataset, TINY_MODEL, config, tmp_path / "run", progress=False, overwrite=True)
    assert (tmp_path / "run" / "metrics.json").read_text() == before  # the old run is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["run"]

    monkeypatch.setattr(train_module, "score", real_score)
    config = dataclasses.replace(config, epochs=2)
    replaced = train(dataset, TINY_MODEL, config, tmp_path / "run", overwrite=True, progress=False)
    assert replaced.metrics["epochs_run"] == 2 and load_run(tmp_path / "run").metrics["epochs_run"] == 2


def test_load_run_errors_say_what_is_missing(trained, tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        load_run(tmp_path / "nope")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.json", "labels.json", "model.weights.h5"):
        (unfinished / name).write_bytes((trained.run_dir / name).read_bytes())
    with pytest.raises(ArtifactError, match="metrics.json is missing: the run did not finish"):
        load_run(unfinished)
    (unfinished / "metrics.json").write_text("{}")
    (unfinished / "model.weights.h5").unlink()
    with pytest.raises(ArtifactError, match="model.weights.h5 is missing"):
        load_run(unfinished)
    (unfinished / "model.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(ArtifactError, match="cannot be loaded"):
        load_run(unfinished)
    (unfinished / "config.json").write_text("{")
    with pytest.raises(ArtifactError, match="config.json is not readable JSON"):
        load_run(unfinished)


def test_train_config_validation():
    with pytest.raises(ConfigError, match="epochs must be a positive integer"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"label_smoothing must be in \[0, 1\)"):
        TrainConfig(label_smoothing=1.0)


def test_average_last_scores_the_mean_of_the_last_epochs_and_keeps_the_better(dataset, tmp_path):
    config = dataclasses.replace(TINY_TRAIN, epochs=4, average_last=3)
    result = train(dataset, TINY_MODEL, config, tmp_path / "avg", progress=False)
    averaged = result.metrics["weight_average"]
    assert averaged["epochs"] == [2, 3, 4]
    best = result.history[result.metrics["best_epoch"] - 1]["dev"]
    assert result.metrics["dev"] == (averaged["dev"] if averaged["used"] else best)
    # The written weights are the chosen ones: reloading reproduces the recorded dev score.
    run = load_run(tmp_path / "avg")
    assert evaluate(run, dataset.dev)["intent_accuracy"] == pytest.approx(result.metrics["dev"]["intent_accuracy"])


def test_smooth_counts_patience_on_the_moving_average_and_restores_the_best_epoch(dataset, tmp_path):
    config = dataclasses.replace(TINY_TRAIN, epochs=6, smooth=3, patience=2)
    result = train(dataset, TINY_MODEL, config, tmp_path / "smooth", progress=False)
    scores = [h["dev"]["intent_accuracy"] + h["dev"]["slot_f1"] for h in result.history]
    smoothed = [h["dev_smoothed"] for h in result.history]
    assert smoothed == pytest.approx([np.mean(scores[max(0, i - 2) : i + 1]) for i in range(len(scores))])
    best_smoothed = int(np.argmax(smoothed)) + 1  # first maximum, as training counts it
    assert len(result.history) == min(6, best_smoothed + 2)
    assert result.metrics["best_epoch"] == int(np.argmax(scores)) + 1  # the best single epoch is restored
    with pytest.raises(ConfigError, match="smooth must be a positive integer"):
        TrainConfig(smooth=0)


def test_mean_weights_averages_floats_and_keeps_other_state_from_the_last():
    first = [np.array([1.0, 3.0], np.float32), np.array([7], np.int64)]
    last = [np.array([3.0, 5.0], np.float32), np.array([9], np.int64)]
    mean = train_module._mean_weights([first, last])
    np.testing.assert_array_equal(mean[0], [2.0, 4.0])
    assert mean[0].dtype == np.float32
    np.testing.assert_array_equal(mean[1], [9])


def test_average_last_validation():
    with pytest.raises(ConfigError, match="average_last must be 0 .off. or an integer >= 2"):
        TrainConfig(average_last=1)


def test_train_cli_ends_beside_the_baseline_and_says_what_to_try_when_below(tmp_path):
    # Issue 24: `train` prints the TF-IDF baseline next to the student on the held-out
    # split; a one-epoch, 8-unit student on 60 test texts is below it and is told so.
    from click.testing import CliRunner

    from edge_pqrnn.cli import main
    from edge_pqrnn.pipeline import baseline_comparison

    artifact_fixtures.dataset(tmp_path)
    data = f"jsonl:{tmp_path / 'templates.jsonl'}"
    args = ["train", "--data", data, "--epochs", "1", "--bottleneck", "8", "--state", "8", "--layers", "1",
            "--feature-size", "32", "--max-tokens", "16", "--learning-rate", "1e-4"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    comparison = baseline_comparison(tmp_path / "run")
    s, b = comparison["student"], comparison["baseline"]
    assert comparison["split"] == "test"
    assert f"test: pQRNN intent accuracy {s['intent_accuracy']:.4f}, macro-F1 {s['macro_f1']:.4f}; " \
           f"TF-IDF + logistic-regression baseline {b['intent_accuracy']:.4f}, {b['macro_f1']:.4f}" in result.output
    assert comparison["below_baseline"] == (s["macro_f1"] < b["macro_f1"] or s["intent_accuracy"] < b["intent_accuracy"])
    assert comparison["below_baseline"] and b["intent_accuracy"] > 0.9  # the templates are easy for TF-IDF
    assert "note: the pQRNN student is below the TF-IDF baseline on this data" in result.output
    assert "--teacher TEACHER" in result.output
    quiet = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "quiet"), "--no-baseline"])
    assert quiet.exit_code == 0 and "baseline" not in quiet.output

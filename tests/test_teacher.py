"""The joint teacher with a tiny random encoder: row alignment, fine-tune, teacher
directory, Parquet label cache and the `teacher` CLI. Seconds, not minutes: the real
multilingual-e5-small is only exercised by tests/test_teacher_e5.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch", reason='teacher extra not installed: pip install -e ".[teacher]"')
pytest.importorskip("transformers", reason='teacher extra not installed: pip install -e ".[teacher]"')
pytest.importorskip("pyarrow", reason='teacher extra not installed: pip install -e ".[teacher]"')

from click.testing import CliRunner  # noqa: E402

from edge_pqrnn.cli import main  # noqa: E402
from edge_pqrnn.data import load_dataset  # noqa: E402
from edge_pqrnn.errors import ArtifactError, ConfigError  # noqa: E402
from edge_pqrnn.evaluate import evaluate  # noqa: E402
from edge_pqrnn.projection import ProjectionSpec  # noqa: E402
from edge_pqrnn.distill.teacher import TeacherDependencyError, require  # noqa: E402
from edge_pqrnn.distill.teacher.finetune import FinetuneConfig, finetune  # noqa: E402
from edge_pqrnn.distill.label import label_texts  # noqa: E402
from edge_pqrnn.distill.teacher.model import encode_batch, load_teacher, tiny_encoder  # noqa: E402

TINY = dict(encoder="tiny", epochs=3, head_lr=3e-3, encoder_lr=3e-3, warmup=0.0)


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("fixture:atis")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, dataset):
    out = tmp_path_factory.mktemp("teacher") / "teacher"
    result = finetune(dataset, out, FinetuneConfig(**TINY), progress=False)
    assert result.path == out
    return out


def test_missing_extra_names_the_pip_line():
    with pytest.raises(TeacherDependencyError, match=r'pip install -e "\.\[teacher\]"'):
        require("no_such_module_for_the_teacher")


def test_rows_read_the_first_subword_of_their_span():
    _, tokenizer = tiny_encoder(["flights to st. louis", "flights to boston boston"])
    spec = ProjectionSpec(max_tokens=16)
    batch = encode_batch(tokenizer, ["flights to st. louis"], spec, max_length=32)
    rows = batch.rows[0]
    assert [r.text for r in rows] == ["flights", "to", "st", ".", "louis", "<EOS>"]
    offsets = tokenizer.encode("flights to st. louis").offsets
    text = "flights to st. louis"
    for r, row in enumerate(rows):
        position = int(batch.row_index[0, r])
        if row.special:
            assert position == 0  # markers read <s>
            continue
        a, e = offsets[position]
        assert min(e, row.end) > max(a, row.start), (row, text[a:e])
        # no earlier sub-word overlaps the row
        assert all(not (min(offsets[p][1], row.end) > max(offsets[p][0], row.start)) for p in range(1, position))
    assert bool(batch.row_valid[0, : len(rows)].all())


def test_char_rows_that_share_a_subword_get_their_offset_in_it():
    # One sub-word covers several char rows (its leading space too): the offset tells
    # them apart, so the slot head can tag the space O, the first letter B-, the rest I-.
    text = "lights office"
    _, tokenizer = tiny_encoder([text] * 3)
    batch = encode_batch(tokenizer, [text], ProjectionSpec(mode="char", max_tokens=32), max_length=32)
    offsets = tokenizer.encode(text).offsets
    rows = batch.rows[0]
    for r, row in enumerate(rows):
        if row.special:
            continue
        a, _ = offsets[int(batch.row_index[0, r])]
        assert int(batch.row_offset[0, r]) == row.start - a
    by_subword = {}
    for r, row in enumerate(rows[:-1]):
        by_subword.setdefault(int(batch.row_index[0, r]), []).append(int(batch.row_offset[0, r]))
    assert any(len(v) > 1 for v in by_subword.values())  # rows do share sub-words here
    assert all(v == list(range(v[0], v[0] + len(v))) for v in by_subword.values())


def test_a_teacher_without_the_offset_embedding_still_loads(teacher_dir, tmp_path, dataset):
    import shutil

    from safetensors.torch import load_file, save_file

    old = tmp_path / "old"
    shutil.copytree(teacher_dir, old)
    info = json.loads((old / "teacher.json").read_text())
    assert info["row_offsets"] == 8
    del info["row_offsets"]
    (old / "teacher.json").write_text(json.dumps(info))
    weights = {k: v for k, v in load_file(str(old / "model.safetensors")).items() if not k.startswith("row_offset")}
    save_file(weights, str(old / "model.safetensors"))
    teacher = load_teacher(old)
    assert teacher.model.row_offset is None
    logits = teacher.predict([ex.text for ex in dataset.dev[:4]])
    assert np.isfinite(logits.slots).all()


def test_truncated_rows_are_invalid():
    _, tokenizer = tiny_encoder(["a b c d e f g h"] * 2)  # words seen twice are whole pieces
    batch = encode_batch(tokenizer, ["a b c d e f g h"], ProjectionSpec(max_tokens=16), max_length=5)
    assert batch.input_ids.shape[1] == 5 and int(batch.input_ids[0, -1]) == 2  # </s> kept
    valid = batch.row_valid[0].tolist()
    assert valid[:3] == [True, True, True] and valid[3:8] == [False] * 5  # words past the cut


def test_finetune_writes_a_loadable_teacher(teacher_dir, dataset):
    names = {p.name for p in teacher_dir.iterdir()}
    assert {"teacher.json", "labels.json", "tokenizer.json", "model.safetensors", "history.json",
            "metrics.json"} <= names
    metrics = json.loads((teacher_dir / "metrics.json").read_text())
    history = json.loads((teacher_dir / "history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"]  # it learns
    assert metrics["best_epoch"] >= 1 and "test" in metrics and "tiny" in metrics["source"]
    teacher = load_teacher(teacher_dir)
    # the reloaded teacher reproduces the test metrics computed before saving
    assert evaluate(teacher, dataset.test) == pytest.approx(metrics["test"])
    logits = teacher.predict([ex.text for ex in dataset.test[:3]])
    assert logits.intent.shape == (3, len(dataset.intents))
    assert logits.slots.shape == (3, teacher.spec.max_tokens, len(teacher.labels.tags))


def test_finetune_refuses_to_overwrite_and_checks_config(teacher_dir, dataset):
    with pytest.raises(ArtifactError, match="--overwrite"):
        finetune(dataset, teacher_dir, FinetuneConfig(**TINY), progress=False)
    with pytest.raises(ConfigError, match="encoder must be one of e5, tiny"):
        FinetuneConfig(encoder="bert")
    with pytest.raises(ArtifactError, match="teacher finetune"):
        load_teacher(teacher_dir.parent / "nothing")


def test_label_cache_is_keyed_by_content_and_resumes(teacher_dir, dataset, tmp_path):
    teacher = load_teacher(teacher_dir)
    spec = ProjectionSpec()
    texts = [ex.text for ex in dataset.train[:20]]
    first = label_texts(teacher, texts[:10], spec, tmp_path / "cache", chunk_size=4, progress=False)
    assert first.labelled == 10 and len(list((tmp_path / "cache").glob("part-*.parquet"))) == 3
    # resumes: the first 10 come from the cache, duplicates are labelled once
    second = label_texts(teacher, texts + texts[:2], spec, tmp_path / "cache", chunk_size=4, progress=False)
    assert second.labelled == 10
    np.testing.assert_array_equal(second.intent[:10], first.intent)
    np.testing.assert_array_equal(second.intent[20:], second.intent[:2])
    fresh = teacher.predict(texts, spec=spec)
    np.testing.assert_allclose(second.intent[:20], fresh.intent, atol=1e-5)
    np.testing.assert_allclose(second.slots_dense(range(20), spec.max_tokens), fresh.slots, atol=1e-5)
    # another row layout is another key: labelled afresh, with its own number of rows
    char = label_texts(teacher, texts[:2], ProjectionSpec(mode="char", max_tokens=96), tmp_path / "cache",
                       progress=False)
    assert char.labelled == 2 and char.offsets[1] == len(texts[0]) + 1  # one row per character + EOS


def test_corrupt_cache_part_says_what_to_do(teacher_dir, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "part-1-x.parquet").write_bytes(b"not parquet")
    with pytest.raises(ArtifactError, match="delete it and label again"):
        label_texts(load_teacher(teacher_dir), ["hello"], ProjectionSpec(), tmp_path / "cache", progress=False)


def test_budget_stops_mid_epoch(dataset, tmp_path):
    result = finetune(dataset, tmp_path / "t", FinetuneConfig(**dict(TINY, epochs=5, max_minutes=1e-4)),
                      progress=False)
    assert len(result.history) == 1 and result.history[0]["steps"] < 2


def test_cli_finetune_and_label(tmp_path):
    runner = CliRunner()
    out = tmp_path / "teacher"
    result = runner.invoke(main, ["teacher", "finetune", "--data", "fixture:atis", "--out", str(out), "--encoder",
                                  "tiny", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert (out / "metrics.json").is_file()
    result = runner.invoke(main, ["teacher", "label", "--teacher", str(out), "--data", "fixture:atis",
                                  "--augment-copies", "1", "--label-cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "texts labelled" in result.output and list((tmp_path / "cache").glob("part-*.parquet"))
    again = runner.invoke(main, ["teacher", "finetune", "--data", "fixture:atis", "--out", str(out), "--encoder",
                                 "tiny", "--epochs", "1"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    missing = runner.invoke(main, ["teacher", "label", "--data", "fixture:atis"])
    assert missing.exit_code != 0 and "--teacher TEACHER_DIR is required" in missing.output


def test_finetune_continues_from_a_teacher(teacher_dir, dataset, tmp_path):
    before = load_teacher(teacher_dir)
    result = finetune(dataset, tmp_path / "more", FinetuneConfig(**dict(TINY, epochs=1)), progress=False,
                      init=teacher_dir)
    assert "continued from" in result.metrics["source"]
    after = load_teacher(tmp_path / "more")
    # started from the saved weights (not a fresh init): one small epoch moves them only a little
    w0 = before.model.intent_head.weight.detach()
    w1 = after.model.intent_head.weight.detach()
    fresh = load_teacher(teacher_dir).model.intent_head.weight.detach() * 0
    assert float((w1 - w0).abs().mean()) < float((w0 - fresh).abs().mean())

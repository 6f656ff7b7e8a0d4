"""Teacher labelling on Apache Beam (edge_pqrnn.distill.beam) against the local path:
same Parquet cache (bit-identical rows, byte-identical parts), augmentation split into a
parallel and an ordered step that equals augment(), failed texts reported, never dropped.
A tiny random teacher; in-process runs take seconds, the one multi-process run ~20 s."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch", reason='teacher extra not installed: pip install -e ".[teacher]"')
pytest.importorskip("pyarrow", reason='teacher extra not installed: pip install -e ".[teacher]"')
pytest.importorskip("apache_beam", reason='beam extra not installed: pip install -e ".[beam]"')

import pyarrow.parquet as pq  # noqa: E402
from apache_beam.io.localfilesystem import LocalFileSystem  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from edge_pqrnn.distill.augment import AugmentConfig, augment, slot_values, variant_candidates  # noqa: E402
from edge_pqrnn.cli import main  # noqa: E402
from edge_pqrnn.data import load_dataset  # noqa: E402
from edge_pqrnn.distill import label_dataset  # noqa: E402
from edge_pqrnn.errors import ConfigError, DataError, EdgePqrnnError  # noqa: E402
from edge_pqrnn.projection import ProjectionSpec  # noqa: E402
from edge_pqrnn.distill import beam as bl  # noqa: E402
from edge_pqrnn.distill import beam_io, beam_steps  # noqa: E402
from edge_pqrnn.distill.teacher.finetune import FinetuneConfig, finetune  # noqa: E402
from edge_pqrnn.distill.label import cache_key, label_texts, pick_variants, teacher_fingerprint  # noqa: E402
from edge_pqrnn.distill.teacher.model import load_teacher  # noqa: E402

IN_PROCESS = ["direct_running_mode=in_memory"]  # one process: seconds, and monkeypatch reaches the DoFn


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("fixture:atis")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, dataset):
    out = tmp_path_factory.mktemp("beam_teacher") / "teacher"
    finetune(dataset, out, FinetuneConfig(encoder="tiny", epochs=1), progress=False)
    return out


def cache_rows(cache: Path) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for part in sorted(cache.glob("part-*.parquet")):
        for row in pq.read_table(part).to_pylist():
            assert row["key"] not in rows, "a key in two parts"
            rows[row["key"]] = row
    return rows


def part_bytes(cache: Path) -> list[bytes]:
    return sorted(p.read_bytes() for p in cache.glob("part-*.parquet"))


@pytest.mark.parametrize("config", [
    AugmentConfig(),
    AugmentConfig(copies=3, seed=7),
    AugmentConfig(copies=2, weights={"substitute": 1.0}),  # falls back to nothing on slot-less texts
    AugmentConfig(copies=2, weights={"swap": 1.0, "drop": 2.0}, rate=0.5),
    AugmentConfig(copies=0),
])
def test_candidates_then_pick_equal_augment(dataset, config):
    examples = list(dataset.train) + list(dataset.train[:5])  # repeats: later ones must dedup
    values = slot_values(examples)
    candidates = [variant_candidates(ex, config, values) for ex in examples]
    assert pick_variants([ex.text for ex in examples], candidates) == [a.text for a in augment(examples, config)]


@pytest.mark.slow
def test_beam_multiprocess_equals_local_label_dataset(dataset, teacher_dir, tmp_path):
    spec = ProjectionSpec()
    config = AugmentConfig(copies=2, seed=3)
    local = label_dataset(dataset, teacher_dir, spec, augment_config=config, cache_dir=tmp_path / "local",
                          progress=False, log=lambda _: None)
    lines: list[str] = []
    result = bl.beam_label(dataset, teacher_dir, spec, augment_config=config, cache_dir=tmp_path / "beam",
                           num_workers=2, log=lines.append)  # DirectRunner, 2 worker processes
    result.raise_for_failures()
    assert result.texts == len(local.labels.texts) and result.labelled == local.labels.labelled > 100
    assert result.train == len(dataset.train) and result.augmented == len(local.extra)
    assert "2 workers" in lines[0] and "0 failed" in lines[0]
    a, b = cache_rows(tmp_path / "local"), cache_rows(tmp_path / "beam")
    assert a.keys() == b.keys() and len(a) == local.labels.labelled
    assert all(a[k] == b[k] for k in a)  # every float bit-identical
    assert part_bytes(tmp_path / "local") == part_bytes(tmp_path / "beam")  # the part files too
    assert not (tmp_path / "beam" / beam_io.RUNS_DIR).exists()  # a clean run leaves only the parts


def test_chunks_batches_and_resume_match_label_texts(dataset, teacher_dir, tmp_path):
    spec = ProjectionSpec(max_tokens=24)
    texts = [ex.text for ex in dataset.train]
    teacher = load_teacher(teacher_dir)
    label_texts(teacher, texts, spec, tmp_path / "local", batch_size=5, chunk_size=16, progress=False)
    kwargs = dict(augment_config=AugmentConfig(copies=0), batch_size=5, chunk_size=16, num_workers=1,
                  pipeline_options=IN_PROCESS, log=lambda _: None)
    first = bl.beam_label(dataset, teacher_dir, spec, cache_dir=tmp_path / "beam", **kwargs)
    assert first.labelled == len(set(texts)) and len(list((tmp_path / "beam").glob("part-*"))) == 4
    assert part_bytes(tmp_path / "local") == part_bytes(tmp_path / "beam")
    # resume: a lost part is labelled again, the rest comes from the cache
    lost = sorted((tmp_path / "beam").glob("part-*.parquet"))[1]
    lost_rows = pq.read_metadata(lost).num_rows
    lost.unlink()
    again = bl.beam_label(dataset, teacher_dir, spec, cache_dir=tmp_path / "beam", **kwargs)
    assert (again.labelled, again.from_cache) == (lost_rows, len(set(texts)) - lost_rows)
    assert cache_rows(tmp_path / "local") == cache_rows(tmp_path / "beam")


def test_failing_text_is_reported_not_dropped(teacher_dir, tmp_path, monkeypatch):
    lines = ["flights to boston", "POISON flights to denver", "list flights from dallas", "what is fare code h"]
    (tmp_path / "a.txt").write_text("\n".join(lines[:2]) + "\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("\n".join(lines[2:]) + "\n\n", encoding="utf-8")
    real = beam_steps.label_batch

    def poisoned(teacher, texts, spec):
        if any("POISON" in t for t in texts):
            raise ValueError("teacher blew up on this text")
        return real(teacher, texts, spec)

    monkeypatch.setattr(beam_steps, "label_batch", poisoned)
    spec = ProjectionSpec()
    kwargs = dict(augment_config=AugmentConfig(copies=1), num_workers=1, pipeline_options=IN_PROCESS,
                  log=lambda _: None)
    result = bl.beam_label(f"text:{tmp_path}/*.txt", teacher_dir, spec, cache_dir=tmp_path / "cache", **kwargs)
    assert result.train == 4 and result.augmented >= 3
    # exactly the poisoned text(s) failed (its augmented variant may carry the word too)
    failed = {f["text"] for f in result.failures}
    assert "POISON flights to denver" in failed and all("POISON" in t for t in failed)
    assert all("ValueError: teacher blew up on this text" in f["error"] for f in result.failures)
    fingerprint = teacher_fingerprint(load_teacher(teacher_dir))
    rows = cache_rows(tmp_path / "cache")
    assert cache_key(fingerprint, spec, "flights to boston") in rows  # its batch-mates were labelled
    assert cache_key(fingerprint, spec, "POISON flights to denver") not in rows
    assert len(rows) == result.labelled == result.unique - len(failed)
    dead = Path(result.run_dir) / beam_io.FAILED_FILE
    assert {json.loads(line)["text"] for line in dead.read_text().splitlines()} == failed
    with pytest.raises(bl.LabelFailuresError, match=rf"{len(failed)} of {result.unique} texts failed.*POISON.*"
                       r"teacher blew up.*run the same command again"):
        result.raise_for_failures()
    # the cause fixed, the same call labels only what failed
    monkeypatch.setattr(beam_steps, "label_batch", real)
    again = bl.beam_label(f"text:{tmp_path}/*.txt", teacher_dir, spec, cache_dir=tmp_path / "cache", **kwargs)
    assert again.failures == [] and again.labelled == len(failed) and again.from_cache == len(rows)


def test_a_planned_key_missing_from_the_output_is_a_failure(tmp_path):
    run_dir = tmp_path / "cache" / beam_io.RUNS_DIR / "run-1"
    run_dir.mkdir(parents=True)
    plan = {"texts": 1, "train": 1, "augmented": 0, "other_locale": 0, "unique": 1, "from_cache": 0,
            "todo_keys": ["k" * 32]}
    (run_dir / beam_io.PLAN_FILE).write_text(json.dumps(plan))
    result = bl._collect(str(tmp_path / "cache"), str(run_dir), "DirectRunner", 1, 1.0, lambda _: None)
    assert result.labelled == 0 and len(result.failures) == 1 and "lost by the runner" in result.failures[0]["error"]
    with pytest.raises(bl.LabelFailuresError, match="1 of 1 texts failed"):
        result.raise_for_failures()


@pytest.mark.slow
def test_cli_runner_and_its_errors(teacher_dir, tmp_path):
    runner = CliRunner()
    base = ["teacher", "label", "--teacher", str(teacher_dir), "--data", "fixture:atis", "--augment-copies", "0",
            "--label-cache", str(tmp_path / "cache")]
    ok = runner.invoke(main, base + ["--runner", "DirectRunner", "--num-workers", "1", "--pipeline-option",
                                     IN_PROCESS[0]])
    assert ok.exit_code == 0, ok.output
    assert "DirectRunner, 1 worker)" in ok.output and "0 failed" in ok.output
    bad = runner.invoke(main, base + ["--runner", "DirectRunner", "--pipeline-option", "direct_num_workers"])
    assert bad.exit_code == 2 and "--pipeline-option takes KEY=VALUE" in bad.output
    zero = runner.invoke(main, base + ["--runner", "DirectRunner", "--num-workers", "0"])
    assert zero.exit_code == 2 and "--num-workers must be >= 1" in zero.output
    # a text the teacher really cannot run (more positions than its encoder has), in worker
    # processes: reported from the dead letters, the command exits non-zero, the rest is labelled
    long_teacher = tmp_path / "long_teacher"
    shutil.copytree(teacher_dir, long_teacher)
    info = json.loads((long_teacher / "teacher.json").read_text())
    (long_teacher / "teacher.json").write_text(json.dumps(dict(info, max_length=4096)))  # tiny encoder: 130
    long_text = " ".join(["flights from boston to denver"] * 40)
    (tmp_path / "texts.txt").write_text(f"flights to boston\n{long_text}\nlist flights from dallas\n")
    failed = runner.invoke(main, ["teacher", "label", "--teacher", str(long_teacher), "--data",
                                  f"text:{tmp_path}/texts.txt", "--augment-copies", "0", "--label-cache",
                                  str(tmp_path / "long_cache"), "--runner", "DirectRunner", "--num-workers", "2"])
    assert failed.exit_code == 2, failed.output
    assert "1 of 3 texts failed in the teacher" in failed.output and "out of bounds" in failed.output
    assert sorted(r["text"] for r in cache_rows(tmp_path / "long_cache").values()) == [
        "flights to boston", "list flights from dallas"]


def test_pipeline_flags_per_runner():
    assert bl.pipeline_flags("DirectRunner", 3) == [
        "--runner=DirectRunner", "--direct_num_workers=3", "--direct_running_mode=multi_processing",
        "--default_sdk_harness_log_level=ERROR"]
    assert bl.pipeline_flags("DataflowRunner", 8, ["project=p", "--region=europe-west1"])[1:] == [
        "--num_workers=8", "--project=p", "--region=europe-west1"]
    assert bl.pipeline_flags("FlinkRunner", 4, {"flink_master": "localhost:8081"})[1:] == [
        "--parallelism=4", "--flink_master=localhost:8081"]
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        bl.pipeline_flags("DirectRunner", 1, ["=x"])


def test_text_sources_and_missing_beam(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="no file matches"):
        beam_io.read_text_files(str(tmp_path / "none-*.txt"))
    (tmp_path / "t.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(DataError, match="not UTF-8"):
        beam_io.read_text_files(str(tmp_path / "t.txt"))
    monkeypatch.setattr(beam_io, "beam", None)
    with pytest.raises(beam_io.BeamDependencyError, match=r'pip install -e "\.\[beam\]"'):
        beam_io.require_beam()


def test_a_worker_that_cannot_load_the_teacher_fails_the_run_loudly(teacher_dir, tmp_path):
    broken = tmp_path / "teacher"
    shutil.copytree(teacher_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(EdgePqrnnError, match=r"the Beam pipeline failed on DirectRunner.*run the same command "
                       r"again to resume"):
        bl.beam_label("fixture:atis", broken, ProjectionSpec(), augment_config=AugmentConfig(copies=0),
                      cache_dir=tmp_path / "cache", num_workers=1, pipeline_options=IN_PROCESS, log=lambda _: None)
    assert not list((tmp_path / "cache").glob("part-*"))


def test_a_csv_dataset_with_other_labels_is_refused_before_any_work(teacher_dir, tmp_path):
    csv = Path(__file__).resolve().parent.parent / "edge_pqrnn" / "data" / "fixtures" / "intents.csv"
    with pytest.raises(DataError, match=r"fine-tuned on labels that differ.*edge-pqrnn teacher finetune --data csv:"):
        bl.beam_label(f"csv:{csv}", teacher_dir, ProjectionSpec(), cache_dir=tmp_path / "cache", log=lambda _: None)
    assert not (tmp_path / "cache").exists()


class _PrefixFileSystem(LocalFileSystem):
    """``beamtest://PATH`` -> the local PATH: a stand-in for gs:// or s3://, so the paths
    that go through Beam's FileSystems (cache, dead letters, staged teacher) are tested."""

    PREFIX = "beamtest://"

    @classmethod
    def scheme(cls) -> str:
        return "beamtest"

    def _local(self, path: str) -> str:
        return path[len(self.PREFIX):] if path.startswith(self.PREFIX) else path

    def join(self, basepath: str, *paths: str) -> str:
        joined = super().join(self._local(basepath), *paths)
        return self.PREFIX + joined if basepath.startswith(self.PREFIX) else joined  # match() lists locally

    def create(self, path, *args, **kwargs):
        return super().create(self._local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
        return super().open(self._local(path), *args, **kwargs)

    def rename(self, sources, destinations):
        return super().rename([self._local(s) for s in sources], [self._local(d) for d in destinations])

    def exists(self, path):
        return super().exists(self._local(path))

    def match(self, patterns, limits=None):
        return super().match([self._local(p) for p in patterns], limits)


def test_remote_paths_through_beam_filesystems(dataset, teacher_dir, tmp_path):
    spec = ProjectionSpec()
    config = AugmentConfig(copies=1)
    local = label_dataset(dataset, teacher_dir, spec, augment_config=config, cache_dir=tmp_path / "local",
                          progress=False, log=lambda _: None)
    remote_teacher = f"beamtest://{tmp_path}/remote_teacher"
    shutil.copytree(teacher_dir, tmp_path / "remote_teacher")
    result = bl.beam_label(dataset, remote_teacher, spec, augment_config=config,
                           cache_dir=f"beamtest://{tmp_path}/remote_cache", num_workers=1,
                           pipeline_options=IN_PROCESS, log=lambda _: None)
    result.raise_for_failures()
    assert result.labelled == local.labels.labelled
    assert part_bytes(tmp_path / "local") == part_bytes(tmp_path / "remote_cache")
    assert beam_io.cached_keys(f"beamtest://{tmp_path}/remote_cache") == set(cache_rows(tmp_path / "local"))
    assert not list((tmp_path / "remote_cache").rglob("*.json*"))  # the run's plan is removed after a clean run
    # a local teacher is staged under a remote temp_location, once per fingerprint
    staged = beam_io.stage_teacher(str(teacher_dir), "f" * 32, f"beamtest://{tmp_path}/tmp")
    assert staged == f"beamtest://{tmp_path}/tmp/edge_pqrnn_teacher/{'f' * 32}"
    for name in ("teacher.json", "model.safetensors", "metrics.json"):
        assert (tmp_path / "tmp" / "edge_pqrnn_teacher" / ("f" * 32) / name).read_bytes() == \
            (teacher_dir / name).read_bytes()
    assert beam_io.stage_teacher(str(teacher_dir), "f" * 32, None) == str(teacher_dir)  # DirectRunner: as given


def test_a_retried_chunk_replaces_its_part(tmp_path):
    import numpy as np

    write = beam_steps.WritePart(str(tmp_path), "123")
    rows = [(1, "b" * 32, "to boston", np.ones(3, np.float32), np.zeros((2, 4), np.float32)),
            (0, "a" * 32, "hi", np.zeros(3, np.float32), np.ones((1, 4), np.float32))]
    assert list(write.process((7, rows))) == [2]
    assert list(write.process((7, rows[::-1]))) == [2]  # the runner retried the bundle
    assert [p.name for p in tmp_path.iterdir()] == ["part-123-000007-aaaaaaaaaaaa.parquet"]  # no copy, no temp
    table = pq.read_table(tmp_path / "part-123-000007-aaaaaaaaaaaa.parquet")
    assert table.column("key").to_pylist() == ["a" * 32, "b" * 32] and table.column("num_rows").to_pylist() == [1, 2]


def test_benchmark_times_every_arm_on_the_same_texts(teacher_dir):
    rows = bl.benchmark_label("fixture:atis", teacher_dir, ProjectionSpec(), workers=(1, 1), limit=10,
                              augment_config=AugmentConfig(copies=1), pipeline_options=IN_PROCESS,
                              log=lambda _: None)
    assert [(r["path"], r["workers"]) for r in rows] == [("local", 1), ("DirectRunner", 1), ("DirectRunner", 1)]
    assert len({r["texts"] for r in rows}) == 1 and rows[0]["texts"] >= 10  # each arm labelled everything
    assert all(r["identical_to_local"] for r in rows[1:]) and all(r["texts_per_second"] > 0 for r in rows)
    with pytest.raises(ConfigError, match="takes a dataset"):
        bl.benchmark_label("text:/nonexistent-*.txt", teacher_dir, ProjectionSpec())

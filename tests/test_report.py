"""The report: a Markdown file whose images exist, and the per-label scores behind it."""

from __future__ import annotations

import pytest

from edge_pqrnn.report import build_report, per_label_scores

pytest.importorskip("matplotlib")


def test_per_label_scores():
    rows = per_label_scores(["a", "a", "b", "c"], ["a", "b", "b", "a"])
    assert rows["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert rows["b"]["precision"] == 0.5 and rows["b"]["recall"] == 1.0
    assert rows["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_report_for_an_artifact_with_reference(built, tmp_path):
    path = build_report(built.path, tmp_path / "rep", reference=built.run_dir, repeats=5, log=lambda _: None)
    text = path.read_text()
    for image in ("confusion.png", "per_intent.png", "latency.png", "latency_by_tokens.png", "bytes.png",
                  "agreement.png"):
        assert f"]({image})" in text
        assert (tmp_path / "rep" / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "intent agreement int8 vs float" in text
    # latency against token counts up to the fixture's T=16, each with its floor
    rows = [line for line in text.splitlines() if line.startswith("| ") and line.count("|") == 4
            and line.split("|")[1].strip().isdigit()]
    assert [int(r.split("|")[1]) for r in rows] == [4, 8, 16]
    assert all(float(r.split("|")[3]) > 0 for r in rows)
    for intent in {ex.intent for ex in built.dataset.test}:
        assert f"| {intent} |" in text


def test_report_without_reference_says_how_to_get_agreement(built, tmp_path):
    path = build_report(built.path, tmp_path / "rep", repeats=5, log=lambda _: None)
    text = path.read_text()
    assert "pass `--reference RUN_DIR`" in text
    assert not (tmp_path / "rep" / "agreement.png").exists()
    assert "| float |" not in text

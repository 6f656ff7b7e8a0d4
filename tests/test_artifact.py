"""Artifact.load / run / predict on a real tiny artifact, and every broken-file message
through the library and through the ``predict`` command."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import artifact_fixtures
from edge_pqrnn.artifact import Artifact, OpLibraryMissingError, check
from edge_pqrnn.cli_artifact import COMMANDS, predict_command
from edge_pqrnn.converters.tflite_fuse import fuse
from edge_pqrnn.errors import ArtifactError, DataError, OpLibraryError
from edge_pqrnn.evaluate import decode as decode_logits
from edge_pqrnn.build import build_metadata
from edge_pqrnn.format import schema
from edge_pqrnn.projection.ops import projection_model
from edge_pqrnn.projection.reference import decode, token_rows
from edge_pqrnn.quant.ptq import convert, representative_texts
from edge_pqrnn.run import load_run
from hostile_texts import HOSTILE

# The commands as `edge-pqrnn` will hold them, run in a fresh Python as a user would.
CLI = artifact_fixtures.CLI


@pytest.fixture(scope="module")
def body(built):
    """A converted body (no projection op, no metadata) of the reference run."""
    run = load_run(built.run_dir)
    calibration = representative_texts([ex.text for ex in built.dataset.train], run.spec, samples=40, full_length=8)
    return run, convert(run.model, run.spec, calibration, batch_size=None).model


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, input=stdin, timeout=300)


def test_predict_decodes_slot_spans_in_the_original_text(built):
    with Artifact.load(built.path) as model:
        flight, taxi = model.predict(["show me flights from boston to denver", "is there a taxi in new york on friday"])
    assert (flight.intent, taxi.intent) == ("flight", "ground_service")
    assert flight.slots == ((21, 27, "fromloc", "boston"), (31, 37, "toloc", "denver"))
    assert taxi.slots == ((19, 27, "city", "new york"), (31, 37, "day", "friday"))
    assert 0.5 < flight.score <= 1.0 and flight.num_tokens == 8  # 7 words + <EOS>
    assert flight.score == pytest.approx(float(np.exp(flight.intent_logits).max() / np.exp(flight.intent_logits).sum()),
                                         rel=1e-5)


def test_predict_spans_equal_the_evaluate_decoder_on_the_test_split(built):
    texts = [ex.text for ex in built.dataset.test]
    with Artifact.load(built.path) as model:
        predictions = model.predict(texts, batch_size=7)
        logits = model.logits(texts)
        labels = model.labels
    intents, spans = decode_logits(logits, [token_rows(t, model.spec) for t in texts], labels)
    assert [p.intent for p in predictions] == intents
    assert [tuple(s[:3] for s in p.slots) for p in predictions] == [tuple(s) for s in spans]
    assert all(p.text[s.start:s.end] == s.text for p in predictions for s in p.slots)
    assert sum(len(p.slots) for p in predictions) > len(texts)  # the model really tags slots


def test_spans_index_the_text_given_even_around_dropped_characters(built):
    with Artifact.load(built.path) as model:
        from_str, from_bytes = model.predict(["\ud800flights from boston to \udfffdenver",
                                              b"\xff flights from boston to \xc0denver"])
    # str input: offsets into the str itself (the lone surrogates the op drops still count).
    assert [(s.slot_type, s.text) for s in from_str.slots] == [("fromloc", "boston"), ("toloc", "denver")]
    assert all(from_str.text[s.start:s.end] == s.text for s in from_str.slots)
    assert from_str.slots[1].start == 25
    # bytes input: offsets into the decoded text (invalid bytes dropped), which is .text.
    assert from_bytes.text == " flights from boston to denver"
    assert [(s.start, s.end, s.text) for s in from_bytes.slots] == [(14, 20, "boston"), (24, 30, "denver")]


@pytest.mark.parametrize("runtime", ["litert", "tflite"])
def test_hostile_texts_give_defined_outputs(built, runtime):
    texts = list(HOSTILE.values())
    with Artifact.load(built.path, runtime=runtime) as model:
        batched = model.predict(texts)
        alone = [model.predict([t])[0] for t in texts]
        raw = model.run(texts)
        spec = model.spec
    expected_rows = [len(token_rows(decode(t), spec)) for t in texts]
    assert [p.num_tokens for p in batched] == expected_rows
    assert raw["num_tokens"].tolist() == expected_rows
    assert all(np.isfinite(v).all() for v in raw.values())
    for one, many in zip(alone, batched):  # batching never changes a text's result
        assert one.intent == many.intent and np.array_equal(one.intent_logits, many.intent_logits)
        assert one.slots == many.slots
    assert batched[0].text == "" and batched[0].slots == () and batched[0].num_tokens == 1  # just <EOS>


def test_run_batches_any_size_and_returns_empty_arrays_for_no_text(built):
    texts = [ex.text for ex in built.dataset.test[:9]]
    with Artifact.load(built.path) as model:
        whole, chunked, empty = model.run(texts), model.run(texts, batch_size=4), model.run([])
    assert all(np.array_equal(whole[k], chunked[k]) for k in whole)
    assert {k: v.shape for k, v in empty.items()} == {"intent_logits": (0, 3), "slot_logits": (0, 16, 9),
                                                      "num_tokens": (0,)}
    with Artifact.load(built.batch1_path) as fixed:  # a batch-1 export takes any batch too
        out = fixed.run(texts)
    assert out["intent_logits"].shape == (9, 3)
    assert (out["intent_logits"].argmax(-1) == whole["intent_logits"].argmax(-1)).all()


def test_bad_text_arguments_say_the_fix(built):
    with Artifact.load(built.path) as model:
        with pytest.raises(DataError, match=r"got a single str: wrap it in a list \(\[text\]\)"):
            model.predict("flights to boston")
        with pytest.raises(DataError, match=r"texts\[1\] is a NoneType; every text must be str or UTF-8 bytes"):
            model.run(["ok", None])
    with pytest.raises(ArtifactError, match="was closed: load it again with Artifact.load()"):
        model.run(["x"])


BAD_ARGUMENTS = [  # issue 23: these raised a bare TypeError, or (a dict) ran its keys
    ({"texts": None}, r"texts must be a list of str or bytes, got NoneType: pass a list"),
    ({"texts": 5}, r"texts must be a list of str or bytes, got int: pass a list"),
    ({"texts": np.array("flights")}, r"texts must be a list of str or bytes, got a 0-d array: pass a 1-d array"),
    ({"texts": np.array([["a", "b"]])}, r"got a 2-d array: pass a 1-d array or a list"),
    ({"texts": {"flights to boston": 1}}, r"got a dict: pass a list, e\.g\. list\(d\.values\(\)\)"),
    ({"texts": {"a", "b"}}, r"got a set: pass a list"),
    ({"texts": ["ok"], "batch_size": 2.5}, r"batch_size must be a whole number of at least 1, got 2\.5"),
    ({"texts": ["ok"], "batch_size": 0}, r"batch_size must be a whole number of at least 1, got 0"),
    ({"texts": ["ok"], "batch_size": "8"}, r"batch_size must be a whole number of at least 1, got '8'"),
]


@pytest.mark.parametrize("method", ["run", "predict", "logits"])
def test_bad_api_arguments_raise_one_input_error(built, method):
    from edge_pqrnn.errors import ConfigError, EdgePqrnnError, InputError

    with Artifact.load(built.path) as model:
        for kwargs, message in BAD_ARGUMENTS:
            with pytest.raises(InputError, match=message) as error:
                getattr(model, method)(**kwargs)
            # one type, caught by every older except clause too
            assert isinstance(error.value, (EdgePqrnnError, DataError, ConfigError, TypeError, ValueError))
        # what is accepted: any 1-d sequence of str/bytes, numpy integers as batch size
        out = model.run(np.array(["flights to boston", "fares"]), batch_size=np.int64(1))
        assert out["intent_logits"].shape == (2, 3)


def test_prediction_with_lone_surrogates_writes_as_utf8_json(built):
    # issue 23: to_dict() of a str with lone surrogates could not be encoded as UTF-8.
    text = "flights from boston\ud800 to denver\udfff"
    with Artifact.load(built.path) as model:
        prediction = model.predict([text])[0]
    encoded = json.dumps(prediction.to_dict(), ensure_ascii=False).encode("utf-8")
    back = json.loads(encoded)
    assert back["text"] == "flights from boston\ufffd to denver\ufffd" and len(back["text"]) == len(text)
    for span in back["slots"]:  # the offsets still index the text
        assert back["text"][span["start"] : span["end"]] == span["text"]


def _flip(data: bytes, position: int, bit: int = 0) -> bytes:
    flipped = bytearray(data)
    flipped[position] ^= 1 << bit
    return bytes(flipped)


def _weights_offset(data: bytes) -> int:
    """Where the largest weight buffer's bytes sit in the file."""
    model = schema().ModelT.InitFromPackedBuf(data, 0)
    largest = max((b for b in model.buffers if b.data is not None), key=lambda b: len(b.data))
    offset = data.find(bytes(largest.data))
    assert offset > 0
    return offset + len(largest.data) // 2


EXPORT_AGAIN = "export it again with `edge-pqrnn export`"


def broken_files(built, body, tmp: Path) -> dict[str, tuple[Path, str]]:
    """Name -> (file, the exact error line the CLI prints for it)."""
    data = built.artifact
    run, body_bytes = body
    other_spec = dataclasses.replace(run.spec, feature_size=32)
    cases = {
        "missing": (b"", f"{tmp / 'missing.tflite'} does not exist: pass the path of a .tflite written by "
                         "`edge-pqrnn export`"),
        "non_flatbuffer": (b"hello, I am a text file\n",
                           "{path} is not a TFLite model (24 bytes, no TFL3 identifier at byte 4): pass a .tflite "
                           f"written by `edge-pqrnn export`; if it was one, its header is damaged: {EXPORT_AGAIN}"),
        "empty": (b"", "{path} is not a TFLite model (0 bytes, no TFL3 identifier at byte 4): pass a .tflite "
                       f"written by `edge-pqrnn export`; if it was one, its header is damaged: {EXPORT_AGAIN}"),
        "truncated": (data[: len(data) // 2],
                      f"{{path}} is truncated or corrupt ({len(data) // 2:,} bytes; the flatbuffer does not parse, "
                      f"it refers to byte <N>): copy the file again or {EXPORT_AGAIN}"),
        "bitflip_weights": (_flip(data, _weights_offset(data), 3),
                            "{path} does not match the content hash recorded at export (changed after export): "
                            f"the file is corrupted: {EXPORT_AGAIN}"),
        "bitflip_identifier": (_flip(data, 5),
                               f"{{path}} is not a TFLite model ({len(data):,} bytes, no TFL3 identifier at byte 4): "
                               "pass a .tflite written by `edge-pqrnn export`; if it was one, its header is "
                               f"damaged: {EXPORT_AGAIN}"),
        "bitflip_root_offset": (_flip(data, 2, 7),
                                f"{{path}} is truncated or corrupt ({len(data):,} bytes; the flatbuffer does not "
                                f"parse, it refers to byte <N>): copy the file again or {EXPORT_AGAIN}"),
        "projection_only": (projection_model(run.spec),
                            "{path} has no edge-pqrnn metadata (a .tflite exported by another tool, or a bare "
                            f"projection model?): {EXPORT_AGAIN}"),
        "body_without_op": (body_bytes,
                            "{path} has no EdgePqrnnProjection op, so it does not take raw text (a model body or "
                            f"another tool's model?): {EXPORT_AGAIN}"),
        "options_differ_from_metadata": (
            fuse(body_bytes, run.spec, dict(build_metadata(run, "x", "int8"), projection=other_spec.to_dict())),
            f"{{path}} has EdgePqrnnProjection options {run.spec.op_options()} that differ from its metadata's "
            f"projection {other_spec.op_options()} (edited after export?): {EXPORT_AGAIN}"),
        "labels_do_not_fit_outputs": (
            fuse(body_bytes, run.spec, dict(build_metadata(run, "x", "int8"), intents=["a", "b"])),
            "{path} has outputs {'intent_logits': [-1, 3], 'num_tokens': [-1], 'slot_logits': [-1, 16, 9]} that do "
            "not fit its labels and projection (expected {'intent_logits': [-1, 2], 'num_tokens': [-1], "
            "'slot_logits': [-1, 16, 9]}): the file is corrupted: " + EXPORT_AGAIN),
    }
    files = {}
    for name, (content, message) in cases.items():
        path = tmp / f"{name}.tflite"
        if name != "missing":
            path.write_bytes(content)
        files[name] = (path, message.replace("{path}", str(path)))
    return files


def _matches(expected: str, actual: str) -> bool:
    pattern = re.escape(expected).replace(re.escape("<N>"), r"[\d,]+")
    return re.fullmatch(pattern, actual) is not None


@pytest.fixture(scope="module")
def broken(built, body, tmp_path_factory):
    return broken_files(built, body, tmp_path_factory.mktemp("broken"))


@pytest.mark.parametrize("case", ["missing", "non_flatbuffer", "empty", "truncated", "bitflip_weights",
                                  "bitflip_identifier", "bitflip_root_offset", "projection_only", "body_without_op",
                                  "options_differ_from_metadata", "labels_do_not_fit_outputs"])
def test_broken_files_give_one_exact_line(broken, case):
    path, message = broken[case]
    with pytest.raises(ArtifactError) as error:
        Artifact.load(path)
    assert _matches(message, str(error.value)), str(error.value)
    with pytest.raises(ArtifactError):  # bytes in, same checks
        check(path.read_bytes() if path.exists() else b"")


def test_broken_files_through_the_cli_exit_2_with_the_line_and_no_traceback(broken):
    for case, (path, message) in broken.items():
        proc = run_cli("predict", str(path), "flights to boston")
        stderr = proc.stderr.decode()
        assert proc.returncode == 2, (case, stderr)
        assert "Traceback" not in stderr and proc.stdout == b""
        assert _matches(f"error: {message}", stderr.strip().splitlines()[-1]), (case, stderr)


def test_missing_op_library_is_an_artifact_error_with_the_fix(built, monkeypatch, tmp_path):
    with pytest.raises(OpLibraryMissingError) as error:
        Artifact.load(built.path, library=str(tmp_path / "nope.so"))
    assert str(error.value) == (f"cannot open {built.path}: the op library {tmp_path / 'nope.so'} does not exist; "
                                "pass the path of libpqrnn_projection.so, or none to use the one built by "
                                "`pip install`")
    assert isinstance(error.value, ArtifactError) and isinstance(error.value, OpLibraryError)
    not_a_library = tmp_path / "fake.so"
    not_a_library.write_bytes(b"not an ELF file")
    with pytest.raises(OpLibraryMissingError, match=r"does not load as a TFLite delegate .*rebuild it with "
                                                    r"`pip install -e \.`$"):
        Artifact.load(built.path, library=str(not_a_library))
    monkeypatch.setenv("EDGE_PQRNN_OP_LIBRARY", str(tmp_path / "gone.so"))
    with pytest.raises(OpLibraryMissingError, match=r"EDGE_PQRNN_OP_LIBRARY points to .*gone\.so, which does not "
                                                    r"exist: unset it or point it at a built libpqrnn_projection\.so$"):
        Artifact.load(built.path)


def test_predict_command_prints_intents_and_spans(built):
    runner = CliRunner()
    table = runner.invoke(predict_command, [str(built.path), "show me flights from boston to denver"])
    assert table.exit_code == 0, table.output
    first = table.output.splitlines()[0]
    assert first.startswith("flight\t") and first.endswith('\t"show me flights from boston to denver"')
    assert '  fromloc [21, 27) "boston"' in table.output and '  toloc [31, 37) "denver"' in table.output
    as_json = runner.invoke(predict_command, [str(built.path), "--json", "rental cars at dallas", ""])
    rows = json.loads(as_json.output)
    assert [r["intent"] for r in rows][0] == "ground_service"
    assert rows[0]["slots"] == [{"start": 15, "end": 21, "type": "city", "text": "dallas"}]
    assert rows[1]["num_tokens"] == 1 and len(rows[1]["intent_logits"]) == 3


def test_predict_command_reads_raw_lines_from_stdin(built):
    proc = run_cli("predict", str(built.path), "--json",
                   stdin=b"fares from oakland please\n\xff\xfe\x00 taxi\r\n\n" + "明天 🙂".encode() + b"\n")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    rows = json.loads(proc.stdout)
    assert [r["text"] for r in rows] == ["fares from oakland please", "\x00 taxi", "", "明天 🙂"]
    assert rows[0]["slots"] == [{"start": 11, "end": 18, "type": "fromloc", "text": "oakland"}]


def test_commands_are_click_commands_with_help():
    for command in COMMANDS:
        result = CliRunner().invoke(command, ["--help"])
        assert result.exit_code == 0 and command.name in ("validate", "predict", "inspect")
        assert "ARTIFACT" in result.output

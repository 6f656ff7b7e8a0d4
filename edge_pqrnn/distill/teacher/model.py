"""The joint intent + slot teacher, its batches, and the teacher directory.

Slots are predicted **per projection token row**, not per sub-word: each row of
``token_rows(text, spec)`` reads the encoder state of the first sub-word whose character
span overlaps the row's span (markers read ``<s>``), plus a learned embedding of where the
row starts inside that sub-word. Without it, rows that share a sub-word (the characters
of a char-mode student, a suffix cut off a word) get one tag: in char mode the best
possible slot F1 of the multilingual dev set was 0.21 (every char of ``▁office`` read the
same state, the space included), in word mode 0.94 (eu 0.60, ml 0.75, hu 0.82). The
teacher's slot logits are then aligned to the student's rows by construction, whatever the two tokenisers do, and both
are scored by the same :func:`edge_pqrnn.evaluate.score`.

A teacher directory holds::

    teacher.json        encoder config, head sizes, max_length, projection spec, source
    labels.json         intents, tags, slot types (edge_pqrnn.evaluate.Labels)
    tokenizer.json      the tokenizers.Tokenizer
    model.safetensors   all weights, float32
    history.json        one entry per epoch
    metrics.json        written last: dev/test metrics, times (marks a finished teacher)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_pqrnn._io import atomic_write_bytes, destination_mode
from edge_pqrnn.distill.teacher import require
from edge_pqrnn.distill.teacher.e5 import build_tokenizer
from edge_pqrnn.errors import ArtifactError
from edge_pqrnn.evaluate import Labels, Logits
from edge_pqrnn.projection import ProjectionSpec, Token
from edge_pqrnn.projection.reference import decode as decode_text
from edge_pqrnn.projection.reference import token_rows

torch = require("torch")
transformers = require("transformers")
tokenizers = require("tokenizers")

TEACHER_FILE = "teacher.json"
LABELS_FILE = "labels.json"
TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "model.safetensors"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"


ROW_OFFSETS = 8  # character offsets of a row inside its sub-word: 0..6, and 7 for 7 or more


class JointTeacher(torch.nn.Module):
    """An encoder with an intent head (masked mean of the last layer) and a slot head
    (the first sub-word of each projection token row, plus the row's offset in it).

    Args:
        encoder: an ``XLMRobertaModel`` (or any model returning ``last_hidden_state``).
        num_intents: intent classes.
        num_tags: BIO tags (0: no slot head).
        dropout: dropout before both heads.
        row_offsets: size of the row-offset embedding (0: none, as teachers before it).
            It starts at zero, so a new teacher begins as one without it.
    """

    def __init__(self, encoder: Any, num_intents: int, num_tags: int, dropout: float = 0.1,
                 row_offsets: int = ROW_OFFSETS):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = torch.nn.Dropout(dropout)
        self.intent_head = torch.nn.Linear(hidden, num_intents)
        self.slot_head = torch.nn.Linear(hidden, num_tags) if num_tags else None
        self.row_offsets = row_offsets if num_tags else 0
        self.row_offset = torch.nn.Embedding(self.row_offsets, hidden) if self.row_offsets else None
        if self.row_offset is not None:
            torch.nn.init.zeros_(self.row_offset.weight)

    def forward(self, input_ids: Any, attention_mask: Any, row_index: Any, row_offset: Any) -> tuple[Any, Any]:
        """Intent logits [B, I] and slot logits [B, R, tags] (None without slot head).

        ``row_index`` [B, R] holds, per token row, the sub-word position it reads;
        ``row_offset`` [B, R] where the row starts inside it (see :func:`encode_batch`).
        """
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        intent = self.intent_head(self.dropout(pooled))
        if self.slot_head is None:
            return intent, None
        gathered = torch.gather(hidden, 1, row_index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        if self.row_offset is not None:
            gathered = gathered + self.row_offset(row_offset.clamp(max=self.row_offsets - 1))
        return intent, self.slot_head(self.dropout(gathered))


@dataclasses.dataclass
class Batch:
    """Tensors for a batch of texts.

    Attributes:
        input_ids, attention_mask: [B, L] (L = the longest text, at most max_length).
        row_index: [B, R] sub-word position read by each token row (0 on padding).
        row_offset: [B, R] characters from that sub-word's start to the row's start.
        row_valid: [B, R] bool, True on real rows whose text survived truncation.
        rows: per text, its projection token rows.
    """

    input_ids: Any
    attention_mask: Any
    row_index: Any
    row_offset: Any
    row_valid: Any
    rows: list[list[Token]]


def encode_batch(tokenizer: Any, texts: Sequence[str], spec: ProjectionSpec, max_length: int) -> Batch:
    """Tokenise texts and map each projection token row to its first sub-word.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` with offsets (``<s> $A </s>`` template).
        texts: the raw texts.
        spec: the projection spec whose token rows the slot logits follow.
        max_length: sub-words per text, ``<s>``/``</s>`` included (longer texts are
            truncated; rows past the cut are invalid and read ``<s>``).

    Returns:
        A :class:`Batch`.
    """
    decoded = [decode_text(t) for t in texts]
    rows = [token_rows(t, spec) for t in decoded]
    encodings = [tokenizer.encode(t) for t in decoded]
    length = min(max_length, max(len(e.ids) for e in encodings))
    R = max(len(r) for r in rows)
    ids = np.full((len(texts), length), 1, np.int64)  # <pad> = 1
    attention = np.zeros((len(texts), length), np.int64)
    row_index = np.zeros((len(texts), R), np.int64)
    row_offset = np.zeros((len(texts), R), np.int64)
    row_valid = np.zeros((len(texts), R), bool)
    for b, (enc, text_rows) in enumerate(zip(encodings, rows)):
        piece_ids = list(enc.ids)
        offsets = list(enc.offsets)
        if len(piece_ids) > length:  # keep <s> ... and the closing </s>
            piece_ids = piece_ids[: length - 1] + piece_ids[-1:]
            offsets = offsets[: length - 1] + [(0, 0)]
        ids[b, : len(piece_ids)] = piece_ids
        attention[b, : len(piece_ids)] = 1
        starts = [(a, e) for a, e in offsets]
        for r, token in enumerate(text_rows):
            if token.special:
                row_valid[b, r] = True  # reads <s>; its gold tag is always "O"
                continue
            for position in range(1, len(piece_ids) - 1):
                a, e = starts[position]
                if e > a and min(e, token.end) > max(a, token.start):
                    row_index[b, r] = position
                    row_offset[b, r] = max(0, token.start - a)
                    row_valid[b, r] = True
                    break
    return Batch(torch.from_numpy(ids), torch.from_numpy(attention), torch.from_numpy(row_index),
                 torch.from_numpy(row_offset), torch.from_numpy(row_valid), rows)


@dataclasses.dataclass
class Teacher:
    """A fine-tuned teacher loaded by :func:`load_teacher`; a predictor for ``evaluate()``.

    Attributes:
        path: the teacher directory.
        model: the :class:`JointTeacher` (eval mode).
        tokenizer: its tokenizer.
        labels: the label vocabularies.
        spec: the projection spec it was fine-tuned on (its token rows).
        max_length: sub-words per text.
        info: the content of ``teacher.json``.
        metrics: the content of ``metrics.json``.
    """

    path: Path | None
    model: JointTeacher
    tokenizer: Any
    labels: Labels
    spec: ProjectionSpec
    max_length: int
    info: dict[str, Any]
    metrics: dict[str, Any]

    def predict(self, texts: Sequence[str], batch_size: int = 64, spec: ProjectionSpec | None = None) -> Logits:
        """Intent logits [N, I] and slot logits [N, T, tags] over ``spec``'s rows.

        Args:
            texts: raw texts.
            batch_size: texts per forward pass.
            spec: whose token rows the slot logits follow (default: the teacher's);
                rows are padded to ``spec.max_tokens``.
        """
        spec = spec or self.spec
        return predict_logits(self.model, self.tokenizer, texts, spec, self.max_length, batch_size)

    @property
    def num_params(self) -> int:
        """Parameters of encoder and heads."""
        return sum(p.numel() for p in self.model.parameters())

    @property
    def fp32_bytes(self) -> int:
        """Bytes of all parameters in float32."""
        return 4 * self.num_params


def predict_logits(model: JointTeacher, tokenizer: Any, texts: Sequence[str], spec: ProjectionSpec,
                   max_length: int, batch_size: int = 64) -> Logits:
    """Run the teacher on texts (no gradients); slot logits padded to ``spec.max_tokens``."""
    model.eval()
    num_tags = model.slot_head.out_features if model.slot_head is not None else 0
    intents = np.zeros((len(texts), model.intent_head.out_features), np.float32)
    slots = np.zeros((len(texts), spec.max_tokens, num_tags), np.float32) if num_tags else None
    # Length-sorted batches: far less padding (ATIS lengths vary 3-46 words).
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with torch.no_grad():
        for i in range(0, len(order), batch_size):
            index = order[i : i + batch_size]
            batch = encode_batch(tokenizer, [texts[j] for j in index], spec, max_length)
            intent, slot = model(batch.input_ids, batch.attention_mask, batch.row_index, batch.row_offset)
            intents[index] = intent.numpy()
            if slots is not None:
                for b, j in enumerate(index):  # rows past a text's own stay zero
                    n = len(batch.rows[b])
                    slots[j, :n] = slot[b, :n].numpy()
    return Logits(intents, slots)


def tiny_encoder(texts: Sequence[str], hidden: int = 32, layers: int = 2, heads: int = 2,
                 seed: int = 0) -> tuple[Any, Any]:
    """A small randomly initialised XLM-R encoder + a Unigram tokenizer built from
    ``texts`` (special ids as in XLM-R; ``▁word`` pieces for words seen twice, plus every
    character): for tests, seconds instead of minutes.

    Args:
        texts: texts whose words and characters make the vocabulary.
        hidden, layers, heads: encoder size.
        seed: torch seed of the initialisation.

    Returns:
        ``(model, tokenizer)`` like :func:`edge_pqrnn.distill.teacher.e5.load_e5_encoder`.
    """
    words = Counter(w for t in texts for w in decode_text(t).split())
    chars = sorted({c for t in texts for c in decode_text(t) if not c.isspace()})
    pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁"]
    scores = [0.0, 0.0, 0.0, 0.0, -3.0]
    for word, count in sorted(words.items()):
        if count >= 2:
            pieces.append("▁" + word)
            scores.append(-2.0 - 1.0 / count)
    for c in chars:
        if c not in pieces:
            pieces.append(c)
            scores.append(-8.0)
    pieces.append("<mask>")
    scores.append(0.0)
    torch.manual_seed(seed)
    config = transformers.XLMRobertaConfig(
        vocab_size=len(pieces), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=2 * hidden, max_position_embeddings=130, pad_token_id=1, bos_token_id=0,
        eos_token_id=2,
    )
    model = transformers.XLMRobertaModel(config, add_pooling_layer=False)
    return model, build_tokenizer(pieces, scores)


def _write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def save_teacher_files(directory: Path, model: JointTeacher, tokenizer: Any, labels: Labels, info: dict[str, Any]) -> None:
    """Write weights, tokenizer, labels and ``teacher.json`` into ``directory`` (not metrics)."""
    from safetensors.torch import save as save_tensors

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS_FILE, save_tensors(state))
    atomic_write_bytes(directory / TOKENIZER_FILE, tokenizer.to_str().encode("utf-8"))
    _write_json(directory / LABELS_FILE, labels.to_dict())
    _write_json(directory / TEACHER_FILE, info)


def check_target(out_dir: Path, overwrite: bool) -> None:
    """Refuse to replace a finished or foreign non-empty directory unless ``overwrite``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ArtifactError(f"{out_dir} exists and is not a directory; choose another --out")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ArtifactError(f"{out_dir} exists and is not empty; pass --overwrite to replace it or choose another --out")


def publish(tmp_dir: Path, out_dir: Path) -> None:
    """Rename a finished temporary directory into place, replacing an old one (whose
    mode it takes; a new one gets 0777 minus the umask, not the temp folder's 0700)."""
    os.chmod(tmp_dir, destination_mode(out_dir, directory=True))
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        out_dir.rename(old / "teacher")
        tmp_dir.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp_dir.rename(out_dir)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ArtifactError(
            f"{path} is missing: not a finished teacher directory; run "
            "`edge-pqrnn teacher finetune --data NAME --out DIR` first"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def load_teacher(path: str | Path) -> Teacher:
    """Load a teacher directory written by :func:`edge_pqrnn.distill.teacher.finetune.finetune`.

    Args:
        path: the teacher directory.

    Returns:
        A :class:`Teacher` (model in eval mode).

    Raises:
        ArtifactError: missing/unfinished directory or weights that do not fit.

    Example:
        >>> teacher = load_teacher("runs/teacher_atis")  # doctest: +SKIP
        >>> teacher.labels.intents[teacher.predict(["flights to boston"]).intent.argmax()]  # doctest: +SKIP
        'atis_flight'
    """
    from safetensors.torch import load_file

    path = Path(path)
    metrics = _read_json(path / METRICS_FILE)
    info = _read_json(path / TEACHER_FILE)
    labels = Labels.from_dict(_read_json(path / LABELS_FILE))
    tokenizer = tokenizers.Tokenizer.from_file(str(path / TOKENIZER_FILE))
    config = transformers.XLMRobertaConfig.from_dict(info["encoder_config"])
    encoder = transformers.XLMRobertaModel(config, add_pooling_layer=False)
    model = JointTeacher(encoder, len(labels.intents), len(labels.tags), dropout=info.get("dropout", 0.1),
                         row_offsets=info.get("row_offsets", 0))
    try:
        model.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
    except (RuntimeError, OSError) as exc:
        raise ArtifactError(f"{path / WEIGHTS_FILE} does not fit teacher.json ({exc}); fine-tune again") from exc
    model.eval()
    return Teacher(path, model, tokenizer, labels, ProjectionSpec.from_dict(info["projection"]),
                   int(info["max_length"]), info, metrics)

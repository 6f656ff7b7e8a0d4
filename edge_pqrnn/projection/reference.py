"""The projection in pure numpy: the truth the native op is tested against, bit for bit.

Text -> tokens (with character offsets) -> a 128-bit MurmurHash2-64-derived hash per
token, extended to as many 64-bit words as the feature size needs -> ternary features
(2 bits each: 0 -> 0, 1 -> +1, 2 -> -1, 3 -> 0). See docs/projection.md.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
from collections.abc import Sequence

import numpy as np

from edge_pqrnn.projection import _unicode_data
from edge_pqrnn.projection.spec import ProjectionSpec

MASK64 = (1 << 64) - 1
K_MUL = 0xC6A4A7935BD1E995
K_MUL2 = 0x9E3779B97F4A7835

BOS, EOS, NULL = "<BOS>", "<EOS>", "<null>"

# Character classes (see tools/gen_unicode_data.py).
WORD, SPACE, ATOM, SPLIT, JOIN, IGNORE = 0, 1, 2, 3, 4, 5

_RUN_STARTS = [run[0] for run in _unicode_data.CLASS_RUNS]
_LOWER = dict(_unicode_data.LOWER_PAIRS)
_TERNARY = np.array([0.0, 1.0, -1.0, 0.0], dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class Token:
    """One token row: its text (before lower-casing) and [start, end) character offsets
    into the decoded text. Markers (BOS/EOS/null) have ``special=True`` and empty spans."""

    text: str
    start: int
    end: int
    special: bool = False


@dataclasses.dataclass
class Projection:
    """The projection of a batch of B texts with T = max_tokens rows each.

    Attributes:
        features: float32 [B, T, F] ternary features, zero rows past ``num_tokens``.
        mask: float32 [B, T], 1.0 on token rows.
        pool_weights: float32 [B, T], ``1 / num_tokens`` on token rows (mean pooling
            without a division in the model graph).
        num_tokens: int32 [B].
        tokens: per text, the token rows (markers included).
        texts: the decoded texts the offsets refer to.
    """

    features: np.ndarray
    mask: np.ndarray
    pool_weights: np.ndarray
    num_tokens: np.ndarray
    tokens: list[list[Token]]
    texts: list[str]


def char_class(cp: int) -> int:
    """The frozen class of a code point (WORD, SPACE, ATOM, SPLIT, JOIN or IGNORE)."""
    i = bisect.bisect_right(_RUN_STARTS, cp) - 1
    if i >= 0:
        first, last, cls = _unicode_data.CLASS_RUNS[i]
        if first <= cp <= last:
            return cls
    return WORD


def lower(text: str) -> str:
    """Simple (1:1) Unicode lower-casing, code point by code point, as the op does it."""
    return "".join(chr(_LOWER.get(ord(c), ord(c))) for c in text)


def decode(text: str | bytes) -> str:
    """Bytes as the op sees them: UTF-8 with every undecodable byte dropped.

    A ``str`` is encoded first (lone surrogates as their 3-byte forms, which then drop),
    so a str and its UTF-8 bytes give the same tokens.
    """
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    return bytes(text).decode("utf-8", "ignore")


def tokenize(text: str, mode: str = "word", limit: int | None = None) -> list[Token]:
    """Split decoded text into tokens with [start, end) character offsets.

    Word mode: SPACE characters separate tokens and are dropped; IGNORE characters are
    dropped without separating; each ATOM (punctuation, symbol) and SPLIT character
    (scripts without spaces) is a token of its own; WORD characters run together; JOIN
    characters (combining marks) extend whatever token precedes them.
    Char mode: every non-IGNORE character is a token (spaces too); JOIN marks extend
    the preceding token. With ``limit``, stops once that many tokens are complete (the
    rest of a huge text is never scanned, as in the op).
    """
    tokens: list[list] = []  # [chars, start, end, open_for_words]
    last_open = False  # may a following JOIN/WORD character extend the last token?

    def new_token(ch: str, i: int, words: bool) -> bool:
        if limit is not None and len(tokens) >= limit:
            return False
        tokens.append([[ch], i, i + 1, words])
        return True

    for i, ch in enumerate(text):
        cls = char_class(ord(ch))
        if cls == IGNORE:
            continue
        if cls == JOIN and last_open:
            tokens[-1][0].append(ch)
            tokens[-1][2] = i + 1
            continue
        if mode == "char":
            if not new_token(ch, i, False):
                break
            last_open = True
            continue
        if cls == SPACE:
            last_open = False
        elif cls in (WORD, JOIN):
            if last_open and tokens[-1][3]:
                tokens[-1][0].append(ch)
                tokens[-1][2] = i + 1
            elif not new_token(ch, i, True):
                break
            last_open = True
        else:  # ATOM or SPLIT: a token of its own, which only marks may extend
            if not new_token(ch, i, False):
                break
            last_open = True
    return [Token("".join(chars), start, end) for chars, start, end, _ in tokens]


def token_rows(text: str, spec: ProjectionSpec) -> list[Token]:
    """The T-bounded token rows for one decoded text: markers, truncation, empty text."""
    words = tokenize(text, spec.mode, limit=spec.max_tokens - spec.markers)
    rows: list[Token] = []
    if spec.add_bos:
        rows.append(Token(BOS, 0, 0, special=True))
    rows += words
    if spec.add_eos:
        rows.append(Token(EOS, len(text), len(text), special=True))
    if not rows:  # empty text and no markers: one defined row instead of none
        rows.append(Token(NULL, 0, 0, special=True))
    return rows


def _shift_mix(v: int) -> int:
    return v ^ (v >> 47)


def hash_words(data: bytes, num_words: int) -> list[int]:
    """The 64-bit hash words of a token's UTF-8 bytes (seq_flow_lite's scheme)."""
    n = len(data)
    h1 = (n * K_MUL) & MASK64
    h2 = 0
    full = n - n % 8
    for off in range(0, full, 8):
        d = int.from_bytes(data[off : off + 8], "little")
        h1 ^= (_shift_mix((d * K_MUL) & MASK64) * K_MUL) & MASK64
        h1 = (h1 * K_MUL) & MASK64
        h2 ^= h1
    if full < n:
        d = int.from_bytes(data[full:], "little")
        h1 ^= d
        h1 = (h1 * K_MUL) & MASK64
        h2 ^= h1
    h1 = (_shift_mix(h1) * K_MUL) & MASK64
    h2 ^= h1
    h1 = _shift_mix(h1)
    h2 = (_shift_mix((h2 * K_MUL2) & MASK64) * K_MUL2) & MASK64
    words = [h1, h2]
    lo, hi = h1, h2
    while len(words) < num_words:
        t = (_shift_mix(lo) * K_MUL) & MASK64
        hi ^= t
        lo = (_shift_mix((hi * K_MUL2) & MASK64) * K_MUL2) & MASK64
        hi = _shift_mix(t)
        words += [lo, hi]
    return words[:num_words]


@functools.lru_cache(maxsize=1 << 16)
def token_features(data: bytes, feature_size: int) -> np.ndarray:
    """Ternary float32 features of one token's (already lower-cased) UTF-8 bytes."""
    words = np.array(hash_words(data, (feature_size + 31) // 32), dtype=np.uint64)
    shifts = np.arange(0, 64, 2, dtype=np.uint64)
    codes = (words[:, None] >> shifts[None, :]) & np.uint64(3)
    out = _TERNARY[codes.reshape(-1).astype(np.int64)][:feature_size]
    out.setflags(write=False)
    return out


def _token_bytes(token: Token, spec: ProjectionSpec) -> bytes:
    text = token.text if token.special or not spec.lowercase else lower(token.text)
    return text.encode("utf-8")


def distort(token: str, probability: float, rng: np.random.Generator) -> str:
    """Training-time noise on one token: delete, move or re-insert one character."""
    if len(token) < 2 or rng.random() >= probability:
        return token
    chars = list(token)
    i = int(rng.integers(len(chars)))
    action = int(rng.integers(3))
    if action == 0:  # delete
        del chars[i]
    elif action == 1:  # move to another position
        ch = chars.pop(i)
        chars.insert(int(rng.integers(len(chars) + 1)), ch)
    else:  # re-insert a copy elsewhere
        chars.insert(int(rng.integers(len(chars) + 1)), chars[i])
    return "".join(chars)


def project(
    texts: Sequence[str | bytes] | str | bytes,
    spec: ProjectionSpec | None = None,
    rng: np.random.Generator | None = None,
) -> Projection:
    """Project a batch of texts (str or raw UTF-8 bytes; a single text is a batch of one).

    Args:
        texts: the texts; invalid UTF-8 bytes are dropped, never an error.
        spec: projection parameters (defaults to ``ProjectionSpec()``).
        rng: random generator for ``spec.distortion`` (training only); without it no
            distortion is applied, whatever the spec says.

    Returns:
        A :class:`Projection` with features, masks, token counts and token rows.

    Example:
        >>> p = project(["hello world"], ProjectionSpec(feature_size=4, max_tokens=4))
        >>> p.features[0, :3].tolist()
        [[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
    """
    spec = spec or ProjectionSpec()
    if isinstance(texts, (str, bytes, bytearray)):
        texts = [texts]
    batch = len(texts)
    T, F = spec.max_tokens, spec.feature_size
    features = np.zeros((batch, T, F), dtype=np.float32)
    mask = np.zeros((batch, T), dtype=np.float32)
    pool = np.zeros((batch, T), dtype=np.float32)
    counts = np.zeros((batch,), dtype=np.int32)
    all_rows, decoded = [], []
    for b, raw in enumerate(texts):
        text = decode(raw)
        rows = token_rows(text, spec)
        for t, token in enumerate(rows):
            data = _token_bytes(token, spec)
            if rng is not None and spec.distortion > 0 and not token.special:
                data = distort(data.decode("utf-8"), spec.distortion, rng).encode("utf-8")
            features[b, t] = token_features(data, F)
        n = len(rows)
        counts[b] = n
        mask[b, :n] = 1.0
        pool[b, :n] = np.float32(1.0) / np.float32(n)
        all_rows.append(rows)
        decoded.append(text)
    return Projection(features, mask, pool, counts, all_rows, decoded)

"""Texts that try to break the projection: shared by the op, export and CLI tests."""

from __future__ import annotations

import sys
import unicodedata

import numpy as np

#: Named hostile texts: every one must give a defined output, never a crash.
HOSTILE: dict[str, bytes] = {
    "empty": b"",
    "whitespace_only": " \t\n\r\x0b\x0c\u00a0\u3000\u2028".encode(),
    "nul_bytes": b"abc\x00def\x00\x00",
    "invalid_utf8": b"\xff\xfe\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80abc\xe2\x82",
    "lone_surrogates": "x\ud800y\udfffz".encode("utf-8", "surrogatepass"),
    "rtl_and_marks": "שָׁלוֹם عَرَبِيّ \u200f\u202eabc\u202c".encode(),
    "combining_only": "\u0301\u0308\u0327".encode(),
    "emoji_zwj": "👨‍👩‍👧‍👦 🇩🇪 👍🏽".encode(),
    "cjk_thai": "明天去北京 สวัสดีครับ\u200bวันนี้ 안녕하세요".encode(),
    "long_token": ("a" * 100_000).encode(),
    "many_tokens": ("word " * 20_000).encode(),
    "huge_mixed": ("Zürich 明天 🙂, ok? " * 6_000).encode(),
}


MIXED = "abc xyzÄÖÜ ß,.!? 明天北京 สวัสดี 😀👍 ab-cd İI\t\u0301"


def random_texts(count: int, seed: int = 0) -> list[bytes]:
    """Random texts drawn from every Unicode general category, mixed scripts and raw bytes."""
    rng = np.random.default_rng(seed)
    by_category: dict[str, list[int]] = {}
    for cp in range(0, 0x30000, 7):
        by_category.setdefault(unicodedata.category(chr(cp)), []).append(cp)
    categories = sorted(by_category)
    texts = []
    for i in range(count):
        kind = i % 4
        if kind == 3:  # raw bytes: mostly invalid UTF-8, NULs
            texts.append(rng.integers(0, 256, size=int(rng.integers(0, 40)), dtype=np.uint8).tobytes())
            continue
        chars = []
        for _ in range(int(rng.integers(0, 60))):
            if kind == 0 or rng.random() < 0.3:
                cat = categories[int(rng.integers(len(categories)))]
                cps = by_category[cat]
                chars.append(chr(cps[int(rng.integers(len(cps)))]))
            else:
                chars.append(MIXED[int(rng.integers(len(MIXED)))])
        texts.append("".join(chars).encode("utf-8", "surrogatepass"))
    return texts


assert sys.maxunicode == 0x10FFFF

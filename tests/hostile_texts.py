"""Texts that try to break the projection: shared by the op, export and CLI tests."""

from __future__ import annotations

import sys
import unicodedata

import numpy as np

from edge_pqrnn.validate import HOSTILE_TEXTS

#: Named hostile texts: every one must give a defined output, never a crash. They live in
#: the package because validate() runs every artifact on them too.
HOSTILE: dict[str, bytes] = HOSTILE_TEXTS


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

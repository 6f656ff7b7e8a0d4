"""Character spans <-> BIO tags over the projection's token rows.

The projection tokenises its own way (punctuation apart, CJK/Thai per character, see
``edge_pqrnn.projection.reference.tokenize``), so slot tags are never taken from a
dataset's word tags: spans are character offsets and every token row is tagged by the
characters it covers. Decoding follows seqeval's default (non-strict) chunking.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_pqrnn.data.records import Example, Span
from edge_pqrnn.errors import DataError
from edge_pqrnn.projection.reference import Token

OUTSIDE = "O"


def tag_vocabulary(slot_types: Sequence[str]) -> list[str]:
    """The tag list of a slot head: ``["O", "B-a", "I-a", "B-b", "I-b", ...]``.

    Args:
        slot_types: slot types (sorted and de-duplicated here, so any order gives the
            same vocabulary).

    Returns:
        The tags; index 0 is always ``"O"``.

    Example:
        >>> tag_vocabulary(["city", "airline"])
        ['O', 'B-airline', 'I-airline', 'B-city', 'I-city']
    """
    tags = [OUTSIDE]
    for slot_type in sorted(set(slot_types)):
        tags += [f"B-{slot_type}", f"I-{slot_type}"]
    return tags


def bio_tags(example: Example, tokens: Sequence[Token]) -> list[str]:
    """BIO tags for the token rows of ``example.text``.

    A token takes the slot whose span overlaps most of its characters (the earliest on
    a tie); the first token of a span is ``B-``, later ones ``I-``. Markers (BOS/EOS/
    null) and tokens outside every span are ``"O"``. Spans cut off by truncation simply
    get no tags.

    Args:
        example: the example (its ``slots`` are character spans into its text).
        tokens: its token rows, e.g. ``token_rows(example.text, spec)``.

    Returns:
        One tag per token row.

    Example:
        >>> from edge_pqrnn.projection.reference import tokenize
        >>> ex = Example("to st. louis", "flight", ((3, 12, "city"),))
        >>> bio_tags(ex, tokenize(ex.text))
        ['O', 'B-city', 'I-city', 'I-city']
    """
    tags: list[str] = []
    previous_slot = -1
    for token in tokens:
        best, best_overlap = -1, 0
        if not token.special:
            for index, (start, end, _) in enumerate(example.slots):
                overlap = min(end, token.end) - max(start, token.start)
                if overlap > best_overlap:
                    best, best_overlap = index, overlap
        if best < 0:
            tags.append(OUTSIDE)
        else:
            prefix = "I" if best == previous_slot else "B"
            tags.append(f"{prefix}-{example.slots[best][2]}")
        previous_slot = best
    return tags


def spans_from_tags(tags: Sequence[str], tokens: Sequence[Token]) -> tuple[Span, ...]:
    """Character spans from BIO tags over token rows (the inverse of :func:`bio_tags`).

    seqeval's default chunking: ``B-x`` starts an entity; ``I-x`` continues an open
    ``x`` entity and otherwise starts a new one; ``O`` and marker tokens close it. An
    entity spans from its first token's start to its last token's end.

    Args:
        tags: one tag per token row (``"O"``, ``"B-type"``, ``"I-type"``).
        tokens: the token rows the tags belong to.

    Returns:
        ``(start, end, type)`` spans in text order.

    Raises:
        DataError: when the lengths differ or a tag is not ``O``/``B-x``/``I-x``.

    Example:
        >>> from edge_pqrnn.projection.reference import tokenize
        >>> spans_from_tags(["O", "I-city", "I-city"], tokenize("to new york"))
        ((3, 11, 'city'),)
    """
    if len(tags) != len(tokens):
        raise DataError(
            f"spans_from_tags: {len(tags)} tags for {len(tokens)} token rows; pass exactly one "
            "tag per row (slice padded model outputs to the number of rows)"
        )
    spans: list[Span] = []
    current: list = []  # [start, end, type] of the open entity, or empty
    for tag, token in zip(tags, tokens, strict=True):
        if tag == OUTSIDE or token.special:
            kind, slot_type = OUTSIDE, ""
        elif len(tag) > 2 and tag[:2] in ("B-", "I-"):
            kind, slot_type = tag[0], tag[2:]
        else:
            raise DataError(f"spans_from_tags: invalid tag {tag!r}; tags are 'O', 'B-<type>' or 'I-<type>'")
        if current and (kind != "I" or slot_type != current[2]):
            spans.append(tuple(current))
            current = []
        if kind == OUTSIDE:
            continue
        if current:
            current[1] = token.end
        else:
            current = [token.start, token.end, slot_type]
    if current:
        spans.append(tuple(current))
    return tuple(spans)

"""Augmentations: each operation's effect, span mapping, seeding and config errors."""

from __future__ import annotations

import itertools
import random

import pytest

from edge_pqrnn.distill.augment import (
    AugmentConfig,
    augment,
    char_noise,
    drop_words,
    mask_words,
    other_locale_examples,
    reorder_units,
    slot_values,
    substitute_slots,
    swap_words,
)
from edge_pqrnn.data.records import Example
from edge_pqrnn.errors import ConfigError

EX = Example("show flights from new york to denver on monday", "flight",
             ((18, 26, "fromloc"), (30, 36, "toloc"), (40, 46, "day")))
OTHER = Example("flights from dallas to san francisco", "flight", ((13, 19, "fromloc"), (23, 36, "toloc")))


def spans(ex: Example) -> list[tuple[str, str]]:
    return [(ex.text[s:e], t) for s, e, t in ex.slots]


def test_mask_keeps_spans_on_masked_words():
    out = mask_words(EX, random.Random(1), rate=1.0, token="<mask>")
    assert out.text == " ".join(["<mask>"] * 9)
    assert [t for _, t in spans(out)] == ["fromloc", "toloc", "day"]
    assert spans(out)[0][0] == "<mask> <mask>"  # "new york" is two masked words, one span


def test_drop_never_empties_and_maps_spans():
    out = drop_words(EX, random.Random(0), rate=1.0)
    assert len(out.text.split()) == 1
    for _ in range(20):
        out = drop_words(EX, random.Random(_), rate=0.3)
        assert 0 < len(out.text.split()) < 9
        for value, slot_type in spans(out):
            assert value in {"new york", "new", "york", "denver", "monday"}, (value, slot_type)


def test_swap_keeps_slots_contiguous():
    for seed in range(30):
        out = swap_words(EX, random.Random(seed), rate=0.5, distance=2)
        assert sorted(out.text.split()) == sorted(EX.text.split())
        assert len(out.slots) == 3  # no slot split in two
        assert {v for v, _ in spans(out)} <= {"new york", "york new", "denver", "monday"}


def test_reorder_moves_whole_slots_and_keeps_every_word():
    orders = set()
    for seed in range(40):
        out = reorder_units(EX, random.Random(seed), rate=0.3)
        assert sorted(out.text.split()) == sorted(EX.text.split())
        assert sorted(spans(out)) == sorted(spans(EX))  # "new york" moves as one unit
        orders.add(out.text)
    assert len(orders) > 10 and EX.text.split()[0] in {t.split()[-1] for t in orders}  # moved to the end too
    assert reorder_units(Example("hello", "greet"), random.Random(0)) == Example("hello", "greet")


def test_reorder_cuts_scripts_without_spaces_at_slot_boundaries():
    zh = Example("让厨房音箱取消静音", "unmute", ((1, 3, "area"), (3, 5, "name")), language="zh-CN")
    pieces = ("让", "厨房", "音箱", "取消静音")
    joined = {"".join(order) for order in itertools.permutations(pieces)}
    orders = set()
    for seed in range(30):
        out = reorder_units(zh, random.Random(seed), rate=0.5)
        assert out.text in joined  # the pieces move whole and join without spaces
        assert sorted(spans(out)) == [("厨房", "area"), ("音箱", "name")]
        orders.add(out.text)
    assert len(orders) > 5
    # a slot on part of a Latin word does not cut it: the word moves whole
    hu = Example("konyhában kapcsold fel", "turn_on", ((0, 6, "area"),), language="hu")
    for seed in range(10):
        out = reorder_units(hu, random.Random(seed), rate=1.0)
        assert sorted(out.text.split()) == sorted(hu.text.split()) and spans(out) == [("konyhában", "area")]


def test_reorder_is_off_by_default_so_earlier_variants_stay_the_same():
    assert AugmentConfig().weights.get("reorder", 0) == 0
    out = augment([EX], AugmentConfig(copies=2, weights={"reorder": 1.0}))
    assert len(out) == 2 and all(sorted(e.text.split()) == sorted(EX.text.split()) for e in out)


def test_substitute_uses_values_of_the_same_type():
    values = slot_values([EX, OTHER])
    assert values[("en", "toloc")] == ["denver", "san francisco"]
    out = substitute_slots(EX, random.Random(3), values, rate=1.0)
    assert spans(out) == [("dallas", "fromloc"), ("san francisco", "toloc"), ("monday", "day")]
    assert out.text == "show flights from dallas to san francisco on monday"


def test_substitute_without_alternatives_is_a_no_op():
    assert substitute_slots(EX, random.Random(0), slot_values([EX]), rate=1.0) == EX


def test_char_noise_changes_one_character_per_touched_word():
    out = char_noise(EX, random.Random(5), rate=0.2)
    before, after = EX.text.split(), out.text.split()
    assert len(before) == len(after) and before != after
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert all(abs(len(a) - len(b)) <= 1 for a, b in changed)
    assert len(out.slots) == 3


def test_augment_is_seeded_deduplicated_and_order_independent():
    config = AugmentConfig(copies=3, seed=7)
    first = augment([EX, OTHER], config)
    assert first == augment([EX, OTHER], config)
    assert {e.text for e in first} == {e.text for e in augment([OTHER, EX], config)}
    assert all(e.text not in {EX.text, OTHER.text} for e in first)
    assert len({e.text for e in first}) == len(first) <= 6
    assert augment([EX, OTHER], AugmentConfig(copies=3, seed=8)) != first
    assert all(e.intent == "flight" for e in first)
    assert augment([EX], AugmentConfig(copies=0)) == []


def test_augment_falls_back_when_an_operation_cannot_apply():
    no_slots = Example("hello there friend", "greet")
    out = augment([no_slots], AugmentConfig(copies=1, weights={"substitute": 5.0, "mask": 0.1}))
    assert len(out) == 1 and "<mask>" in out[0].text


def test_config_errors_name_the_choices():
    with pytest.raises(ConfigError, match="choose from mask, drop, swap, substitute, char_noise, reorder"):
        AugmentConfig(weights={"shuffle": 1.0})
    with pytest.raises(ConfigError, match="not all zero"):
        AugmentConfig(weights={"mask": 0.0})
    with pytest.raises(ConfigError, match="rate"):
        AugmentConfig(rate=0.0)


def test_other_locales_excludes_the_students_languages():
    assert other_locale_examples(["en"], exclude=["en"]) == []
    out = other_locale_examples(["nl"], exclude=["en"], per_intent=2)
    assert out and {ex.language for ex in out} == {"nl"}
    assert len(out) <= 2 * len({ex.intent for ex in out})

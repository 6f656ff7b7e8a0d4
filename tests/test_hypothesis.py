"""Property tests (hypothesis): the native op equals the numpy reference bit for bit on
arbitrary text and every option, and the C options parser holds its promises on
arbitrary bytes."""

from __future__ import annotations

import numpy as np
from flatbuffers import flexbuffers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_pqrnn.errors import ConfigError
from edge_pqrnn.projection import ProjectionSpec, project
from edge_pqrnn.projection.ops import op_options_bytes, parse_options_native, project_native
from edge_pqrnn.projection.spec import MAX_FEATURE_SIZE, MAX_TOKENS_LIMIT

# deadline off: the first examples pay for numpy's and the library's warm-up.
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Pieces that make tokenisation interesting when strung together: every class boundary,
#: marks after spaces, ZWJ/ZWSP, case pairs whose lower form differs in UTF-8 length.
FRAGMENTS = ["a", "Ab", "ZÜRICH", " ", "\t", "\u00a0", "\u3000", ",", "!", "-", "\u0301", "\u0e31", "\u200b",
             "\u200d", "\u200f", "\ufeff", "明", "天", "สวัสดี", "👍", "🏽", "\u0130", "\u023a", "\u2c65", "Σ",
             "\x00", "\ud800", "\udfff", "\U0010ffff", "\U000e0001"]


@st.composite
def specs(draw) -> ProjectionSpec:
    """Any valid spec, with T*F bounded so one example stays fast (F up to 8192 with T
    small, T up to 4096 with F small)."""
    add_bos, add_eos = draw(st.booleans()), draw(st.booleans())
    markers = int(add_bos) + int(add_eos)
    feature_size = draw(st.one_of(st.integers(1, 300), st.sampled_from([31, 32, 33, 64, 65, MAX_FEATURE_SIZE])))
    cap = max(markers + 1, min(MAX_TOKENS_LIMIT, 65536 // feature_size))
    max_tokens = draw(st.one_of(st.integers(markers + 1, min(cap, 80)), st.integers(markers + 1, cap)))
    return ProjectionSpec(feature_size=feature_size, max_tokens=max_tokens, mode=draw(st.sampled_from(["word", "char"])),
                          add_bos=add_bos, add_eos=add_eos, lowercase=draw(st.booleans()))


def assert_bit_exact(texts: list, spec: ProjectionSpec) -> None:
    ref = project(texts, spec)
    for got, expected, name in zip(project_native(texts, spec),
                                   (ref.features, ref.mask, ref.pool_weights, ref.num_tokens),
                                   ("features", "mask", "pool_weights", "num_tokens")):
        assert got.dtype == expected.dtype and np.array_equal(got, expected), f"{name} differs for {spec}"


@PROPERTY
@given(text=st.text(st.characters(exclude_categories=())), spec=specs())  # lone surrogates included
def test_op_equals_reference_on_any_str(text, spec):
    assert_bit_exact([text], spec)


@PROPERTY
@given(data=st.binary(max_size=512), spec=specs())
def test_op_equals_reference_on_any_bytes(data, spec):
    assert_bit_exact([data], spec)


@PROPERTY
@given(pieces=st.lists(st.sampled_from(FRAGMENTS), max_size=80), spec=specs())
def test_op_equals_reference_on_class_boundaries(pieces, spec):
    assert_bit_exact(["".join(pieces)], spec)


@PROPERTY
@given(spec=specs())
def test_parser_reads_back_every_spec(spec):
    assert parse_options_native(op_options_bytes(spec)) == {
        "feature_size": spec.feature_size, "max_tokens": spec.max_tokens, "char_mode": int(spec.mode == "char"),
        "add_bos": int(spec.add_bos), "add_eos": int(spec.add_eos), "lowercase": int(spec.lowercase)}


@st.composite
def option_maps(draw) -> bytes:
    """Flexbuffer maps near the valid one: values of any int size or sign, bools, keys
    dropped or added, then possibly cut or with bytes flipped."""
    options: dict = dict(ProjectionSpec().op_options())
    for key in list(options):
        choice = draw(st.integers(0, 4))
        if choice == 1:
            options[key] = draw(st.integers(-(2**63), 2**63 - 1))
        elif choice == 2:
            options[key] = draw(st.booleans())
        elif choice == 3:
            del options[key]
    if draw(st.booleans()):
        options[draw(st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=8))] = draw(st.integers(-5, 5))
    raw = bytearray(flexbuffers.Dumps(options))
    for at, value in draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=3)):
        raw[at] = value
    return bytes(raw[: draw(st.integers(0, len(raw)))]) if draw(st.booleans()) else bytes(raw)


@PROPERTY
@given(raw=st.one_of(st.binary(max_size=200), option_maps()))
def test_parser_accepts_only_valid_options_and_explains_refusals(raw):
    try:
        parsed = parse_options_native(raw)
    except ConfigError as exc:
        assert str(exc)
        return
    # Whatever it accepts is a spec the reference accepts too (ProjectionSpec validates).
    ProjectionSpec(feature_size=parsed["feature_size"], max_tokens=parsed["max_tokens"],
                   add_bos=bool(parsed["add_bos"]), add_eos=bool(parsed["add_eos"]))
    assert {parsed[k] for k in ("char_mode", "add_bos", "add_eos", "lowercase")} <= {0, 1}

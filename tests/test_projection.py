"""The numpy reference: check vectors, tokenisation, markers, spec validation."""

import numpy as np
import pytest

from edge_pqrnn.errors import ConfigError
from edge_pqrnn.projection import ProjectionSpec, project, tokenize
from edge_pqrnn.projection.reference import decode, lower, token_features


@pytest.mark.parametrize(
    "token,expected",
    [("hello", [0, 1, 1, 0]), ("world", [0, 1, 0, 0]), ("<EOS>", [0, 1, 0, 0]), ("h", [0, 0, 1, 0]), ("w", [1, 0, 1, 0])],
)
def test_check_vectors_from_seq_flow_lite(token, expected):
    assert token_features(token.encode(), 4).tolist() == expected


def test_char_mode_check_vectors():
    spec = ProjectionSpec(feature_size=4, max_tokens=4, mode="char", add_eos=False)
    p = project(["hw"], spec)
    assert p.features[0, :2].tolist() == [[0, 0, 1, 0], [1, 0, 1, 0]]


def test_features_are_ternary_with_expected_balance():
    p = project(["the quick brown fox jumps over the lazy dog"], ProjectionSpec(feature_size=512))
    values = p.features[0, : p.num_tokens[0]]
    assert set(np.unique(values).tolist()) == {-1.0, 0.0, 1.0}
    assert 0.45 < (values == 0).mean() < 0.55  # P(0) = 1/2, P(+1) = P(-1) = 1/4


def test_long_features_extend_hash_words():
    short, long = token_features(b"flight", 64), token_features(b"flight", 256)
    assert np.array_equal(long[:64], short)
    assert not np.array_equal(long[64:128], long[:64])


def test_tokenize_splits_punctuation_scripts_and_keeps_offsets():
    text = "Book a flight to Zürich, 明天 🙂!"
    tokens = tokenize(text)
    assert [t.text for t in tokens] == ["Book", "a", "flight", "to", "Zürich", ",", "明", "天", "🙂", "!"]
    assert all(text[t.start : t.end] == t.text for t in tokens)


def test_combining_marks_stay_with_their_character():
    tokens = tokenize("cafe\u0301 สวัสดี")
    assert tokens[0].text == "cafe\u0301"
    assert "".join(t.text for t in tokens[1:]) == "สวัสดี"
    assert any(len(t.text) > 1 for t in tokens[1:])  # Thai vowel marks attach


def test_format_characters_are_dropped_and_zwsp_separates():
    assert [t.text for t in tokenize("ab\u200fcd")] == ["abcd"]
    assert [t.text for t in tokenize("ab\u200bcd")] == ["ab", "cd"]


def test_char_mode_keeps_spaces():
    assert [t.text for t in tokenize("a b", mode="char")] == ["a", " ", "b"]


def test_markers_truncation_and_empty_text():
    spec = ProjectionSpec(feature_size=8, max_tokens=4, add_bos=True, add_eos=True)
    p = project(["one two three four", ""], spec)
    assert [t.text for t in p.tokens[0]] == ["<BOS>", "one", "two", "<EOS>"]
    assert [t.text for t in p.tokens[1]] == ["<BOS>", "<EOS>"]
    no_markers = ProjectionSpec(feature_size=8, max_tokens=4, add_eos=False)
    assert [t.text for t in project([""], no_markers).tokens[0]] == ["<null>"]


def test_masks_and_pool_weights():
    p = project(["a b", "a b c d e"], ProjectionSpec(feature_size=8, max_tokens=8))
    assert p.num_tokens.tolist() == [3, 6]
    assert p.mask[0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert np.allclose(p.pool_weights.sum(axis=1), 1.0)
    assert not p.features[0, 3:].any()


def test_lowercasing_is_simple_and_optional():
    assert lower("ÄÖÜ İ Σ") == "äöü İ σ"  # U+0130 expands in full case mapping: kept
    on = project(["Hello"], ProjectionSpec(feature_size=64, max_tokens=2))
    off = project(["Hello"], ProjectionSpec(feature_size=64, max_tokens=2, lowercase=False))
    assert np.array_equal(on.features[0, 0], token_features(b"hello", 64))
    assert not np.array_equal(on.features, off.features)


def test_bytes_and_str_agree_and_invalid_bytes_drop():
    assert decode(b"a\xffb\xe2\x82") == "ab"
    s = project(["Zürich 明天"], ProjectionSpec(feature_size=16, max_tokens=8))
    b = project(["Zürich 明天".encode()], ProjectionSpec(feature_size=16, max_tokens=8))
    assert np.array_equal(s.features, b.features)


def test_distortion_needs_an_rng_and_changes_some_tokens():
    spec = ProjectionSpec(feature_size=32, max_tokens=16, distortion=0.5)
    text = ["distortion changes several of these longer tokens"]
    assert np.array_equal(project(text, spec).features, project(text, ProjectionSpec(feature_size=32, max_tokens=16)).features)
    noisy = project(text, spec, rng=np.random.default_rng(0))
    assert not np.array_equal(noisy.features, project(text, spec).features)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"feature_size": 0}, "feature_size must be an integer from 1 to 8192"),
        ({"max_tokens": 1}, "max_tokens must be an integer from 2"),
        ({"mode": "bytes"}, "mode must be one of word, char"),
        ({"distortion": 1.5}, "distortion must be in [0, 1)"),
    ],
)
def test_spec_errors_say_the_allowed_values(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        ProjectionSpec(**kwargs)


def test_op_options_round_trip_and_reject_unknown_keys():
    spec = ProjectionSpec(feature_size=128, max_tokens=32, mode="char", add_bos=True)
    assert ProjectionSpec.from_op_options(spec.op_options()) == spec
    with pytest.raises(ConfigError, match="unknown keys \\['colour'\\]"):
        ProjectionSpec.from_op_options({**spec.op_options(), "colour": 1})

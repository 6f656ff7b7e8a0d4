"""The projection's parameters, shared by the numpy reference and the native op."""

from __future__ import annotations

import dataclasses
from typing import Any

from edge_pqrnn.errors import ConfigError
from edge_pqrnn.format import DYNAMIC_TOKENS_OPTION, PROJECTION_OP as OP_NAME  # noqa: F401  (OP_NAME re-exported)

#: Version of the projection definition (tokenisation, hash, Unicode tables). The op
#: refuses options written for another version instead of silently hashing differently.
SPEC_VERSION = 1

MODES = ("word", "char")
MAX_FEATURE_SIZE = 8192
MAX_TOKENS_LIMIT = 4096


@dataclasses.dataclass(frozen=True)
class ProjectionSpec:
    """How text becomes ternary features.

    Args:
        feature_size: features per token (any size from 1 to 8192; 32 come from each
            64-bit hash word).
        max_tokens: the fixed number of token rows T (truncation/padding length); the
            BOS/EOS markers count towards it.
        mode: ``"word"`` (Unicode-aware words, punctuation and symbols apart, scripts
            without spaces split per character) or ``"char"`` (one token per character).
        add_bos: prepend the ``<BOS>`` marker token.
        add_eos: append the ``<EOS>`` marker token (kept even when the text is truncated).
        lowercase: lower-case each character (simple 1:1 Unicode mapping) before hashing.
        distortion: training-time probability of distorting each token (delete, move or
            re-insert a character). Reference only: the op never distorts.

    Example:
        >>> ProjectionSpec(feature_size=4, max_tokens=8).num_hash_words
        1
    """

    feature_size: int = 512
    max_tokens: int = 64
    mode: str = "word"
    add_bos: bool = False
    add_eos: bool = True
    lowercase: bool = True
    distortion: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.feature_size, int) or not 1 <= self.feature_size <= MAX_FEATURE_SIZE:
            raise ConfigError(
                f"feature_size must be an integer from 1 to {MAX_FEATURE_SIZE}, got {self.feature_size!r}"
            )
        for flag in ("add_bos", "add_eos", "lowercase"):  # metadata read from a file may hold any JSON
            value = getattr(self, flag)
            if not (isinstance(value, bool) or (isinstance(value, int) and value in (0, 1))):
                raise ConfigError(f"{flag} must be true or false, got {value!r}")
        markers = int(self.add_bos) + int(self.add_eos)
        if not isinstance(self.max_tokens, int) or not markers < self.max_tokens <= MAX_TOKENS_LIMIT:
            raise ConfigError(
                f"max_tokens must be an integer from {markers + 1} to {MAX_TOKENS_LIMIT} "
                f"(room for one token besides BOS/EOS), got {self.max_tokens!r}"
            )
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0.0 <= float(self.distortion) < 1.0:
            raise ConfigError(f"distortion must be in [0, 1), got {self.distortion!r}")

    @property
    def num_hash_words(self) -> int:
        """64-bit hash words per token (each gives 32 ternary features)."""
        return (self.feature_size + 31) // 32

    @property
    def markers(self) -> int:
        return int(self.add_bos) + int(self.add_eos)

    def op_options(self) -> dict[str, Any]:
        """The custom options written into the .tflite op (flexbuffer map)."""
        return {
            "spec_version": SPEC_VERSION,
            "feature_size": self.feature_size,
            "max_tokens": self.max_tokens,
            "char_mode": self.mode == "char",
            "add_bos": self.add_bos,
            "add_eos": self.add_eos,
            "lowercase": self.lowercase,
        }

    @classmethod
    def from_op_options(cls, options: dict[str, Any]) -> "ProjectionSpec":
        """Inverse of :meth:`op_options` (raises ConfigError on unknown or missing keys).
        The op's own optional ``dynamic_tokens`` key (see :func:`edge_pqrnn.projection.ops.op_options_bytes`)
        is not part of the spec and is ignored."""
        expected = set(cls().op_options())
        unknown = set(options) - expected - {DYNAMIC_TOKENS_OPTION}
        missing = expected - set(options)
        if unknown or missing:
            raise ConfigError(
                f"projection op options: unknown keys {sorted(unknown)}, missing keys "
                f"{sorted(missing)}; allowed keys are {sorted(expected)}"
            )
        if options["spec_version"] != SPEC_VERSION:
            raise ConfigError(
                f"projection spec_version {options['spec_version']} is not supported by this "
                f"edge-pqrnn (it implements version {SPEC_VERSION}); re-export the model"
            )
        return cls(
            feature_size=int(options["feature_size"]),
            max_tokens=int(options["max_tokens"]),
            mode="char" if options["char_mode"] else "word",
            add_bos=bool(options["add_bos"]),
            add_eos=bool(options["add_eos"]),
            lowercase=bool(options["lowercase"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProjectionSpec":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ConfigError(f"unknown projection keys {sorted(unknown)}; allowed: {sorted(fields)}")
        return cls(**data)

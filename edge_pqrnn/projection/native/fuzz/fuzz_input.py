"""The fuzz harness's input layout in Python (see the comment atop fuzz_projection.c).

The replay test decodes every corpus file with :func:`decode` to run it through the
plain library and the numpy reference; ``tools/fuzz.sh seed`` writes the seed corpus
with :func:`seeds`. Change this file and the C harness together.

Run as a script, it writes the seeds into a folder: ``python fuzz_input.py DIR``.
"""

from __future__ import annotations

import dataclasses
import pathlib
import struct
import sys

from edge_pqrnn.projection.spec import MAX_FEATURE_SIZE, MAX_TOKENS_LIMIT, ProjectionSpec

#: Floats per projected text (T*F) the harness allows; bigger derived sizes are capped.
BUDGET = 8192
HEADER = 6
#: Targets (flags bits 4-5): what the harness drives with the text.
CORE, UNCHECKED_STRUCT, KERNEL = 0, 1, 2
#: The C struct's fields, in order (pqrnn_options).
STRUCT_FIELDS = ("feature_size", "max_tokens", "char_mode", "add_bos", "add_eos", "lowercase")


@dataclasses.dataclass(frozen=True)
class FuzzInput:
    """One decoded harness input.

    Attributes:
        spec: the options derived from the header (always valid).
        target: CORE, UNCHECKED_STRUCT or KERNEL.
        options: the raw custom options bytes handed to the parser.
        text: the text (for KERNEL, a TFLite STRING buffer; still projected as text here).
    """

    spec: ProjectionSpec
    target: int
    options: bytes
    text: bytes

    def unchecked_struct(self) -> dict[str, int]:
        """The struct target 1 fills from the first 6 option bytes, as signed ints."""
        raw = self.options[:6].ljust(6, b"\0")
        return dict(zip(STRUCT_FIELDS, struct.unpack("6b", raw)))


def decode(data: bytes) -> FuzzInput:
    """Decode a corpus file exactly as ``LLVMFuzzerTestOneInput`` does."""
    h = data[:HEADER].ljust(HEADER, b"\0")
    at = min(len(data), HEADER)
    n = min(h[5], len(data) - at)
    flags = h[0]
    add_bos, add_eos = bool(flags & 2), bool(flags & 4)
    markers = int(add_bos) + int(add_eos)
    feature_size = 1 + int.from_bytes(h[1:3], "little") % MAX_FEATURE_SIZE
    max_tokens = markers + 1 + int.from_bytes(h[3:5], "little") % (MAX_TOKENS_LIMIT - markers)
    feature_size = min(feature_size, max(1, BUDGET // max_tokens))
    spec = ProjectionSpec(feature_size=feature_size, max_tokens=max_tokens, mode="char" if flags & 1 else "word",
                          add_bos=add_bos, add_eos=add_eos, lowercase=bool(flags & 8))
    target = (flags >> 4) & 3
    return FuzzInput(spec, CORE if target == 3 else target, bytes(data[at : at + n]), bytes(data[at + n :]))


def encode(spec: ProjectionSpec, text: bytes, options: bytes = b"", target: int = CORE) -> bytes:
    """The input that :func:`decode` turns back into ``spec``, ``options`` and ``text``.

    Raises:
        ValueError: options longer than 255 bytes, or a spec over the harness budget.
    """
    if len(options) > 255:
        raise ValueError(f"raw options hold at most 255 bytes, got {len(options)}")
    flags = (int(spec.mode == "char") | int(spec.add_bos) << 1 | int(spec.add_eos) << 2
             | int(spec.lowercase) << 3 | target << 4)
    header = bytes([flags]) + struct.pack("<HH", spec.feature_size - 1, spec.max_tokens - spec.markers - 1)
    data = header + bytes([len(options)]) + options + text
    if decode(data).spec != spec:
        raise ValueError(f"{spec} exceeds the harness budget of {BUDGET} floats per text")
    return data


def strings_buffer(texts: list[bytes]) -> bytes:
    """A TFLite STRING tensor buffer: int32 count, count+1 int32 offsets, the bytes."""
    offsets, at = [], 4 * (len(texts) + 2)
    for text in texts:
        offsets.append(at)
        at += len(text)
    offsets.append(at)
    return struct.pack(f"<{len(texts) + 2}i", len(texts), *offsets) + b"".join(texts)


def seeds() -> dict[str, bytes]:
    """Seed inputs: valid options for several specs, texts of each kind, every target."""
    from flatbuffers import flexbuffers

    specs = [ProjectionSpec(feature_size=64, max_tokens=24),
             ProjectionSpec(feature_size=77, max_tokens=16, mode="char", add_bos=True),
             ProjectionSpec(feature_size=8192, max_tokens=1, add_eos=False),
             ProjectionSpec(feature_size=2, max_tokens=4096, add_bos=True, lowercase=False),
             ProjectionSpec(feature_size=3, max_tokens=3, add_bos=True, add_eos=True)]
    texts = [b"", b"Book a flight to Z\xc3\xbcrich, \xe6\x98\x8e\xe5\xa4\xa9 \xf0\x9f\x99\x82!",
             "cafe\u0301 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35 \u05e9\u05b8\u05c1\u05dc\u05d5\u05b9\u05dd".encode(),
             b"\xff\xfe\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80abc\xe2\x82", b"a\x00b \t\n ab\xe2\x80\x8bcd",
             "\U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f1e9\U0001f1ea \u0130I\u03a3".encode()]
    out: dict[str, bytes] = {}
    for i, spec in enumerate(specs):
        options = bytes(flexbuffers.Dumps(spec.op_options()))
        for j, text in enumerate(texts):
            out[f"seed-core-{i}-{j}"] = encode(spec, text, options)
        out[f"seed-kernel-{i}"] = encode(spec, strings_buffer(texts), options, target=KERNEL)
    out["seed-kernel-empty-batch"] = encode(specs[0], strings_buffer([]), bytes(flexbuffers.Dumps(
        specs[0].op_options())), target=KERNEL)
    out["seed-struct-valid"] = encode(specs[0], texts[1], bytes([16, 5, 0, 1, 1, 1]), target=UNCHECKED_STRUCT)
    out["seed-struct-no-room"] = encode(specs[0], texts[1], bytes([16, 2, 0, 1, 1, 1]), target=UNCHECKED_STRUCT)
    return out


if __name__ == "__main__":
    folder = pathlib.Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (folder / name).write_bytes(data)
    print(f"wrote {len(seeds())} seeds to {folder}")

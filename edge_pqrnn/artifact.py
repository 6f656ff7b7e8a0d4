"""Open an exported .tflite and predict intents and slot spans from raw text.

The file is checked before any interpreter sees it (:mod:`edge_pqrnn.artifact_checks`:
existence, TFL3 identifier, flatbuffer structure, exactly one projection op, edge-pqrnn
metadata, whole-file content hash, op options, signature), so a broken or foreign file
gives one line saying what is wrong and what to do, instead of a runtime's stack trace
or an abort. It is then opened in a runtime of :mod:`edge_pqrnn.runtimes`.

Example:
    >>> with Artifact.load("atis.int8.tflite") as model:  # doctest: +SKIP
    ...     prediction = model.predict(["flights from boston to denver"])[0]
    >>> prediction.intent, prediction.slots  # doctest: +SKIP
    ('atis_flight', (SlotSpan(start=13, end=19, slot_type='fromloc.city_name', text='boston'), ...))
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any, NamedTuple

import numpy as np

from edge_pqrnn.artifact_checks import (Checked, check, find_problems, metadata_contents, parse_flatbuffer, read_metadata,
                                        read_source)
from edge_pqrnn.data.align import spans_from_tags
from edge_pqrnn.errors import ArtifactError, ConfigError, EdgePqrnnError, InputError, OpLibraryMissingError
from edge_pqrnn.evaluate import Labels, Logits
from edge_pqrnn.format import (FORMAT, INTENT_OUTPUT, NUM_TOKENS_OUTPUT, SIGNATURE, SLOT_OUTPUT,
                               TEXT_INPUT as INPUT_NAME)
from edge_pqrnn.projection.reference import decode, token_rows
from edge_pqrnn.runtimes.tflite import IN_PROCESS, InterpreterPool, open_interpreter, run_signature
from edge_pqrnn.projection.spec import ProjectionSpec

#: Runtimes :meth:`Artifact.load` can open in this process.
RUNTIMES = IN_PROCESS

_EXPORT_AGAIN = "export it again with `edge-pqrnn export`"


class SlotSpan(NamedTuple):
    """One predicted slot: ``text[start:end]`` is ``text``, of type ``slot_type``."""

    start: int
    end: int
    slot_type: str
    text: str


@dataclasses.dataclass(frozen=True)
class Prediction:
    """What the artifact says about one text.

    Attributes:
        text: the text the offsets index: the input ``str`` itself, or for ``bytes``
            input the bytes decoded as UTF-8 with invalid bytes dropped (what the op sees).
        intent: the arg-max intent label.
        score: its softmax probability.
        intent_logits: float32 [num_intents], in the order of ``Artifact.labels.intents``.
        slots: predicted spans, decoded from the arg-max BIO tag of each token row
            (empty without a slot head).
        num_tokens: token rows the op produced (markers included).
    """

    text: str
    intent: str
    score: float
    intent_logits: np.ndarray
    slots: tuple[SlotSpan, ...]
    num_tokens: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``slots`` as ``{start, end, type, text}`` objects).

        Lone surrogates (possible in a ``str`` input, never valid UTF-8) become U+FFFD,
        one character for one, so the dict always encodes as UTF-8 and the offsets still
        index ``text``.
        """
        return {
            "text": _utf8_safe(self.text),
            "intent": self.intent,
            "score": self.score,
            "intent_logits": [float(v) for v in self.intent_logits],
            "slots": [{"start": s.start, "end": s.end, "type": s.slot_type, "text": _utf8_safe(s.text)}
                      for s in self.slots],
            "num_tokens": self.num_tokens,
        }


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _utf8_safe(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (same length)."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def runtime_version(runtime: str) -> str:
    """The installed version of an in-process runtime (``""`` when not installed)."""
    from importlib import metadata

    package = {"litert": "ai-edge-litert", "tflite": "tensorflow"}.get(runtime)
    if package is None:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def _as_batch(texts: Sequence[str | bytes]) -> list[str | bytes]:
    """``texts`` as a list of str/bytes, or one :class:`InputError` saying what to pass.

    Raises:
        InputError: a single text, ``None``, a number, a mapping or set (no defined
            order, and a dict would silently be its keys), a 0-d or multi-dimensional
            array, or an element that is not str/bytes.
    """
    if isinstance(texts, (str, bytes, bytearray, memoryview)):
        raise InputError(f"texts must be a list of str or bytes, got a single {type(texts).__name__}: "
                         "wrap it in a list ([text])")
    if isinstance(texts, (Mapping, Set)):
        raise InputError(f"texts must be a list of str or bytes, got a {type(texts).__name__}: pass a list, "
                         "e.g. list(d.values()) for the texts of a dict")
    if isinstance(texts, np.ndarray) and texts.ndim != 1:
        raise InputError(f"texts must be a list of str or bytes, got a {texts.ndim}-d array: pass a 1-d array "
                         "or a list")
    try:
        batch = list(texts)
    except TypeError:
        raise InputError(f"texts must be a list of str or bytes, got {type(texts).__name__}: pass a list "
                         "([text, ...])") from None
    for i, text in enumerate(batch):
        if not isinstance(text, (str, bytes, bytearray, memoryview)):
            raise InputError(f"texts[{i}] is a {type(text).__name__}; every text must be str or UTF-8 bytes")
    return [bytes(t) if not isinstance(t, str) else t for t in batch]


def _batch_size(value: Any) -> int:
    """``batch_size`` as an int, or an :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"batch_size must be a whole number of at least 1, got {value!r}")
    return int(value)


def _original_offsets(text: str) -> list[int] | None:
    """For a str with lone surrogates (which the op drops), the index in ``text`` of each
    character of the decoded text; None when nothing was dropped."""
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return None
    # Every other character is valid UTF-8 on its own, so decoding drops exactly the
    # surrogates and keeps the rest in order.
    return [i for i, ch in enumerate(text) if not "\ud800" <= ch <= "\udfff"]


def runtime_failure(name: str, runtime: str, exc: BaseException, export_again: str = _EXPORT_AGAIN) -> ArtifactError:
    """A runtime's own error (invoke, allocation, shapes) as one line naming the file."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ArtifactError(f"{name} does not run in {runtime} ({first[:200]}): {export_again}")


def check_outputs(name: str, runtime: str, out: dict[str, np.ndarray], max_tokens: int,
                  export_again: str = _EXPORT_AGAIN) -> None:
    """Refuse outputs that no intact artifact gives: non-finite logits, token counts
    outside [0, T] (what a file with damaged quantization or shapes can produce).

    Raises:
        ArtifactError: the first such output, as one line.
    """
    for key, value in out.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ArtifactError(f"{name} gives non-finite {key} in {runtime} (damaged quantization parameters or "
                                f"weights): the file is corrupted: {export_again}")
    counts = out.get(NUM_TOKENS_OUTPUT)
    if counts is not None and len(counts) and not ((counts >= 0) & (counts <= max_tokens)).all():
        raise ArtifactError(f"{name} gives token counts outside [0, {max_tokens}] in {runtime}: the file is "
                            f"corrupted: {export_again}")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (numerically stable), returned as float32."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)


def default_max_interpreters() -> int:
    """How many interpreters an :class:`Artifact` opens at most for concurrent calls:
    twice the CPU count (a thread's Python work overlaps another's invoke; measured with
    tools/benchmark_threads.py: on 2 cores, 4 interpreters ran tf.lite 0.97x as fast as one
    object per thread, 2 ran it 0.76x), at least 2."""
    return max(2, 2 * (os.cpu_count() or 1))


class Artifact:
    """An edge-pqrnn .tflite opened in one runtime: raw text in, intents and slots out.

    Use :meth:`load`; the object is also a context manager that frees the interpreters.

    **Thread safety.** One object may be shared by any number of threads: each call of
    :meth:`run`, :meth:`logits` or :meth:`predict` runs on an interpreter that no other
    thread uses meanwhile, taken from a pool that opens one more interpreter whenever all
    are busy (up to ``max_interpreters``; further calls wait for one to be free). The
    outputs are bit for bit those of a single thread (tests/test_concurrency.py).

    Attributes:
        data: the file's bytes.
        name: its path (or ``"<bytes>"``).
        metadata: the verified metadata dict.
        spec: the projection spec (from the metadata; equal to the op's options).
        labels: intents, tags and slot types (index = logit index).
        runtime: ``"litert"`` or ``"tflite"``.
    """

    def __init__(self, data: bytes, name: str, metadata: dict[str, Any], interp: Any, runtime: str,
                 open_another: Callable[[], Any] | None = None, max_interpreters: int | None = None) -> None:
        self.data = data
        self.name = name
        self.metadata = metadata
        self.spec = ProjectionSpec.from_dict(metadata["projection"])
        self.labels = Labels(tuple(metadata["intents"]), tuple(metadata["tags"]),
                             tuple(metadata.get("slot_types", ())))
        self.runtime = runtime
        self._interp = interp  # the first interpreter (also in the pool)
        limit = max_interpreters or default_max_interpreters()
        self._pool = InterpreterPool(interp, open_another or (lambda: interp), 1 if open_another is None else limit)
        # A fixed batch dimension (a batch-1 export) caps how many texts go in per call.
        text = interp.get_signature_runner(SIGNATURE).get_input_details()[INPUT_NAME]
        fixed = int(text["shape_signature"][0]) if len(text["shape_signature"]) else -1
        self._max_batch = fixed if fixed > 0 else None

    @classmethod
    def load(cls, source: bytes | str | os.PathLike, runtime: str = "litert", *, library: str | None = None,
             num_threads: int = 1, max_interpreters: int | None = None, name: str | None = None) -> "Artifact":
        """Check an artifact, open it in ``runtime`` and run it once on an empty text.

        Args:
            source: .tflite bytes or a path.
            runtime: ``"litert"`` (ai_edge_litert) or ``"tflite"`` (tf.lite).
            library: the op library (default: the one built by ``pip install``, or
                ``EDGE_PQRNN_OP_LIBRARY``).
            num_threads: CPU threads of the builtin kernels (per interpreter).
            max_interpreters: most interpreters opened for calls from concurrent
                threads (default: twice the CPU count); 1 makes calls take turns.
            name: the name for messages (default: the path, or ``"<bytes>"``).

        Returns:
            The opened :class:`Artifact`.

        Raises:
            ArtifactError: the file is missing, not TFLite, truncated, corrupt, foreign,
                or the runtime rejects it (:class:`OpLibraryMissingError` when the op
                library is missing or does not load).
            ConfigError: unknown or uninstalled runtime.

        Example:
            >>> model = Artifact.load("atis.int8.tflite", runtime="tflite")  # doctest: +SKIP
        """
        data, name, metadata = check(source, name)
        if max_interpreters is not None and (isinstance(max_interpreters, bool)
                                             or not isinstance(max_interpreters, int) or max_interpreters < 1):
            raise ConfigError(f"max_interpreters must be a whole number of at least 1, got {max_interpreters!r}")
        interp = open_interpreter(data, name, runtime, library, num_threads)

        def open_another() -> Any:
            return open_interpreter(data, name, runtime, library, num_threads)

        try:
            artifact = cls(data, name, metadata, interp, runtime, open_another, max_interpreters)
            artifact.run([""])  # fail now, with the file's name, not at the first real call
        except EdgePqrnnError:
            raise
        except Exception as exc:  # the runtime's own errors (allocation, unresolved op...)
            raise runtime_failure(name, runtime, exc) from exc
        return artifact

    def __enter__(self) -> "Artifact":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the interpreters (also done when the object is garbage collected); calls
        still running finish first on theirs."""
        self._interp = None
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()

    @property
    def size(self) -> int:
        """Size of the file in bytes."""
        return len(self.data)

    @property
    def runtime_version(self) -> str:
        """Version of the runtime package the artifact runs in."""
        return runtime_version(self.runtime)

    def run(self, texts: Sequence[str | bytes], batch_size: int = 64) -> dict[str, np.ndarray]:
        """The raw outputs for a batch of texts, computed ``batch_size`` texts at a time.

        Args:
            texts: str (encoded as UTF-8; lone surrogates are dropped by the op) or raw
                UTF-8 bytes (invalid bytes are dropped); any length, any content.
            batch_size: texts per interpreter call (bounds memory: the op's features
                are float32 [batch, T, F]).

        Returns:
            ``intent_logits`` float32 [N, num_intents], ``slot_logits`` float32
            [N, T, num_tags] (with a slot head) and ``num_tokens`` int32 [N].

        Raises:
            InputError: ``texts`` is not a list of str/bytes, or ``batch_size`` is not a
                whole number >= 1 (the one error type for bad arguments; it is also a
                ``DataError``, ``ConfigError`` and ``TypeError``).
            ArtifactError: the artifact was closed.

        Example:
            >>> model.run(["flights to boston"])["intent_logits"].shape  # doctest: +SKIP
            (1, 22)
        """
        batch = _as_batch(texts)
        batch_size = _batch_size(batch_size)
        step = min(batch_size, self._max_batch or batch_size)
        out = self._empty_outputs(len(batch))
        if not batch:
            return out
        with self._pool.take(self.name) as interp:
            try:
                chunks = [run_signature(interp, batch[i : i + step], SIGNATURE) for i in range(0, len(batch), step)]
                for key in out:
                    out[key][:] = np.concatenate([c[key] for c in chunks])
            except Exception as exc:  # the runtime's own errors, or outputs of another shape
                raise runtime_failure(self.name, self.runtime, exc) from exc
        check_outputs(self.name, self.runtime, out, self.spec.max_tokens)
        return out

    def _empty_outputs(self, n: int = 0) -> dict[str, np.ndarray]:
        out = {INTENT_OUTPUT: np.zeros((n, len(self.labels.intents)), np.float32),
               NUM_TOKENS_OUTPUT: np.zeros((n,), np.int32)}
        if self.labels.tags:
            out[SLOT_OUTPUT] = np.zeros((n, self.spec.max_tokens, len(self.labels.tags)), np.float32)
        return out

    def logits(self, texts: Sequence[str | bytes], batch_size: int = 64) -> Logits:
        """Intent and slot logits as :class:`edge_pqrnn.evaluate.Logits`, so the artifact
        plugs into ``evaluate(artifact.logits, examples, labels=..., spec=...)``."""
        out = self.run(texts, batch_size)
        return Logits(out[INTENT_OUTPUT], out.get(SLOT_OUTPUT))

    def predict(self, texts: Sequence[str | bytes], batch_size: int = 64) -> list[Prediction]:
        """Intent, score and slot spans for each text.

        Slot spans come from the arg-max BIO tag of each token row; the op returns no
        character offsets, so the rows are re-tokenised with the numpy reference under
        the artifact's own projection spec (bit-exact with the op; checked through the
        row count).

        Args:
            texts: str or raw UTF-8 bytes (see :meth:`run`).
            batch_size: texts per interpreter call.

        Returns:
            One :class:`Prediction` per text, in order.

        Raises:
            InputError: ``texts`` is not a list of str/bytes, or ``batch_size`` is not a
                whole number >= 1 (see :meth:`run`).
            ArtifactError: the artifact was closed, or the op's row count differs from the reference tokeniser's
                (an op library from another edge-pqrnn version).

        Example:
            >>> [p.intent for p in model.predict(["flights to boston", b"fare \\xff"])]  # doctest: +SKIP
            ['atis_flight', 'atis_airfare']
        """
        batch = _as_batch(texts)
        out = self.run(batch, batch_size)
        probabilities = softmax(out[INTENT_OUTPUT])
        best = probabilities.argmax(-1)
        slot_logits = out.get(SLOT_OUTPUT)
        predictions = []
        for i, text in enumerate(batch):
            decoded = decode(text)
            n = int(out[NUM_TOKENS_OUTPUT][i])
            shown = text if isinstance(text, str) else decoded
            spans: tuple[SlotSpan, ...] = ()
            if slot_logits is not None:
                index = _original_offsets(text) if isinstance(text, str) else None
                spans = self._spans(shown, decoded, index, slot_logits[i], n)
            predictions.append(Prediction(shown, self.labels.intents[best[i]], float(probabilities[i, best[i]]),
                                          out[INTENT_OUTPUT][i], spans, n))
        return predictions

    def _spans(self, shown: str, decoded: str, index: list[int] | None, slot_logits: np.ndarray,
               n: int) -> tuple[SlotSpan, ...]:
        """Spans of the arg-max tags, mapped from ``decoded`` to ``shown`` offsets by ``index``."""
        rows = token_rows(decoded, self.spec)
        if len(rows) != n:
            raise ArtifactError(
                f"the projection op made {n} token rows where the reference tokeniser makes {len(rows)}: the op "
                f"library is from another edge-pqrnn version; reinstall edge-pqrnn (`pip install -e .`)")
        tags = [self.labels.tags[k] for k in slot_logits[:n].argmax(-1)]
        spans = []
        for start, end, slot_type in spans_from_tags(tags, rows):
            if index is not None:
                start, end = index[start], index[end - 1] + 1
            spans.append(SlotSpan(start, end, slot_type, shown[start:end]))
        return tuple(spans)


__all__ = ["Artifact", "Checked", "FORMAT", "OpLibraryMissingError", "Prediction", "RUNTIMES", "SlotSpan", "check",
           "find_problems", "metadata_contents", "parse_flatbuffer", "read_metadata", "read_source"]

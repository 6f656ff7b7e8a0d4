"""What :func:`edge_pqrnn.validate.validate` returns: data, not a bool. Per-runtime rows
(agreement with the float reference, logit differences, bit-exactness across ISAs), one
✓/✗ :class:`Check` per check, the thresholds, and JSON/line renderings; the caller decides
what is fatal.
"""

from __future__ import annotations

import dataclasses
import platform
from typing import Any

#: A runtime name with this suffix runs on aarch64 under qemu (edge_pqrnn.runtimes.aarch64).
AARCH64 = "@aarch64"


def host_isa() -> str:
    """This machine's instruction set as the rows name it (``x86_64``, ``aarch64``)."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


#: A differing intent counts as a near-tie when the float margin between the two intents
#: is below this many RMS of the int8 - float intent-logit noise (a binary task with many
#: texts near its boundary otherwise fails agreement on flips int8 cannot avoid).
TIE_NOISE_MULTIPLE = 2.0
#: ... and only when the intent logits' SNR is at least this (int8 noise gives 30-40 dB;
#: another model's logits about 0 dB, and then every flip counts).
MIN_TIE_SNR_DB = 20.0


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Pass marks (defaults: DESIGN.md §5, what plain int8 PTQ reaches on ATIS).

    Attributes:
        intent_agreement: minimum fraction of texts whose arg-max intent equals the float
            one, near-ties within the int8 noise counted as agreeing (see ``RuntimeResult``).
        slot_agreement: minimum fraction of token rows (padding excluded, markers
            included) whose arg-max tag equals the float one.
        max_accuracy_drop: largest allowed ``float - int8`` intent accuracy.
    """

    intent_agreement: float = 0.995
    slot_agreement: float = 0.99
    max_accuracy_drop: float = 0.005


@dataclasses.dataclass
class RuntimeResult:
    """The artifact in one runtime, compared with the float reference.

    Attributes:
        name: the row: ``litert``, ``tflite``, ``tflite-runtime``, ``litert@aarch64``,
            ``tflite-runtime@aarch64``.
        loaded: whether the artifact opened and ran.
        version: the runtime package's version.
        intent_agreement, slot_agreement, max_abs_diff: against the float reference
            (None when not loaded or when the shapes differ from the reference's).
        intent_near_ties: texts whose arg-max intent differs from the float one while the
            float logits of the two intents are within the int8 noise of each other
            (closer than :data:`TIE_NOISE_MULTIPLE` x the RMS of int8 - float intent
            logits): the int8 model cannot resolve them.
        intent_agreement_gated: the fraction of texts that agree or are such near-ties;
            what the ``intent_agreement`` threshold is applied to.
        snr_db: signal-to-noise ratio of the logits, ``10 log10(sum ref^2 / sum
            (out - ref)^2)`` over intent logits and unpadded slot rows (int8 noise gives
            tens of dB; another model's logits about 0 dB).
        num_tokens_match: texts whose op token count equals the numpy reference's.
        finite: all outputs are finite numbers.
        identical_to_litert: outputs bit-identical to ai_edge_litert's on this machine
            (None for litert itself, for aarch64 rows, or when litert did not run).
        error: why it did not load or run (for an aarch64 row that cannot be prepared:
            the ``apt-get install`` line or the setup command).
        runtime: the runtime package of the row (``name`` without ``@aarch64``).
        isa: where it ran: ``x86_64`` (this machine) or ``aarch64``.
        emulator: ``qemu-aarch64-static QEMU_CPU=...`` for an emulated row, else None.
        bit_exact_vs_x86: an aarch64 row's outputs equal, bit for bit, the same runtime's
            on this machine (None for native rows, or when either side did not run).
        differing_texts: how many texts have any output bit differing from that x86 run.
        max_abs_diff_vs_x86: the largest difference in value from that x86 run.
        decisions_differing_vs_x86: texts whose arg-max intent or any arg-max slot tag
            (token rows under the mask) differs from that x86 run.
        seconds: wall time of the run (load and inference; for an emulated row, qemu
            and Python start-up included).
    """

    name: str
    loaded: bool
    version: str = ""
    intent_agreement: float | None = None
    slot_agreement: float | None = None
    intent_near_ties: int | None = None
    intent_agreement_gated: float | None = None
    max_abs_diff: float | None = None
    snr_db: float | None = None
    num_tokens_match: int | None = None
    finite: bool | None = None
    identical_to_litert: bool | None = None
    error: str | None = None
    runtime: str = ""
    isa: str = ""
    emulator: str | None = None
    bit_exact_vs_x86: bool | None = None
    differing_texts: int | None = None
    max_abs_diff_vs_x86: float | None = None
    decisions_differing_vs_x86: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        aarch64 = self.name.endswith(AARCH64)
        self.runtime = self.runtime or (self.name[: -len(AARCH64)] if aarch64 else self.name)
        self.isa = self.isa or ("aarch64" if aarch64 else host_isa())


@dataclasses.dataclass(frozen=True)
class Check:
    """One line of the report: ``passed`` is None for a number shown without a threshold."""

    name: str
    passed: bool | None
    line: str


@dataclasses.dataclass
class ValidationReport:
    """Everything :func:`validate` measured.

    Attributes:
        artifact: the artifact's path (or ``"<bytes>"``).
        reference: the reference run directory.
        num_texts: texts compared (labelled examples + given texts + hostile texts).
        num_examples: labelled examples among them (accuracy is measured on these).
        intent_agreement, slot_agreement, max_abs_diff, snr_db: of the primary runtime
            (the first of ``runtimes`` that loaded, litert by default).
        primary: the primary runtime's name (None when none loaded).
        bytes: the artifact's size.
        runtimes: one :class:`RuntimeResult` per runtime asked for.
        accuracy: ``{"float": {...}, "int8": {...}}`` with ``intent_accuracy`` and
            ``slot_f1`` (None without labelled examples).
        thresholds: the pass marks used.
        checks: the checks, in report order.
    """

    artifact: str
    reference: str
    num_texts: int
    num_examples: int
    intent_agreement: float | None
    slot_agreement: float | None
    max_abs_diff: float | None
    snr_db: float | None
    primary: str | None
    bytes: int
    runtimes: dict[str, RuntimeResult]
    accuracy: dict[str, dict[str, float | None]] | None
    thresholds: Thresholds
    checks: list[Check]

    @property
    def passed(self) -> bool:
        """True when no check failed."""
        return all(c.passed is not False for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        """The failed checks."""
        return [c for c in self.checks if c.passed is False]

    def lines(self) -> list[str]:
        """One line per check: ``✓`` passed, ``✗`` failed, ``·`` a number without threshold."""
        marks = {True: "✓", False: "✗", None: "·"}
        return [f"{marks[c.passed]} {c.line}" for c in self.checks]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, plus ``passed``."""
        data = dataclasses.asdict(self)
        data["passed"] = self.passed
        return data

    def markdown_table(self) -> str:
        """The runtime rows as the Markdown table of docs/matrix.md."""
        def num(value: float | None) -> str:
            return "" if value is None else f"{value:.4f}"

        lines = ["| runtime | version | isa | loaded | intent agreement | slot agreement | bit-exact vs x86 "
                 "| texts differing vs x86 | max abs diff vs x86 | decisions differing vs x86 | seconds | error |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.runtimes.values():
            exact = "" if r.bit_exact_vs_x86 is None else ("yes" if r.bit_exact_vs_x86 else "no")
            differing = "" if r.differing_texts is None else f"{r.differing_texts} / {self.num_texts}"
            diff = "" if r.max_abs_diff_vs_x86 is None else f"{r.max_abs_diff_vs_x86:.3g}"
            decisions = "" if r.decisions_differing_vs_x86 is None else str(r.decisions_differing_vs_x86)
            seconds = "" if r.seconds is None else f"{r.seconds:.1f}"
            error = (r.error or "").replace("|", "/").replace("\n", " ")
            lines.append(f"| {r.runtime} | {r.version} | {r.isa} | {'yes' if r.loaded else 'no'} | "
                         f"{num(r.intent_agreement)} | {num(r.slot_agreement)} | {exact} | {differing} | {diff} | "
                         f"{decisions} | {seconds} | {error} |")
        return "\n".join(lines)


__all__ = ["AARCH64", "Check", "RuntimeResult", "Thresholds", "ValidationReport", "host_isa"]

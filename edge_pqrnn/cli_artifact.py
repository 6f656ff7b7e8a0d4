"""``edge-pqrnn validate``, ``predict`` and ``inspect``: thin commands over
:mod:`edge_pqrnn.validate`, :mod:`edge_pqrnn.artifact` and :mod:`edge_pqrnn.inspect_artifact`.

Each is a standalone ``click.Command`` registered in ``edge_pqrnn/cli.py`` with
``main.add_command(...)``; each turns an :class:`EdgePqrnnError` into one line
``error: ...`` on stderr and exit code 2 (no traceback), also when run on its own.

The exit-code contract of every command (docs/troubleshooting.md): 0 ok; 1 a check
failed (``validate``, ``gate``, ``matrix``); 2 bad input or an unusable file, one
``error:`` line, no traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from edge_pqrnn.errors import EdgePqrnnError

#: The rows of edge_pqrnn.validate.ALL_RUNTIMES (kept literal: importing validate here
#: would load edge_pqrnn.arm for every command; tests/test_validate.py checks they agree).
RUNTIME_CHOICES = ("litert", "tflite", "tflite-runtime", "litert@aarch64", "tflite-runtime@aarch64", "all")
EXIT_CHECK_FAILED, EXIT_ERROR = 1, 2


def _one_line_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Report edge-pqrnn errors as ``error: <message>`` and exit 2 (for every command,
    also when it runs outside the ``edge-pqrnn`` group)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EdgePqrnnError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_ERROR)
        except OSError as exc:  # a path the system refuses (an output folder that cannot exist...)
            click.echo(f"error: {os_error_line(exc)}", err=True)
            sys.exit(EXIT_ERROR)

    return wrapper


def os_error_line(exc: OSError) -> str:
    """An OSError as one line: the path and the system's reason, and what to check."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc} (check the path and its permissions)"


def _runtimes(choices: tuple[str, ...]) -> tuple[str, ...]:
    """``--runtime`` values -> the rows to run, in report order (litert first: the primary)."""
    chosen = set(choices) or {"litert", "tflite"}
    rows = [r for r in RUNTIME_CHOICES if r != "all"]
    return tuple(rows) if "all" in chosen else tuple(r for r in rows if r in chosen)


@click.command("validate")
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--reference", required=True, type=click.Path(),
              help="The run directory the artifact was exported from (its float model is the reference).")
@click.option("--runtime", "runtime", multiple=True, type=click.Choice(RUNTIME_CHOICES),
              help="Runtime to run the artifact in (repeatable; default: litert and tflite; "
                   "tflite-runtime = 2.14 in its own venv; NAME@aarch64 = on aarch64 under qemu, prepared by "
                   "`edge-pqrnn matrix setup`; all = the five).")
@click.option("--data", default=None,
              help="Dataset whose test split to compare on (default: the run's own), e.g. atis, csv:PATH.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_one_line_errors
def validate_command(artifact: str, reference: str, runtime: tuple[str, ...], data: str | None,
                     as_json: bool) -> None:
    """Compare ARTIFACT with its float reference run: agreement, accuracy, runtimes.

    One ✓/✗ line per check (· for numbers without a threshold, such as an aarch64 row's
    bit-exactness with x86); exits 1 when a check fails. Agreement with the float
    reference is gated on every runtime row; a row that cannot run is a failed check.
    """
    from edge_pqrnn.validate import validate

    runtimes = _runtimes(runtime)
    examples = None
    if data is not None:
        from edge_pqrnn.data import load_dataset

        dataset = load_dataset(data)
        examples = dataset.test or dataset.dev
    report = validate(artifact, reference, examples=examples, runtimes=runtimes,
                      log=lambda line: click.echo(line, err=True))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        for line in report.lines():
            click.echo(line)
        click.echo("passed" if report.passed else f"FAILED: {len(report.failures)} check(s)")
    if not report.passed:
        sys.exit(EXIT_CHECK_FAILED)


def _stdin_texts() -> list[bytes]:
    """Lines of stdin as raw bytes (invalid UTF-8 reaches the model as it is)."""
    stream = click.get_binary_stream("stdin")
    return [line.rstrip(b"\r\n") for line in stream]


@click.command("predict")
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.argument("texts", nargs=-1)
@click.option("--runtime", type=click.Choice(("litert", "tflite", "onnxruntime")), default=None,
              help="Runtime to run ARTIFACT in: litert (default) or tflite for a .tflite; onnxruntime (the only "
                   "one, and the default) for an .onnx. A runtime that cannot run the file is refused.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per text.")
@_one_line_errors
def predict_command(artifact: str, texts: tuple[str, ...], runtime: str | None, as_json: bool) -> None:
    """Intent, score and slot spans for each TEXT (no TEXT: one text per stdin line).

    An .onnx runs in onnxruntime alone (TensorFlow is not imported). Exit codes: 0 ok, 2
    bad input or an unusable file (one `error:` line).
    """
    from edge_pqrnn.onnx_artifact import open_artifact

    # Arguments back to their exact bytes (undecodable bytes came in as surrogate escapes).
    batch = [os.fsencode(t) for t in texts] if texts else _stdin_texts()
    with open_artifact(artifact, runtime) as model:
        predictions = model.predict(batch)
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in predictions], ensure_ascii=False))
        return
    for p in predictions:
        click.echo(f"{p.intent}\t{p.score:.3f}\t{json.dumps(p.text, ensure_ascii=False)}")
        for span in p.slots:
            click.echo(f"  {span.slot_type} [{span.start}, {span.end}) {json.dumps(span.text, ensure_ascii=False)}")


@click.command("inspect")
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@_one_line_errors
def inspect_command(artifact: str, as_json: bool) -> None:
    """Signature, ops, tensor types, metadata and bytes per block of ARTIFACT (any .tflite
    or .onnx).

    The file gets the same usability check as `predict` (checked, opened in litert or
    onnxruntime, run once). Exits 2 when it is not a usable edge-pqrnn artifact: the
    description is still printed, its problems listed, and the first one is the
    `error:` line.
    """
    from edge_pqrnn.inspect_artifact import inspect, render

    info = inspect(artifact)
    click.echo(json.dumps(info, indent=2, ensure_ascii=False) if as_json else render(info))
    if info["problems"]:
        click.echo(f"error: {info['problems'][0]}", err=True)
        sys.exit(EXIT_ERROR)


#: The commands, for ``for command in COMMANDS: main.add_command(command)``.
COMMANDS = (validate_command, predict_command, inspect_command)

__all__ = ["COMMANDS", "inspect_command", "predict_command", "validate_command"]

"""The CI-facing commands: ``gate`` (size / latency / accuracy gates) and ``report``."""

from __future__ import annotations

import json
import sys

import click

from edge_pqrnn.cli_artifact import EXIT_CHECK_FAILED, _one_line_errors


@click.command("gate")
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--gates", "gates_path", default="gates.toml", show_default=True, type=click.Path(dir_okay=False),
              help="TOML file with [size], [latency] and [accuracy] sections.")
@click.option("--reference", default=None, type=click.Path(file_okay=False),
              help="The run directory the artifact was exported from (accuracy gates, float latency reference).")
@click.option("--only", multiple=True, type=click.Choice(["size", "latency", "accuracy"]),
              help="Check only these sections (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_one_line_errors
def gate_command(artifact: str, gates_path: str, reference: str | None, only: tuple[str, ...], as_json: bool) -> None:
    """Check ARTIFACT against the gates: one ✓/✗ line per gate (measured vs limit).

    ARTIFACT first gets the same usability check as `predict` (checked, opened, run once).
    Exits 1 when any gate fails; 2 on an unusable artifact, a bad gates file or a missing
    --reference (one `error:` line).
    """
    from edge_pqrnn.gates import gate, load_gates

    gates = load_gates(gates_path)
    report = gate(artifact, gates, reference=reference, only=only or None,
                  log=(lambda _: None) if as_json else (lambda line: click.echo(line, err=True)))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)
    if not report.passed:
        sys.exit(EXIT_CHECK_FAILED)


@click.command("report")
@click.argument("source", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory for report.md and PNGs.")
@click.option("--reference", default=None, type=click.Path(file_okay=False),
              help="With an ARTIFACT source: its run directory (for scores and agreement with float).")
@click.option("--repeats", default=300, show_default=True, help="Timed calls for the latency histogram.")
@_one_line_errors
def report_command(source: str, out_dir: str, reference: str | None, repeats: int) -> None:
    """Markdown report with plots for a RUN_DIR or an ARTIFACT (.tflite): confusion matrix,
    per-intent (and per-language) scores, latency histogram, bytes per block, agreement with float.

    A run directory is exported to int8 in memory first (not validated, not written).
    """
    from edge_pqrnn.report import build_report

    path = build_report(source, out_dir, reference=reference, repeats=repeats,
                        log=lambda line: click.echo(line, err=True))
    click.echo(f"report: {path}")

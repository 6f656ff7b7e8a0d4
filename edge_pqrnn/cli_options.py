"""Options shared by several ``edge-pqrnn`` commands (projection, languages, augmentation,
teacher labelling and distillation)."""

from __future__ import annotations

import click

from edge_pqrnn.errors import ConfigError
from edge_pqrnn.projection import ProjectionSpec
from edge_pqrnn.projection.spec import MODES


def projection_options(func):
    """The projection parameters as options (shared by commands that project text)."""
    options = [
        click.option("--feature-size", default=ProjectionSpec.feature_size, show_default=True, help="Features per token."),
        click.option("--max-tokens", default=ProjectionSpec.max_tokens, show_default=True,
                     help="Token rows T (markers included); longer texts are truncated."),
        click.option("--mode", type=click.Choice(MODES), default=ProjectionSpec.mode, show_default=True,
                     help="word: Unicode-aware words; char: one token per character."),
        click.option("--bos/--no-bos", default=ProjectionSpec.add_bos, show_default=True, help="Prepend <BOS>."),
        click.option("--eos/--no-eos", default=ProjectionSpec.add_eos, show_default=True, help="Append <EOS>."),
        click.option("--lowercase/--no-lowercase", default=ProjectionSpec.lowercase, show_default=True,
                     help="Lower-case before hashing."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _language_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    return value.split(",") if value else None


#: --languages of every command that loads a dataset, as a list (None: all languages).
languages_option = click.option("--languages", default=None, callback=_language_list,
                                help="Comma-separated languages (multilingual data).")


def augment_config(copies: int | None, seed: int, ops: str | None, default_copies: int):
    """The AugmentConfig of the --augment-* options (``copies`` None: ``default_copies``)."""
    from edge_pqrnn.distill.augment import AugmentConfig

    options: dict = {"copies": default_copies if copies is None else copies, "seed": seed}
    if ops:
        weights = {}
        for item in ops.split(","):
            name, _, weight = item.strip().partition("=")
            try:
                weights[name.strip()] = float(weight) if weight else 1.0
            except ValueError:
                raise click.BadParameter(f"weight of {name!r} must be a number, got {weight!r}",
                                         param_hint="--augment-ops") from None
        options["weights"] = weights
    try:
        return AugmentConfig(**options)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--augment-ops/--augment-copies") from None


def label_options(func):
    """Teacher-labelling options of `train` (active with --teacher) and `teacher label`."""
    options = [
        click.option("--teacher", default=None, type=click.Path(exists=True, file_okay=False),
                     help="Distil from this fine-tuned teacher directory (edge-pqrnn teacher finetune)."),
        click.option("--augment-copies", default=None, type=click.IntRange(min=0),
                     help="Augmented variants per training text. With --teacher (default 2) the teacher labels "
                          "them; without (default 0) they keep their gold labels."),
        click.option("--augment-ops", default=None, metavar="OP[=WEIGHT],...",
                     help="Augmentation operations and their relative weights, e.g. 'reorder=2,drop,swap' "
                          "(mask, drop, swap, substitute, char_noise, reorder; default: all but reorder, "
                          "substitute at 2)."),
        click.option("--augment-seed", default=0, show_default=True),
        click.option("--other-locales", default=None,
                     help="Comma-separated multilingual locales added as unlabelled texts."),
        click.option("--label-cache", default=None, type=click.Path(file_okay=False),
                     help="Parquet cache of teacher logits (default: TEACHER_DIR/labels)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def distill_options(func):
    """`train --teacher` options: the labelling options plus the KD loss weights."""
    func = click.option("--kd-temperature", default=2.0, show_default=True,
                        help="Softmax temperature of the KL term (with --teacher).")(func)
    func = click.option("--kd-slot-weight", default=None, type=click.FloatRange(0.0, 1.0),
                        help="KL weight of the slot head alone (default: --kd-weight); lower it when the "
                             "teacher's slot F1 is below the student's.")(func)
    func = click.option("--kd-weight", default=0.5, show_default=True,
                        help="Weight of the KL-to-teacher term; 1 - it weighs the gold cross-entropy (with --teacher).")(func)
    return label_options(func)

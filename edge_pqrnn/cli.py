"""The ``edge-pqrnn`` command line: thin commands over the library functions."""

from __future__ import annotations

import json
import sys

import click

from edge_pqrnn.errors import EdgePqrnnError
from edge_pqrnn.projection import ProjectionSpec, project
from edge_pqrnn.projection.spec import MODES


class _Group(click.Group):
    """Turns edge-pqrnn errors into one clear line and a non-zero exit, no traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgePqrnnError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edge-pqrnn")
def main() -> None:
    """edge-pqrnn: train, quantize and export tiny pQRNN text models for edge CPUs.

    One .tflite takes raw UTF-8 text and returns intent (and slot) logits; the text
    projection runs inside it as a custom op from edge-pqrnn's op library.
    """


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


DEMO_TEXTS = (
    "show me flights from boston to denver tomorrow morning",
    "book a flight to Zürich 明天 🙂",
    "¿cuál es el vuelo más barato a Madrid?",
    "",
)


@main.command("quickstart")
@click.option("--runtime", type=click.Choice(["litert", "tflite"]), default="litert", show_default=True)
def quickstart_command(runtime: str) -> None:
    """Run the main job on the embedded default data.

    Builds a .tflite holding the projection op, runs it on sample texts in the chosen
    runtime and checks it bit for bit against the numpy reference.
    """
    import numpy as np

    from edge_pqrnn.projection.ops import projection_model
    from edge_pqrnn.runtimes import interpreter, run_signature

    spec = ProjectionSpec()
    outputs = run_signature(interpreter(projection_model(spec), runtime), list(DEMO_TEXTS))
    reference = project(list(DEMO_TEXTS), spec)
    exact = np.array_equal(outputs["features"], reference.features) and np.array_equal(
        outputs["num_tokens"], reference.num_tokens)
    for text, n in zip(DEMO_TEXTS, outputs["num_tokens"]):
        click.echo(f"{int(n):>3} tokens  {text!r}")
    click.echo(f"projection op in {runtime}: {'bit-exact' if exact else 'MISMATCH'} with the reference "
               f"({len(DEMO_TEXTS)} texts, T={spec.max_tokens}, F={spec.feature_size})")
    if not exact:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()

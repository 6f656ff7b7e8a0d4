"""Make the JVM tests' inputs: a small trained int8 artifact and the Python reference.

Writes into OUT (default android_demo/build/reference):
    model.tflite    the tiny template-task artifact of tests/artifact_fixtures.py
                    (trained once, ~15 s on 2 cores; kept on later runs)
    expected.json   labels, projection spec and, per test text, what
                    edge_pqrnn.artifact.Artifact.predict() says (intent, score, logits,
                    slot spans) and the reference tokeniser's rows (code-point offsets)

Usage: python android_demo/tools/make_reference.py [--out DIR] [--model PATH]
(--model: use another exported artifact instead of training the tiny one.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

#: Texts the JVM tests run: the task's own phrasing, case, punctuation, non-ASCII
#: scripts, emoji (UTF-16 pairs), combining marks, a lone surrogate, nothing at all,
#: and more tokens than the model's rows (truncation).
TEXTS = [
    "show me flights from boston to new york",
    "i want to fly from denver to san francisco on monday",
    "what is the cheapest fare to dallas",
    "is there a taxi in pittsburgh on friday",
    "Flights To ATLANTA please!!",
    "fares from oakland, please?",
    "rental cars at Zürich 明天 🙂",
    "price of a tuesday ticket to 🙂🙂 new york",
    "cafe\u0301 in boston",
    "ground transportation in bo\ud800ston",
    "",
    "   ",
    " ".join(["flights from boston to denver"] * 6),
    "list flights leaving san francisco on sunday",
]


def train_tiny(out: Path) -> Path:
    """Train and export the tests' tiny artifact (tests/artifact_fixtures.py) into out/."""
    sys.path.insert(0, str(REPO / "tests"))
    import artifact_fixtures as fixtures  # the same task and model the Python tests use

    from edge_pqrnn.train import TrainConfig, train

    work = out / "train"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = fixtures.dataset(work)
    config = TrainConfig(epochs=12, batch_size=16, learning_rate=1e-2, patience=12, seed=0)
    train(data, fixtures.MODEL, config, work / "run", progress=False)
    model = out / "model.tflite"
    partial = out / "model.tflite.partial"
    partial.write_bytes(fixtures.export_bytes(work / "run", data))
    partial.replace(model)
    return model


def reference(model: Path) -> dict[str, Any]:
    """The labels, spec and per-text predictions and token rows of the Python package."""
    from edge_pqrnn.artifact import Artifact
    from edge_pqrnn.converters.tflite_fuse import read_metadata
    from edge_pqrnn.projection.reference import token_rows

    metadata = read_metadata(model.read_bytes())
    artifact = Artifact.load(model)
    cases = []
    for p in artifact.predict(TEXTS):
        decoded = p.text.encode("utf-8", "surrogatepass").decode("utf-8", "ignore")
        rows = token_rows(decoded, artifact.spec)
        cases.append({
            "text": p.text, "intent": p.intent, "score": p.score,
            "intent_logits": [float(v) for v in p.intent_logits],
            "slots": [[s.start, s.end, s.slot_type, s.text] for s in p.slots],
            "num_tokens": p.num_tokens,
            "tokens": [[t.start, t.end, int(t.special)] for t in rows],
        })
    return {"intents": metadata["intents"], "tags": metadata.get("tags") or [],
            "projection": metadata["projection"], "toolkit_version": metadata.get("toolkit_version"),
            "cases": cases}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "android_demo" / "build" / "reference")
    parser.add_argument("--model", type=Path, help="an exported artifact to use instead of the tiny one")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.out / "model.tflite"
    if args.model:
        shutil.copyfile(args.model, model)
    elif not model.is_file():
        print("make_reference: training the tiny test artifact (tests/artifact_fixtures.py)...", flush=True)
        train_tiny(args.out)
    expected = reference(model)
    (args.out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"make_reference: {model} ({model.stat().st_size} bytes), {len(expected['cases'])} reference texts, "
          f"{len(expected['intents'])} intents, {len(expected['tags'])} tags")
    return 0


if __name__ == "__main__":
    sys.exit(main())

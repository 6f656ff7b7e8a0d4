"""Runs texts through a .tflite in a separate Python: needs only numpy and a runtime.

Standalone on purpose (no edge_pqrnn import): it runs in small venvs (tflite-runtime
with numpy < 2) and in emulated aarch64 Pythons, and isolates a runtime abort from the
caller. Usage: python _worker.py --runtime-module M --model F --library L
--texts JSON(base64 list) --out OUT.npz [--no-xnnpack]
"""

import argparse
import base64
import importlib
import json
import sys

import numpy as np


def run_buckets(interp, texts, signature):
    """The signature's outputs; with length buckets (``tokens_T`` signatures) each text
    runs in the smallest bucket whose num_tokens stays below T, the others in the full
    graph, as edge_pqrnn's Artifact.run does."""
    batch = np.array(texts, dtype=object)
    keys = interp.get_signature_list()
    buckets = sorted(int(k.split("_", 1)[1]) for k in keys if k.startswith("tokens_")) if signature == "serving_default" else []
    parts = []  # (rows, outputs, T)
    pending = np.arange(len(texts))
    for t in buckets + [None]:
        if not len(pending):
            break
        key = signature if t is None else "tokens_%d" % t
        part = {k: np.array(v) for k, v in interp.get_signature_runner(key)(text=batch[pending]).items()}
        done = np.ones(len(pending), bool) if t is None else part["num_tokens"] < t
        parts.append((pending[done], {k: v[done] for k, v in part.items()}))
        pending = pending[~done]
    if len(parts) == 1 and len(parts[0][0]) == len(texts) and not buckets:
        return parts[0][1]
    details = interp.get_signature_runner(signature).get_output_details()
    out = {k: np.zeros((len(texts),) + tuple(d["shape"][1:]), d["dtype"]) for k, d in details.items()}
    for rows, values in parts:
        for k, v in values.items():
            out[k][(rows,) + tuple(slice(0, n) for n in v.shape[1:])] = v
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    for flag in ("--runtime-module", "--model", "--library", "--texts", "--out"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-xnnpack", action="store_true", help="builtin kernels only")
    args = parser.parse_args()
    mod = importlib.import_module(args.runtime_module)
    if args.runtime_module == "tensorflow.lite":
        load_delegate = mod.experimental.load_delegate
    else:
        load_delegate = mod.load_delegate
    kwargs = {}
    if args.no_xnnpack:
        resolvers = mod.experimental.OpResolverType if args.runtime_module == "tensorflow.lite" else mod.OpResolverType
        kwargs["experimental_op_resolver_type"] = resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = mod.Interpreter(model_path=args.model, experimental_delegates=[load_delegate(args.library)],
                             num_threads=args.threads, **kwargs)
    with open(args.texts) as f:
        texts = [base64.b64decode(t) for t in json.load(f)]
    outputs = run_buckets(interp, texts, args.signature)
    version = getattr(mod, "__version__", "") or getattr(sys.modules.get(args.runtime_module.split(".")[0]), "__version__", "")
    np.savez(args.out, **{k: np.asarray(v) for k, v in outputs.items()}, __version__=np.array(str(version)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

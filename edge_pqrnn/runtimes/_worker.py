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


def run_signature(interp, texts, signature):
    """The signature's outputs for the batch (the default artifact sizes its token rows to
    the longest text itself)."""
    batch = np.array(texts, dtype=object)
    return {k: np.array(v) for k, v in interp.get_signature_runner(signature)(text=batch).items()}


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
    outputs = run_signature(interp, texts, args.signature)
    version = getattr(mod, "__version__", "") or getattr(sys.modules.get(args.runtime_module.split(".")[0]), "__version__", "")
    np.savez(args.out, **{k: np.asarray(v) for k, v in outputs.items()}, __version__=np.array(str(version)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

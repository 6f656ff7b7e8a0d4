"""Runs texts through a .tflite in a separate Python: needs only numpy and a runtime.

Standalone on purpose (no edge_pqrnn import): it runs in small venvs (tflite-runtime
with numpy < 2) and in emulated aarch64 Pythons, and isolates a runtime abort from the
caller. Usage: python _runtime_worker.py --runtime-module M --model F --library L
--texts JSON(base64 list) --out OUT.npz
"""

import argparse
import base64
import importlib
import json
import sys

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser()
    for flag in ("--runtime-module", "--model", "--library", "--texts", "--out"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    mod = importlib.import_module(args.runtime_module)
    if args.runtime_module == "tensorflow.lite":
        load_delegate = mod.experimental.load_delegate
    else:
        load_delegate = mod.load_delegate
    interp = mod.Interpreter(model_path=args.model, experimental_delegates=[load_delegate(args.library)],
                             num_threads=args.threads)
    with open(args.texts) as f:
        texts = [base64.b64decode(t) for t in json.load(f)]
    runner = interp.get_signature_runner(args.signature)
    outputs = runner(text=np.array(texts, dtype=object))
    version = getattr(mod, "__version__", "") or getattr(sys.modules.get(args.runtime_module.split(".")[0]), "__version__", "")
    np.savez(args.out, **{k: np.asarray(v) for k, v in outputs.items()}, __version__=np.array(str(version)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

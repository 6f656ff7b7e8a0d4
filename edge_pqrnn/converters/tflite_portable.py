"""Pass 0c (``export --portable-kernels``): every int8 FULLY_CONNECTED and CONV_2D becomes
an ``EdgePqrnnIntMatMul`` node (one integer rounding rule in our C), every int8 -> float32
DEQUANTIZE an ``EdgePqrnnDequantize`` and every float32 -> int8 QUANTIZE an
``EdgePqrnnQuantize``: bit-exact on every runtime and ISA, slower than XNNPACK. See
:mod:`edge_pqrnn.converters.tflite_fuse` for the pass order."""

from __future__ import annotations


from edge_pqrnn.converters.tflite_graph import builtin_of, per_tensor_int8
from edge_pqrnn.errors import ArtifactError
from edge_pqrnn.format import DEQUANTIZE_OP, INT_MATMUL_OP, QUANTIZE_OP, schema
from edge_pqrnn.projection import int_matmul


def _int_matmul_geometry(model, graph, op):
    """The :class:`~edge_pqrnn.projection.int_matmul.Geometry` of an int8 FULLY_CONNECTED
    or CONV_2D the op can run exactly as the builtin would, else None."""
    s = schema()
    B = s.BuiltinOperator
    code, options = builtin_of(model, op), op.builtinOptions
    inputs = [int(i) for i in op.inputs]
    if code not in (B.FULLY_CONNECTED, B.CONV_2D) or options is None or len(inputs) not in (2, 3):
        return None
    activation = int(getattr(options, "fusedActivationFunction", 0))
    if activation not in int_matmul.ACTIVATIONS:
        return None
    x, w, out = inputs[0], inputs[1], int(op.outputs[0])
    if not (per_tensor_int8(graph, x) and per_tensor_int8(graph, out)):
        return None
    wt = graph.tensors[w]
    wq = wt.quantization
    data = model.buffers[wt.buffer].data if wt.buffer else None
    if (wt.type != s.TensorType.INT8 or data is None or len(data) == 0 or wq is None or wq.scale is None
            or wq.zeroPoint is None or any(int(z) != 0 for z in wq.zeroPoint)
            or (len(wq.scale) > 1 and int(wq.quantizedDimension) != 0)):
        return None
    if len(inputs) == 3 and inputs[2] >= 0:
        bt = graph.tensors[inputs[2]]
        bdata = model.buffers[bt.buffer].data if bt.buffer else None
        if bt.type != s.TensorType.INT32 or bdata is None or len(bdata) == 0:
            return None
    if code == B.FULLY_CONNECTED:
        if len(wt.shape) != 2 or options.keepNumDims or options.weightsFormat != 0:
            return None
        return int_matmul.Geometry.fully_connected(activation)
    if (len(wt.shape) != 4 or options.padding != s.Padding.VALID or (options.strideH, options.strideW) != (1, 1)
            or (options.dilationHFactor, options.dilationWFactor) != (1, 1)):
        return None
    return int_matmul.Geometry.conv_2d(activation)


def use_portable_kernels(model) -> int:
    """Pass 0c (see the module doc), on every subgraph. Returns how many nodes became
    ``EdgePqrnnIntMatMul``, ``EdgePqrnnDequantize`` or ``EdgePqrnnQuantize``.

    Raises:
        ArtifactError: an int8 FULLY_CONNECTED or CONV_2D the op cannot stand in for (the
            artifact would not be portable).
    """
    s = schema()
    B = s.BuiltinOperator
    replaced = 0
    codes: dict[str, int] = {}

    def custom_code(name: str) -> int:
        if name not in codes:
            code = s.OperatorCodeT()
            code.builtinCode = code.deprecatedBuiltinCode = B.CUSTOM
            code.customCode, code.version = name, 1
            model.operatorCodes.append(code)
            codes[name] = len(model.operatorCodes) - 1
        return codes[name]

    for graph in model.subgraphs:
        for i, op in enumerate(graph.operators):
            dequantize = (builtin_of(model, op) == B.DEQUANTIZE and per_tensor_int8(graph, int(op.inputs[0]))
                          and graph.tensors[int(op.outputs[0])].type == s.TensorType.FLOAT32)
            quantize = (builtin_of(model, op) == B.QUANTIZE and per_tensor_int8(graph, int(op.outputs[0]))
                        and graph.tensors[int(op.inputs[0])].type == s.TensorType.FLOAT32)
            if dequantize or quantize:
                node = s.OperatorT()
                node.opcodeIndex = custom_code(DEQUANTIZE_OP if dequantize else QUANTIZE_OP)
                node.inputs, node.outputs = [int(op.inputs[0])], [int(op.outputs[0])]
                node.customOptions = list(int_matmul.dequantize_options_bytes())
                node.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
                graph.operators[i] = node
                replaced += 1
                continue
            if builtin_of(model, op) not in (B.FULLY_CONNECTED, B.CONV_2D):
                continue
            geometry = _int_matmul_geometry(model, graph, op)
            if geometry is None:
                raise ArtifactError(f"operator {i} ({'CONV_2D' if builtin_of(model, op) == B.CONV_2D else 'FULLY_CONNECTED'}) "
                                    "is not an int8 matmul EdgePqrnnIntMatMul can run (per-tensor int8 input and "
                                    "output, constant symmetric int8 weights, VALID stride-1 convolution): "
                                    "export without --portable-kernels, or with --scheme int8")
            node = s.OperatorT()
            inputs = [int(t) for t in op.inputs]
            node.opcodeIndex = custom_code(INT_MATMUL_OP)
            node.inputs = inputs if len(inputs) == 3 and inputs[2] >= 0 else inputs[:2]
            node.outputs = [int(t) for t in op.outputs]
            node.customOptions = list(int_matmul.options_bytes(geometry))
            node.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
            graph.operators[i] = node
            replaced += 1
    return replaced

"""Pass 0b: each direction's unrolled int8 recurrence (UNPACK of z and k -> per step
SUB/MUL/ADD -> PACK -> MUL by o) becomes one ``EdgePqrnnFoPool`` node: integer
arithmetic in our C, identical on x86 and ARM (the runtimes' int8 MUL rounds ties
differently per ISA). See :mod:`edge_pqrnn.converters.tflite_fuse` for the pass order."""

from __future__ import annotations

from typing import Any

from edge_pqrnn.converters.tflite_graph import builtin_of, drop_unused_tensors, no_activation, per_tensor_int8
from edge_pqrnn.format import FO_POOL_OP, schema
from edge_pqrnn.projection import fo_pool


def _match_recurrence(model, graph, pack: int, producer: dict[int, int],
                      consumers: dict[int, list[int]]) -> tuple[list[int], int, int, int, int, bool] | None:
    """The recurrence feeding the PACK at ``pack``, as (ops to remove, z, k, o, h, reverse),
    or None when the ops around it are not exactly the unrolled fo-pooling."""
    s = schema()
    B = s.BuiltinOperator
    ops = graph.operators
    cells = [int(i) for i in ops[pack].inputs]
    packed = int(ops[pack].outputs[0])
    steps = len(cells)
    if steps < 2 or getattr(ops[pack].builtinOptions, "axis", None) != 1 or packed in graph.outputs:
        return None
    users = consumers.get(packed, [])
    if len(users) != 1 or builtin_of(model, ops[users[0]]) != B.MUL or not no_activation(ops[users[0]]):
        return None
    final = users[0]
    o = [int(i) for i in ops[final].inputs if int(i) != packed]
    if len(o) != 1:
        return None
    o, h = o[0], int(ops[final].outputs[0])

    def op_of(tensor: int, code: int) -> int | None:
        i = producer.get(tensor)
        return i if i is not None and builtin_of(model, ops[i]) == code and no_activation(ops[i]) else None

    for reverse in (False, True):
        order = list(range(steps - 1, -1, -1)) if reverse else list(range(steps))
        first = op_of(cells[order[0]], B.MUL)
        second = op_of(cells[order[1]], B.ADD)
        if first is None or second is None:
            continue
        # step 2: ADD(c, MUL(k_t, SUB(z_t, c))) names which UNPACK is z and which k
        e = [int(i) for i in ops[second].inputs if int(i) != cells[order[0]]]
        mul = op_of(e[0], B.MUL) if len(e) == 1 else None
        if mul is None:
            continue
        d = [int(i) for i in ops[mul].inputs if op_of(int(i), B.SUB) is not None]
        if len(d) != 1:
            continue
        sub = producer[d[0]]
        z_t = int(ops[sub].inputs[0])
        k_t = [int(i) for i in ops[mul].inputs if int(i) != d[0]][0]
        unpack_z, unpack_k = producer.get(z_t), producer.get(k_t)
        if unpack_z is None or unpack_k is None or unpack_z == unpack_k or any(
                builtin_of(model, ops[u]) != B.UNPACK or len(ops[u].outputs) != steps
                or getattr(ops[u].builtinOptions, "axis", None) != 1 for u in (unpack_z, unpack_k)):
            continue
        zs, ks = [int(i) for i in ops[unpack_z].outputs], [int(i) for i in ops[unpack_k].outputs]
        chain = [unpack_z, unpack_k, pack, final, first]
        ok = sorted(int(i) for i in ops[first].inputs) == sorted((zs[order[0]], ks[order[0]]))
        for prev, t in zip(order, order[1:]):
            if not ok:
                break
            add = op_of(cells[t], B.ADD)
            ok = add is not None and cells[prev] in [int(i) for i in ops[add].inputs]
            if not ok:
                break
            e = [int(i) for i in ops[add].inputs if int(i) != cells[prev]]
            mul = op_of(e[0], B.MUL) if len(e) == 1 else None
            ok = mul is not None and ks[t] in [int(i) for i in ops[mul].inputs]
            if not ok:
                break
            d = [int(i) for i in ops[mul].inputs if int(i) != ks[t]]
            sub = op_of(d[0], B.SUB) if len(d) == 1 else None
            ok = sub is not None and [int(i) for i in ops[sub].inputs] == [zs[t], cells[prev]]
            chain += [add, mul, sub] if ok else []
        if not ok:
            continue
        # Everything the chain computes must be used only inside it.
        inside = set(chain)
        produced = {int(i) for c in chain if c not in (final,) for i in ops[c].outputs}
        if any(i in graph.outputs or not set(consumers.get(i, [])) <= inside for i in produced):
            continue
        z, k = int(ops[unpack_z].inputs[0]), int(ops[unpack_k].inputs[0])
        shape = list(graph.tensors[h].shape)
        if any(list(graph.tensors[i].shape) != shape or not per_tensor_int8(graph, i) for i in (z, k, o, h)):
            return None
        return chain, z, k, o, h, reverse
    return None


def fuse_fo_pooling(model) -> int:
    """Pass 0b (see the module doc), on every subgraph. Returns how many recurrences
    became ``EdgePqrnnFoPool`` nodes (2 per bi-QRNN layer in an int8 body; 0 in a float
    one, whose tensors are not int8)."""
    s = schema()
    fused = 0
    code_index = None
    for graph in model.subgraphs:
        producer = {int(o): i for i, op in enumerate(graph.operators) for o in op.outputs}
        consumers: dict[int, list[int]] = {}
        for i, op in enumerate(graph.operators):
            for t in op.inputs:
                consumers.setdefault(int(t), []).append(i)
        remove: set[int] = set()
        replace: dict[int, Any] = {}
        for i, op in enumerate(graph.operators):
            if builtin_of(model, op) != s.BuiltinOperator.PACK or i in remove:
                continue
            match = _match_recurrence(model, graph, i, producer, consumers)
            if match is None:
                continue
            chain, z, k, o, h, reverse = match
            if code_index is None:
                code = s.OperatorCodeT()
                code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
                code.customCode, code.version = FO_POOL_OP, 1
                model.operatorCodes.append(code)
                code_index = len(model.operatorCodes) - 1
            node = s.OperatorT()
            node.opcodeIndex, node.inputs, node.outputs = code_index, [z, k, o], [h]
            node.customOptions = list(fo_pool.options_bytes(reverse))
            node.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
            remove.update(chain)
            replace[chain[3]] = node  # where the final MUL ran: z, k and o all exist by then
            fused += 1
        if remove:
            graph.operators = [replace.get(i, op) for i, op in enumerate(graph.operators)
                               if i not in remove or i in replace]
            drop_unused_tensors(model, graph)
    return fused

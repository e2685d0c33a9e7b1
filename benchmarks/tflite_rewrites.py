"""Rewrites of full-integer .tflite flatbuffers (LiteRT's schema), for `benchmarks.int8_layouts`.

No flags here, so tests import it freely: `share_folded_kernels`,
`drop_bias_quantization`, `per_tensor_batchnorm_affines`,
`quantization_bytes`, and `litert_outputs` to run a file on LiteRT with
XNNPACK on or off. See `benchmarks.int8_layouts` for what each layout is.
"""

from __future__ import annotations

import os

import numpy as np


def _model(buffer: bytes):
    from ai_edge_litert import schema_py_generated as schema

    return schema, schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buffer, 0))


def _pack(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _kernel_ops(schema, model) -> list:
    """The CONV_2D and DEPTHWISE_CONV_2D operators of the main subgraph."""
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    kinds = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D}
    return [op for op in model.subgraphs[0].operators if codes[op.opcodeIndex] in kinds]


def quantization_bytes(buffer: bytes) -> int:
    """Bytes of per-tensor quantization vectors: 4 per scale, 8 per int64 zero point."""
    _, model = _model(buffer)
    total = 0
    for tensor in model.subgraphs[0].tensors:
        q = tensor.quantization
        if q is not None and q.scale is not None:
            total += 4 * len(q.scale) + 8 * len(q.zeroPoint if q.zeroPoint is not None else ())
    return total


def share_folded_kernels(buffer: bytes) -> tuple[bytes, dict]:
    """Points every reuse's folded int8 kernel at the first copy, signs in the scales.

    Returns:
        The rewritten file and counts: kernels, shared, negated channels,
        int8 values that differ by one step from the copy they now read.
    """
    schema, model = _model(buffer)
    graph = model.subgraphs[0]
    first: dict[tuple, list] = {}
    counts = {"kernels": 0, "shared": 0, "negated_channels": 0, "off_by_one_values": 0}
    seen = set()
    for op in _kernel_ops(schema, model):
        index = op.inputs[1]
        tensor = graph.tensors[index]
        data = model.buffers[tensor.buffer].data
        if tensor.type != schema.TensorType.INT8 or data is None or index in seen:
            continue
        seen.add(index)
        counts["kernels"] += 1
        axis = tensor.quantization.quantizedDimension
        values = np.frombuffer(bytes(bytearray(data)), np.int8).reshape(tensor.shape)
        values = np.moveaxis(values, axis, 0).reshape(tensor.shape[axis], -1).astype(np.int32)
        for other_buffer, other in first.get(tuple(tensor.shape), []):
            same, flipped = np.abs(values - other), np.abs(values + other)
            negate = flipped.sum(1) < same.sum(1)
            steps = np.where(negate[:, None], flipped, same)
            if steps.max() > 1 or (steps > 0).mean() > 0.01:
                continue
            scale = np.asarray(tensor.quantization.scale, np.float32)
            tensor.quantization.scale = list(np.where(negate, -scale, scale))
            model.buffers[tensor.buffer].data = None
            tensor.buffer = other_buffer
            counts["shared"] += 1
            counts["negated_channels"] += int(negate.sum())
            counts["off_by_one_values"] += int((steps > 0).sum())
            break
        else:
            first.setdefault(tuple(tensor.shape), []).append((tensor.buffer, values))
    return _pack(model), counts


def drop_bias_quantization(buffer: bytes) -> tuple[bytes, dict]:
    """Removes the quantization parameters of the kernels' int32 bias tensors."""
    schema, model = _model(buffer)
    graph = model.subgraphs[0]
    entries = 0
    for op in _kernel_ops(schema, model):
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            bias = graph.tensors[op.inputs[2]]
            if bias.quantization is not None and bias.quantization.scale is not None:
                entries += len(bias.quantization.scale)
                bias.quantization = None
    return _pack(model), {"bias_entries_removed": entries}


def per_tensor_batchnorm_affines(buffer: bytes) -> tuple[bytes, dict]:
    """Requantizes each reuse's BatchNorm affine (a 1x1 depthwise op) per tensor.

    Its weights (gamma / sigma per channel) and int32 bias are re-expressed
    with one scale each, so the per-channel scale and int64 zero-point
    vectors of both go.
    """
    schema, model = _model(buffer)
    graph = model.subgraphs[0]

    def values(tensor, dtype) -> np.ndarray:
        return np.frombuffer(bytes(bytearray(model.buffers[tensor.buffer].data)), dtype)

    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    affines = 0
    for op in _kernel_ops(schema, model):
        weights = graph.tensors[op.inputs[1]]
        if codes[op.opcodeIndex] != schema.BuiltinOperator.DEPTHWISE_CONV_2D or list(
            weights.shape[:3]
        ) != [1, 1, 1]:
            continue
        real = values(weights, np.int8) * np.asarray(weights.quantization.scale, np.float64)
        scale = float(np.abs(real).max()) / 127 or 1.0
        quantized = np.clip(np.round(real / scale), -127, 127).astype(np.int8)
        model.buffers[weights.buffer].data = np.frombuffer(quantized.tobytes(), np.uint8)
        weights.quantization.scale, weights.quantization.zeroPoint = [scale], [0]
        weights.quantization.quantizedDimension = 0
        input_scale = float(graph.tensors[op.inputs[0]].quantization.scale[0])
        bias = graph.tensors[op.inputs[2]]
        real_bias = values(bias, np.int32) * np.asarray(bias.quantization.scale, np.float64)
        quantized_bias = np.round(real_bias / (input_scale * scale)).astype(np.int32)
        model.buffers[bias.buffer].data = np.frombuffer(quantized_bias.tobytes(), np.uint8)
        bias.quantization.scale, bias.quantization.zeroPoint = [input_scale * scale], [0]
        affines += 1
    return _pack(model), {"affines_requantized": affines}


def litert_outputs(path: str, images: np.ndarray, xnnpack: bool) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    options = (
        {}
        if xnnpack
        else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    )
    interpreter = Interpreter(model_path=path, num_threads=os.cpu_count(), **options)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    batch = 250
    interpreter.resize_tensor_input(inp["index"], (batch, *images.shape[1:]))
    interpreter.allocate_tensors()
    outputs = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        if len(chunk) != batch:  # the last, short batch
            interpreter.resize_tensor_input(inp["index"], chunk.shape)
            interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], chunk)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"]).copy())
    return np.concatenate(outputs)

"""Rewrites of full-integer .tflite flatbuffers (LiteRT's schema), for `benchmarks.int8_layouts`.

No flags here, so tests import it freely: `share_folded_kernels`,
`drop_bias_quantization`, `per_tensor_batchnorm_affines` and
`share_zero_biases` (the two halves of the library's compact layout,
`keras_reuse.litert_rewrite`, which also gives `quantization_bytes`),
`strip_tensor_names`, and
`litert_outputs` to run a file on LiteRT with XNNPACK on or off. See
`benchmarks.int8_layouts` for what each layout is.
"""

from __future__ import annotations

import os

import numpy as np

from keras_reuse import litert_rewrite
from keras_reuse.litert_rewrite import (  # noqa: F401 (quantization_bytes: re-exported)
    kernel_ops,
    quantization_bytes,
    read_model,
    write_model,
)


def share_folded_kernels(buffer: bytes) -> tuple[bytes, dict]:
    """Points every reuse's folded int8 kernel at the first copy, signs in the scales.

    Returns:
        The rewritten file and counts: kernels, shared, negated channels,
        int8 values that differ by one step from the copy they now read.
    """
    schema, model = read_model(buffer)
    graph = model.subgraphs[0]
    first: dict[tuple, list] = {}
    counts = {"kernels": 0, "shared": 0, "negated_channels": 0, "off_by_one_values": 0}
    seen = set()
    for op in kernel_ops(schema, model):
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
    return write_model(model), counts


def drop_bias_quantization(buffer: bytes) -> tuple[bytes, dict]:
    """Removes the quantization parameters of the kernels' int32 bias tensors."""
    schema, model = read_model(buffer)
    graph = model.subgraphs[0]
    entries = 0
    for op in kernel_ops(schema, model):
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            bias = graph.tensors[op.inputs[2]]
            if bias.quantization is not None and bias.quantization.scale is not None:
                entries += len(bias.quantization.scale)
                bias.quantization = None
    return write_model(model), {"bias_entries_removed": entries}


def per_tensor_batchnorm_affines(buffer: bytes) -> tuple[bytes, dict]:
    """Half of the library's compact layout (`keras_reuse.litert_rewrite`)."""
    rewritten, affines = litert_rewrite.per_tensor_batchnorm_affines(buffer)
    return rewritten, {"affines_requantized": affines}


def share_zero_biases(buffer: bytes) -> tuple[bytes, dict]:
    """Half of the library's compact layout (`keras_reuse.litert_rewrite`)."""
    rewritten, shared = litert_rewrite.share_zero_biases(buffer)
    return rewritten, {"biases_shared": shared}


def strip_tensor_names(buffer: bytes) -> tuple[bytes, dict]:
    """Removes the names of every tensor but the graph's inputs and outputs."""
    _, model = read_model(buffer)
    graph = model.subgraphs[0]
    keep = {*graph.inputs, *graph.outputs}
    removed = 0
    for index, tensor in enumerate(graph.tensors):
        if index not in keep and tensor.name:
            removed += len(tensor.name)
            tensor.name = None
    return write_model(model), {"name_bytes_removed": removed}


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

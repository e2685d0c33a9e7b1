"""Rewrites of full-integer LiteRT (.tflite) flatbuffers that the converter has no option for.

Owns `to_tflite`'s compact int8 layout (`int8_layout="compact"`) and the
flatbuffer reading and writing it needs.

Why. In an int8 file every convolution's weights and int32 bias carry one
float32 scale and one int64 zero point per output channel, and every call
of a shared kernel has a bias of its own: in the published LruNet-10 most
of the int8 file is these vectors (docs/reports/int8-bytes.md). Two rewrites
remove most of them and keep
every op, its kernel and its XNNPACK delegation:
- each BatchNorm affine (a 1x1 depthwise op, see `keras_reuse.export.litert`) is
  requantized with one scale for its weights and one for its bias (24
  bytes of vectors per channel and per reuse go);
- the calls of a shared kernel, whose biases are zero, read one zero bias
  (12 bytes per channel and per reuse go; bit-identical outputs).
A third drops the names of the intermediate tensors (the converter's long
op paths), which LiteRT does not read; the input and output tensors and
the signature keep theirs.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def read_model(buffer: bytes) -> tuple[Any, Any]:
    """Unpacks a flatbuffer. Returns LiteRT's schema module and the mutable `ModelT`.

    Buffers stored after the flatbuffer (`offset`/`size`, as the AI Edge
    Quantizer writes them) are read into `data`, so that every rewrite sees
    the bytes and `write_model` stores them inline.
    """
    # Lazy: the flatbuffer schema loads only for the compact layout.
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buffer, 0))
    for stored in model.buffers:
        # offset 1 marks an empty buffer in that layout.
        if stored.offset > 1:
            end = stored.offset + stored.size
            stored.data = np.frombuffer(bytes(buffer[stored.offset : end]), np.uint8)
            stored.offset = stored.size = 0
    return schema, model


def write_model(model: Any) -> bytes:
    """Packs a `ModelT` back into .tflite bytes."""
    # Lazy: the flatbuffer builder loads only for the compact layout.
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def kernel_ops(schema: Any, model: Any) -> list:
    """The CONV_2D and DEPTHWISE_CONV_2D operators of the main subgraph, in order."""
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    kinds = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D}
    return [op for op in model.subgraphs[0].operators if codes[op.opcodeIndex] in kinds]


def is_channel_affine(schema: Any, model: Any, op: Any) -> bool:
    """Whether `op` is an int8 1x1 depthwise op with an int32 bias: a BatchNorm affine's form."""
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    if codes[op.opcodeIndex] != schema.BuiltinOperator.DEPTHWISE_CONV_2D or len(op.inputs) < 3:
        return False
    tensors = model.subgraphs[0].tensors
    if op.inputs[2] < 0:
        return False
    activations, weights, bias = (tensors[i] for i in op.inputs[:3])
    # int8 activations (an int16x8 file has int64 biases and is left alone).
    return (
        list(weights.shape[:3]) == [1, 1, 1]
        and activations.type == schema.TensorType.INT8
        and weights.type == schema.TensorType.INT8
        and bias.type == schema.TensorType.INT32
    )


def quantization_bytes(buffer: bytes) -> int:
    """Bytes of per-tensor quantization vectors: 4 per scale, 8 per int64 zero point."""
    _, model = read_model(buffer)
    total = 0
    for tensor in model.subgraphs[0].tensors:
        q = tensor.quantization
        if q is not None and q.scale is not None:
            total += 4 * len(q.scale) + 8 * len(q.zeroPoint if q.zeroPoint is not None else ())
    return total


def _new_buffer(schema: Any, model: Any, array: np.ndarray, by_content: dict) -> int:
    """The index of a buffer holding `array`'s bytes, shared with any identical one made here."""
    raw = array.tobytes()
    if raw not in by_content:
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(raw, np.uint8)
        model.buffers.append(buffer)
        by_content[raw] = len(model.buffers) - 1
    return by_content[raw]


def _requantize_affines(schema: Any, model: Any) -> int:
    graph = model.subgraphs[0]
    by_content: dict[bytes, int] = {}

    def values(tensor: Any, dtype: type) -> np.ndarray:
        return np.frombuffer(bytes(bytearray(model.buffers[tensor.buffer].data)), dtype)

    def store(tensor: Any, array: np.ndarray, scale: float) -> None:
        # Always a buffer of its own (or one with the same bytes): the
        # converter stores identical bytes once, and per channel every
        # affine's int8 weights are +-127, so many affines read one buffer.
        tensor.buffer = _new_buffer(schema, model, array, by_content)
        tensor.quantization.scale, tensor.quantization.zeroPoint = [scale], [0]
        tensor.quantization.quantizedDimension = 0

    done: set[int] = set()
    affines = 0
    for op in kernel_ops(schema, model):
        if not is_channel_affine(schema, model, op):
            continue
        weights, bias = graph.tensors[op.inputs[1]], graph.tensors[op.inputs[2]]
        # The converter stores identical affines once; requantize each tensor once.
        if op.inputs[1] not in done:
            real = values(weights, np.int8) * np.asarray(weights.quantization.scale, np.float64)
            scale = float(np.abs(real).max()) / 127 or 1.0
            store(weights, np.clip(np.round(real / scale), -127, 127).astype(np.int8), scale)
            done.add(op.inputs[1])
        if op.inputs[2] not in done:
            input_scale = float(graph.tensors[op.inputs[0]].quantization.scale[0])
            bias_scale = input_scale * float(weights.quantization.scale[0])
            real_bias = values(bias, np.int32) * np.asarray(bias.quantization.scale, np.float64)
            store(bias, np.round(real_bias / bias_scale).astype(np.int32), bias_scale)
            done.add(op.inputs[2])
        affines += 1
    return affines


def _share_zero_biases(schema: Any, model: Any) -> int:
    graph = model.subgraphs[0]
    first: dict[int, int] = {}  # weights tensor -> the zero bias tensor of its first reader
    shared = 0
    for op in kernel_ops(schema, model):
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        data = model.buffers[graph.tensors[op.inputs[2]].buffer].data
        if data is None or np.any(np.asarray(data)):
            continue
        kernel = op.inputs[1]
        if kernel in first:
            inputs = list(op.inputs)
            inputs[2] = first[kernel]
            op.inputs = inputs
            shared += 1
        else:
            first[kernel] = op.inputs[2]
    return shared


def _drop_unused(model: Any) -> None:
    """Removes tensors no operator reads or writes, and empties buffers no tensor reads."""
    graph = model.subgraphs[0]
    used = {i for op in graph.operators for i in (*op.inputs, *op.outputs) if i >= 0}
    used |= {*graph.inputs, *graph.outputs}
    keep = [i for i in range(len(graph.tensors)) if i in used]
    index = {old: new for new, old in enumerate(keep)}
    graph.tensors = [graph.tensors[i] for i in keep]
    for op in graph.operators:
        op.inputs = [index[i] if i >= 0 else i for i in op.inputs]
        op.outputs = [index[i] for i in op.outputs]
    graph.inputs = [index[i] for i in graph.inputs]
    graph.outputs = [index[i] for i in graph.outputs]
    for signature in model.signatureDefs or []:
        for entry in (*(signature.inputs or []), *(signature.outputs or [])):
            entry.tensorIndex = index[entry.tensorIndex]
    read = {tensor.buffer for tensor in graph.tensors}
    for number, buffer in enumerate(model.buffers):
        if number not in read:
            buffer.data = None


def _drop_tensor_names(model: Any) -> int:
    """Clears every tensor's name but the subgraph inputs' and outputs'; returns bytes dropped."""
    dropped = 0
    for graph in model.subgraphs:
        keep = {*graph.inputs, *graph.outputs}
        for number, tensor in enumerate(graph.tensors):
            if number not in keep and tensor.name:
                dropped += len(tensor.name)
                tensor.name = None
    return dropped


def drop_tensor_names(buffer: bytes) -> tuple[bytes, int]:
    """Clears the names of the intermediate tensors, which LiteRT does not read.

    The converter names every tensor after the ops that made it, in long
    paths (docs/reports/int8-bytes.md has their share of the file). The
    subgraph's input and output tensors keep their names, and the
    signature its own.

    Args:
        buffer: A .tflite file.

    Returns:
        The rewritten file and the number of name bytes dropped.
    """
    _, model = read_model(buffer)
    dropped = _drop_tensor_names(model)
    return write_model(model), dropped


def per_tensor_batchnorm_affines(buffer: bytes) -> tuple[bytes, int]:
    """Requantizes every BatchNorm affine (int8 1x1 depthwise op) with one scale per tensor.

    The affine's real weights (gamma / sigma per channel) are requantized to
    int8 with the scale max|w| / 127 (round to nearest), and its real int32
    bias with that scale times the input's, as LiteRT requires. Weights stay
    within half a new step of their real values. Other ops are left as they
    are.

    Args:
        buffer: A full-integer .tflite file (int8 activations).

    Returns:
        The rewritten file and the number of affines requantized.
    """
    schema, model = read_model(buffer)
    affines = _requantize_affines(schema, model)
    _drop_unused(model)
    return write_model(model), affines


def share_zero_biases(buffer: bytes) -> tuple[bytes, int]:
    """Lets every convolution that reads a kernel read its first reader's zero bias.

    The converter gives each call of a shared kernel its own int32 bias,
    with a scale and a zero point per channel, even where the bias is zero
    (every reuse of LruNet's shared kernels). A zero bias is zero at any
    scale, so one tensor serves all calls: LiteRT's kernels and XNNPACK give
    bit-identical outputs. Delegates that check a bias's scale against its
    input's (NNAPI) may decline such ops.

    Args:
        buffer: A full-integer .tflite file.

    Returns:
        The rewritten file and the number of convolutions that now read a
        shared bias.
    """
    schema, model = read_model(buffer)
    shared = _share_zero_biases(schema, model)
    _drop_unused(model)
    return write_model(model), shared


def compact_int8(buffer: bytes) -> tuple[bytes, dict[str, int]]:
    """`to_tflite`'s `int8_layout="compact"`: per-tensor affines, shared zero biases, no names.

    Args:
        buffer: A full-integer .tflite file (int8 activations).

    Returns:
        The rewritten file and what changed: `affines_requantized`,
        `biases_shared`, `name_bytes_dropped` (the intermediate tensors'
        names; inputs, outputs and signatures keep theirs).
    """
    schema, model = read_model(buffer)
    counts = {
        "affines_requantized": _requantize_affines(schema, model),
        "biases_shared": _share_zero_biases(schema, model),
    }
    _drop_unused(model)
    counts["name_bytes_dropped"] = _drop_tensor_names(model)
    return write_model(model), counts

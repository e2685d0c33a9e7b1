"""Where the bytes of an int8 LruNet go, and the layouts that could make it small (issue 18).

    TFDS_DATA_DIR=../shared/tensorflow_datasets python -m benchmarks.int8_layouts

Exports the published Fashion-MNIST LruNet-10 (`--preset`) with
`keras_reuse.to_tflite(quantization="int8")` in two layouts, then rewrites
the files' flatbuffers (LiteRT's schema) into two more, and measures each on
the LiteRT interpreter with XNNPACK on and off:

- `int8`: the default export. Each reuse's BatchNorm is a per-channel 1x1
  depthwise convolution after the shared kernel (stored once).
- `int8, BN folded`: `fold_batchnorm=True`; the converter folds each
  reuse's BatchNorm into its own copy of the shared kernel.
- `int8, BN folded, one buffer per shared kernel`: per-channel symmetric
  int8 of a kernel scaled per output channel by s > 0 has the same int8
  values as the kernel itself (only the channel's scale changes), so every
  reuse's copy is the first copy up to a sign per channel (a negative
  BatchNorm gamma). The copies are pointed at one buffer and the signs moved
  into negative per-channel scales.
- `int8, bias without quantization parameters`: the default file with the
  per-channel scale and int64 zero-point vectors of its int32 bias tensors
  removed (the reference kernels do not read them).
- `int8, BN affines quantized per tensor`: the default file with each
  reuse's BatchNorm affine requantized with one scale for its weights and
  one for its bias, instead of a scale and an int64 zero point per channel.

Reported per layout: size, bytes per trainable parameter, the bytes of
quantization parameters (float32 scale + int64 zero point per entry), top-1
agreement with Keras and accuracy (XNNPACK on: every test image; off: the
first `--reference_examples`), and LiteRT batch-1 latency both ways.
Writes `int8_layouts.json` and `int8_layouts.md` (atomically) to `--output_dir`.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Callable

import numpy as np
from absl import app, flags, logging

from benchmarks import measure
from keras_reuse import atomic

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "lrunet10_fashion_mnist", "Published LruNet (a Fashion-MNIST one).")
flags.DEFINE_integer("calibration", 500, "Training images that calibrate int8.")
flags.DEFINE_integer("test_examples", None, "Test images for XNNPACK's agreement (default: all).")
flags.DEFINE_integer(
    "reference_examples", 500, "Test images for the reference kernels' (XNNPACK off) agreement."
)
flags.DEFINE_integer("latency_calls", 200, "Batch-1 invokes per latency median.")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where int8_layouts.json/.md go.")


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


def _litert_outputs(path: str, images: np.ndarray, xnnpack: bool) -> np.ndarray:
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


def _numpy(dataset) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for x, y in dataset:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def measure_layouts(directory: str) -> tuple[list[dict], int]:
    """Exports, rewrites and measures every layout; returns the rows and the parameters."""
    from keras_reuse import applications, data, to_tflite
    from keras_reuse.applications.lrunet_presets import PRESETS

    preset = PRESETS[FLAGS.preset]
    model = applications.create(preset.name, classifier_activation=None)
    params = measure.trainable_params(model)
    split = "test" if FLAGS.test_examples is None else f"test[:{FLAGS.test_examples}]"
    images, labels = _numpy(data.load(preset.eval_dataset, split=split, batch_size=500))
    calibration, _ = _numpy(
        data.load(
            preset.eval_dataset,
            split=f"train[:{FLAGS.calibration}]",
            batch_size=FLAGS.calibration,
            augment=False,
            shuffle=False,
        )
    )
    expected = model.predict(images, batch_size=500, verbose=0).argmax(-1)

    def export(name: str, **kwargs) -> bytes:
        path = os.path.join(directory, f"{name}.tflite")
        to_tflite(model, path, verify=False, **kwargs)
        with open(path, "rb") as f:
            return f.read()

    int8 = dict(quantization="int8", representative_data=calibration)
    default = export("int8", **int8)
    folded = export("folded", fold_batchnorm=True, **int8)
    layouts: list[tuple[str, Callable[[], tuple[bytes, dict]]]] = [
        ("float32 (for latency)", lambda: (export("float32"), {})),
        ("int8", lambda: (default, {})),
        ("int8, BN folded", lambda: (folded, {})),
        ("int8, BN folded, one buffer per shared kernel", lambda: share_folded_kernels(folded)),
        ("int8, bias without quantization parameters", lambda: drop_bias_quantization(default)),
        ("int8, BN affines quantized per tensor", lambda: per_tensor_batchnorm_affines(default)),
    ]
    rows = []
    reference_n = min(FLAGS.reference_examples, len(images))
    for name, make in layouts:
        logging.info("int8 layouts: %s", name)
        buffer, counts = make()
        path = os.path.join(directory, "layout.tflite")
        with open(path, "wb") as f:
            f.write(buffer)
        row = {
            "layout": name,
            "bytes": len(buffer),
            "bytes_per_param": len(buffer) / params,
            "quantization_bytes": quantization_bytes(buffer),
            **counts,
        }
        for xnnpack, n in ((True, len(images)), (False, reference_n)):
            top1 = _litert_outputs(path, images[:n], xnnpack).argmax(-1)
            key = "xnnpack" if xnnpack else "reference"
            row[f"{key}_agreement"] = float(np.mean(top1 == expected[:n]))
            row[f"{key}_accuracy"] = float(np.mean(top1 == labels[:n]))
            row[f"{key}_examples"] = n
            row[f"{key}_ms"] = measure.tflite_file_latency_ms(
                path, FLAGS.latency_calls, xnnpack=xnnpack
            )
        rows.append(row)
        logging.info("%s", row)
    return rows, params


def markdown(rows: list[dict], params: int, machine: str) -> str:
    flags_used = [f"--{n}={FLAGS[n].value}" for n in FLAGS if n in _OWN and FLAGS[n].present]
    command = " ".join(["python -m benchmarks.int8_layouts", *flags_used])
    lines = [
        f"Measured with `{command}` on {machine}: {FLAGS.preset} ({params:,} trainable "
        "parameters). Agreement: top-1 agreement with Keras (accuracy in brackets) on "
        f"{rows[0]['xnnpack_examples']:,} test images with XNNPACK, on the first "
        f"{rows[0]['reference_examples']:,} with the reference kernels; latency: median of "
        f"{FLAGS.latency_calls} batch-1 invokes, {os.cpu_count()} threads.",
        "",
        "| layout | bytes | bytes/param | of which quantization parameters | agreement, "
        "XNNPACK | agreement, reference kernels | ms, XNNPACK | ms, reference |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layout']} | {r['bytes']:,} | {r['bytes_per_param']:.2f} | "
            f"{r['quantization_bytes']:,} | {r['xnnpack_agreement']:.2%} "
            f"({r['xnnpack_accuracy']:.2%}) | {r['reference_agreement']:.2%} "
            f"({r['reference_accuracy']:.2%}) | {r['xnnpack_ms']:.2f} | {r['reference_ms']:.2f} |"
        )
    return "\n".join(lines) + "\n"


_OWN = ("preset", "calibration", "test_examples", "reference_examples", "latency_calls")


def main(argv: list[str]) -> None:
    del argv
    from keras_reuse.applications.lrunet_presets import PRESETS

    if FLAGS.preset not in PRESETS or PRESETS[FLAGS.preset].eval_dataset is None:
        usable = sorted(n for n, p in PRESETS.items() if p.eval_dataset is not None)
        raise app.UsageError(f"--preset must be one of {usable}. Received: {FLAGS.preset!r}")
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    machine = f"{measure.cpu_model()} ({os.cpu_count()} cores), {platform.python_version()}"
    with tempfile.TemporaryDirectory() as directory:
        rows, params = measure_layouts(directory)
    table = markdown(rows, params, machine)
    print(table)
    atomic.write_text(
        os.path.join(FLAGS.output_dir, "int8_layouts.json"),
        json.dumps({"machine": machine, "preset": FLAGS.preset, "rows": rows}, indent=2),
    )
    atomic.write_text(os.path.join(FLAGS.output_dir, "int8_layouts.md"), table)


if __name__ == "__main__":
    app.run(main)

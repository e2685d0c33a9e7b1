"""Where an int8 LruNet's batch-1 time goes on LiteRT: int8 against float32 per kind of block.

    python -m benchmarks.litert_ops

Builds small stacks of one kind of LruNet block at 14x14x128 (eight blocks
each), exports each with `to_tflite` as float32 and as int8 (calibrated on
random images), and times a batch-1 invoke of each file with XNNPACK, all in
one run. It also counts the XNNPACK partitions of each file: an op that
XNNPACK does not take ends a partition, and the tensors crossing it leave
XNNPACK's kernels. The two forms of the channel shuffle are compared: split
/ stack / reshape, as `layers.ChannelShuffle` computed it before, and reshape
/ transpose / reshape, as it computes it now (both without LruNet's half
swap, which it now runs as a split and a concatenation first). Writes
`litert_ops.json` and `litert_ops.md` (atomically) to `--output_dir`.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from absl import app, flags

from benchmarks import measure

FLAGS = flags.FLAGS
flags.DEFINE_integer("latency_calls", 300, "Batch-1 invokes per latency median.")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where litert_ops.json/.md go.")

_SIZE, _CHANNELS, _BLOCKS = 14, 128, 8


def _stack(kind: str):
    import keras

    def split_stack(x):
        halves = keras.ops.split(x, 2, axis=-1)
        return keras.ops.reshape(keras.ops.stack(halves, axis=-1), (-1, _SIZE, _SIZE, _CHANNELS))

    def transpose(x):
        x = keras.ops.reshape(x, (-1, _SIZE, _SIZE, 2, _CHANNELS // 2))
        x = keras.ops.transpose(x, (0, 1, 2, 4, 3))
        return keras.ops.reshape(x, (-1, _SIZE, _SIZE, _CHANNELS))

    from keras_reuse.layers import GroupedPointwiseConv

    rng = np.random.default_rng(0)
    inputs = keras.Input((_SIZE, _SIZE, _CHANNELS))
    x = inputs
    shared = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")
    for i in range(_BLOCKS):
        if kind == "depthwise 3x3":
            x = keras.layers.DepthwiseConv2D(3, padding="same", name=f"dw{i}")(x)
        elif kind == "grouped 1x1 (8 groups)":
            x = GroupedPointwiseConv(_CHANNELS, groups=8, name=f"pw{i}")(x)
        elif kind == "dense 1x1":
            x = keras.layers.Conv2D(_CHANNELS, 1, name=f"c{i}")(x)
        elif kind == "shared depthwise + its BatchNorm":
            x = keras.layers.BatchNormalization(name=f"bn{i}")(shared(x))
        elif kind == "1x1 + add + ReLU":
            y = keras.layers.Conv2D(_CHANNELS, 1, name=f"c{i}")(x)
            x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
        elif kind.startswith("1x1 + shuffle"):
            x = keras.layers.Conv2D(_CHANNELS, 1, name=f"c{i}")(x)
            form = split_stack if "split" in kind else transpose
            x = keras.layers.Lambda(form, name=f"shuffle{i}")(x)
    model = keras.Model(inputs, x)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = (_CHANNELS,)
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, shape),
                    rng.normal(0, 0.1, shape),
                    rng.normal(0, 0.1, shape),
                    rng.uniform(0.5, 1.5, shape),
                ]
            )
    return model


KINDS = (
    "depthwise 3x3",
    "grouped 1x1 (8 groups)",
    "dense 1x1",
    "shared depthwise + its BatchNorm",
    "1x1 + add + ReLU",
    "1x1 + shuffle as split/stack/reshape",
    "1x1 + shuffle as reshape/transpose/reshape",
)


def _partitions(path: str) -> int:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()  # noqa: SLF001 (no public op listing)
    return sum(op["op_name"] == "DELEGATE" for op in ops)


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.latency_calls < 1:
        raise app.UsageError(f"--latency_calls={FLAGS.latency_calls}: must be an integer >= 1")
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    from keras_reuse import to_tflite

    calibration = np.random.default_rng(0).random((64, _SIZE, _SIZE, _CHANNELS), np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for kind in KINDS:
            model = _stack(kind)
            row = {"blocks": kind}
            for label, quantization in (("float32", None), ("int8", "int8")):
                path = os.path.join(directory, f"{label}.tflite")
                to_tflite(
                    model,
                    path,
                    quantization=quantization,
                    representative_data=calibration if quantization else None,
                    verify=False,
                )
                row[f"{label}_ms"] = measure.tflite_file_latency_ms(path, FLAGS.latency_calls)
                row[f"{label}_partitions"] = _partitions(path)
            rows.append(row)
    machine = measure.machine()
    command = "python -m benchmarks.litert_ops" + (
        f" --latency_calls={FLAGS.latency_calls}" if FLAGS["latency_calls"].present else ""
    )
    lines = [
        f"Measured with `{command}` on {machine}: {_BLOCKS} blocks at {_SIZE}x{_SIZE}x"
        f"{_CHANNELS}, batch-1 median of {FLAGS.latency_calls} invokes with XNNPACK "
        f"({os.cpu_count()} threads).",
        "",
        "| blocks | float32 ms | int8 ms | int8 / float32 | XNNPACK partitions (float32, int8) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['blocks']} | {r['float32_ms']:.3f} | {r['int8_ms']:.3f} | "
            f"{r['int8_ms'] / r['float32_ms']:.2f} | {r['float32_partitions']}, "
            f"{r['int8_partitions']} |"
        )
    table = "\n".join(lines) + "\n"
    measure.write_results(FLAGS.output_dir, "litert_ops", {"machine": machine, "rows": rows}, table)


if __name__ == "__main__":
    app.run(main)

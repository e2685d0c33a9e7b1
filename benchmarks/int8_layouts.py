"""Where the bytes of an int8 LruNet go, and the layouts that could make it small (issue 18).

    TFDS_DATA_DIR=../shared/tensorflow_datasets python -m benchmarks.int8_layouts

Exports the published Fashion-MNIST LruNet-10 (`--preset`) with
`keras_reuse.to_tflite(quantization="int8")` in three layouts, then rewrites
the files' flatbuffers (LiteRT's schema) into more, and measures each on
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
- `int8, one zero bias per shared kernel`: the default file with every call
  of a shared kernel reading its first call's zero bias.
- `int8, compact`: both, as `to_tflite(..., int8_layout="compact")` writes it.
- `int8, compact, tensor names stripped`: and the names of the intermediate
  tensors removed (what names cost; the library keeps them).

Reported per layout: size, bytes per trainable parameter, the bytes of
quantization parameters (float32 scale + int64 zero point per entry), top-1
agreement with Keras and accuracy (XNNPACK on: every test image; off: the
first `--reference_examples`), and LiteRT batch-1 latency both ways.
Writes `int8_layouts.json` and `int8_layouts.md` (atomically) to `--output_dir`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import numpy as np
from absl import app, flags, logging

from benchmarks import measure
from benchmarks.tflite_rewrites import (
    drop_bias_quantization,
    litert_outputs,
    per_tensor_batchnorm_affines,
    quantization_bytes,
    share_folded_kernels,
    share_zero_biases,
    strip_tensor_names,
)

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "lrunet10_fashion_mnist", "Published LruNet (a Fashion-MNIST one).")
flags.DEFINE_integer("calibration", 500, "Training images that calibrate int8.")
flags.DEFINE_integer("test_examples", None, "Test images for XNNPACK's agreement (default: all).")
flags.DEFINE_integer(
    "reference_examples", 500, "Test images for the reference kernels' (XNNPACK off) agreement."
)
flags.DEFINE_integer("latency_calls", 200, "Batch-1 invokes per latency median.")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where int8_layouts.json/.md go.")


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
    compact = export("compact", int8_layout="compact", **int8)
    layouts: list[tuple[str, Callable[[], tuple[bytes, dict]]]] = [
        ("float32 (for latency)", lambda: (export("float32"), {})),
        ("int8", lambda: (default, {})),
        ("int8, BN folded", lambda: (folded, {})),
        ("int8, BN folded, one buffer per shared kernel", lambda: share_folded_kernels(folded)),
        ("int8, bias without quantization parameters", lambda: drop_bias_quantization(default)),
        ("int8, BN affines quantized per tensor", lambda: per_tensor_batchnorm_affines(default)),
        ("int8, one zero bias per shared kernel", lambda: share_zero_biases(default)),
        ("int8, compact", lambda: (compact, {})),
        ("int8, compact, tensor names stripped", lambda: strip_tensor_names(compact)),
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
            top1 = litert_outputs(path, images[:n], xnnpack).argmax(-1)
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
    machine = measure.machine()
    with tempfile.TemporaryDirectory() as directory:
        rows, params = measure_layouts(directory)
    table = markdown(rows, params, machine)
    payload = {"machine": machine, "preset": FLAGS.preset, "rows": rows}
    measure.write_results(FLAGS.output_dir, "int8_layouts", payload, table)


if __name__ == "__main__":
    app.run(main)

"""The README's TFLite table: size, accuracy and LiteRT latency per quantization mode.

    TFDS_DATA_DIR=../shared/tensorflow_datasets python -m benchmarks.export_table

Builds the authors' published LruNets (Fashion-MNIST LruNet-1 and LruNet-10,
CIFAR-10 LruNet-14) from the package's presets (`lrunet_presets.PRESETS`,
no torch needed), exports
each in every mode of `keras_reuse.export.to_tflite` (float32, float32 with
`fold_batchnorm=True`, float16, dynamic, int8 as converted and in the
compact layout, int8 by the AI Edge Quantizer, also compact, with stage 1
in 16-bit activations and with stage 1 left in float32, and int16x8,
calibrated on training images; `--modes` picks rows),
verifies each file with LiteRT on the whole test split (accuracy and top-1
agreement with Keras), and times one batch-1 `invoke`. Writes
`export.json` and `export.md` (atomically) to `--output_dir`.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

from absl import app, flags, logging

from benchmarks import measure

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["fmnist_lru1", "fmnist_lru10", "cifar10_lru14"], "Rows to measure.")
flags.DEFINE_integer("calibration", 500, "Training images that calibrate int8 and int16x8.")
flags.DEFINE_integer("test_examples", None, "Verify on this many test images (default: all).")
flags.DEFINE_integer("latency_calls", 200, "Batch-1 invokes per file for its latency.")
flags.DEFINE_integer("latency_rounds", 5, "Interleaved rounds the invokes are split into.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: $TFDS_DATA_DIR).")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where export.json/.md go.")

# row name -> preset (keras_reuse/applications/lrunet_presets.py)
CHECKPOINTS = {
    "fmnist_lru1": "lrunet1_fashion_mnist",
    "fmnist_lru10": "lrunet10_fashion_mnist",
    "cifar10_lru14": "lrunet14_cifar10",
}
AEQ = "ai_edge_quantizer"


@dataclasses.dataclass(frozen=True)
class Mode:
    """One row per model: its label and the `to_tflite` keywords that make the file."""

    label: str
    options: dict


MODES = {
    "float32": Mode("float32", {}),
    "float32_folded": Mode("float32, BN folded", {"fold_batchnorm": True}),
    "float16": Mode("float16", {"quantization": "float16"}),
    "dynamic": Mode("dynamic", {"quantization": "dynamic"}),
    "int8": Mode("int8", {"quantization": "int8"}),
    "int8_compact": Mode("int8, compact", {"quantization": "int8", "int8_layout": "compact"}),
    "aeq_int8": Mode("int8, AI Edge Quantizer", {"quantization": "int8", "quantizer": AEQ}),
    "aeq_int8_compact": Mode(
        "int8, AI Edge Quantizer, compact",
        {"quantization": "int8", "quantizer": AEQ, "int8_layout": "compact"},
    ),
    "aeq_int8_stage1_int16": Mode(
        "int8, AI Edge Quantizer, stage 1 in int16",
        {"quantization": "int8", "quantizer": AEQ, "int16_layers": "stage1_"},
    ),
    "aeq_int8_stage1_float": Mode(
        "int8, AI Edge Quantizer, stage 1 in float32",
        {"quantization": "int8", "quantizer": AEQ, "float_layers": "stage1_"},
    ),
    "aeq_int8_stage1_float_compact": Mode(
        "int8, AI Edge Quantizer, stage 1 in float32, compact",
        {
            "quantization": "int8",
            "quantizer": AEQ,
            "float_layers": "stage1_",
            "int8_layout": "compact",
        },
    ),
    "int16x8": Mode("int16x8", {"quantization": "int16x8"}),
}
flags.DEFINE_list("modes", list(MODES), "Rows per model: keys of MODES.")


def measure_checkpoint(name: str, directory: str) -> list[dict]:
    """Exports one checkpoint in every mode; returns one row per mode."""
    import keras

    from keras_reuse import applications, data
    from keras_reuse.applications.lrunet_presets import PRESETS
    from keras_reuse.export import CALIBRATED, to_tflite

    preset = PRESETS[CHECKPOINTS[name]]
    dataset, label = preset.eval_dataset, f"LruNet-{preset.layer_reuse}"
    model = applications.create(preset.name, classifier_activation=None)
    params = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    keras_path = os.path.join(directory, f"{name}.keras")
    model.save(keras_path)
    split = "test" if FLAGS.test_examples is None else f"test[:{FLAGS.test_examples}]"
    test = data.load(dataset, split=split, batch_size=500, data_dir=FLAGS.data_dir)
    calibration = data.load(
        dataset,
        split=f"train[:{FLAGS.calibration}]",
        augment=False,
        shuffle=False,
        data_dir=FLAGS.data_dir,
    )
    rows = []
    for key in FLAGS.modes:
        mode = MODES[key]
        quantization = mode.options.get("quantization")
        logging.info("%s: exporting %s", label, mode.label)
        path = os.path.join(directory, f"{name}-{key}.tflite")
        report = to_tflite(
            model,
            path,
            representative_data=calibration if quantization in CALIBRATED else None,
            verification_data=test,
            **mode.options,
            # Report the agreement whatever it is; the library's default bars
            # (99%; int8 98%) are what `to_tflite` enforces for users.
            min_top1_agreement=0.5 if quantization else None,
        )
        rows.append(
            {
                "model": label,
                "dataset": dataset,
                "checkpoint": preset.checkpoint,
                "preset": preset.name,
                "trainable_params": params,
                "keras_bytes": os.path.getsize(keras_path),
                "mode": mode.label,
                "tflite_bytes": report.size_bytes,
                "bytes_per_param": report.size_bytes / params,
                "keras_accuracy": report.keras_accuracy,
                "tflite_accuracy": report.tflite_accuracy,
                "top1_agreement": report.top1_agreement,
                "test_examples": report.num_samples,
            }
        )
        logging.info("%s", rows[-1])
    # Timed together once all files exist: the machine's speed drifts over a
    # run, and interleaved rounds move every file alike.
    paths = [os.path.join(directory, f"{name}-{key}.tflite") for key in FLAGS.modes]
    latencies = measure.tflite_files_latency_ms(paths, FLAGS.latency_calls, FLAGS.latency_rounds)
    for row, latency in zip(rows, latencies, strict=True):
        row["litert_ms"] = latency
    return rows


def markdown(rows: list[dict], machine: str) -> str:
    flags_used = [f"--models={','.join(FLAGS.models)}"]
    if FLAGS["modes"].present:
        flags_used.append(f"--modes={','.join(FLAGS.modes)}")
    flags_used += [
        f"--{name}={FLAGS[name].value}"
        for name in ("calibration", "test_examples", "latency_calls", "latency_rounds")
        if FLAGS[name].present
    ]
    command = " ".join(["python -m benchmarks.export_table", *flags_used])
    lines = [
        f"Measured with `{command}` on {machine}; accuracy and "
        f"top-1 agreement with Keras on {rows[0]['test_examples']:,} test images, "
        "LiteRT batch-1 latency "
        f"the median of {FLAGS.latency_calls} invokes in {FLAGS.latency_rounds} rounds "
        f"interleaved over a model's files ({os.cpu_count()} threads).",
        "",
        "| model (dataset) | Keras .keras | mode | .tflite bytes | bytes/param | accuracy "
        "(Keras) | top-1 agreement | LiteRT batch-1 ms |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} ({row['dataset']}) | {row['keras_bytes']:,} | {row['mode']} | "
            f"{row['tflite_bytes']:,} | {row['bytes_per_param']:.2f} | "
            f"{row['tflite_accuracy']:.2%} ({row['keras_accuracy']:.2%}) | "
            f"{row['top1_agreement']:.2%} | {row['litert_ms']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    for name in FLAGS.models:
        if name not in CHECKPOINTS:
            raise app.UsageError(
                f"--models must name rows from {sorted(CHECKPOINTS)}. Received: {name!r}"
            )
    for key in FLAGS.modes:
        if key not in MODES:
            raise app.UsageError(f"--modes must name keys of {list(MODES)}. Received: {key!r}")
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    machine = measure.machine()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name in FLAGS.models:
            rows.extend(measure_checkpoint(name, directory))
    table = markdown(rows, machine)
    measure.write_results(FLAGS.output_dir, "export", {"machine": machine, "rows": rows}, table)


if __name__ == "__main__":
    app.run(main)

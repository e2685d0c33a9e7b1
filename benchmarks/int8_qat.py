"""Does fine-tuning with fake-quantized activations lift int8 agreement to 98%? (issue 18)

    TFDS_DATA_DIR=../shared/tensorflow_datasets python -m benchmarks.int8_qat

Exports the published Fashion-MNIST LruNet-10 (`--preset`) to int8 as it is
and after `--epochs` of fine-tuning on the training split with a fake
quantizer after every op of the export graph (`benchmarks.qat`; with
`--fake_quant_weights` every kernel is fake-quantized too), in both int8
layouts, and verifies every file with LiteRT (XNNPACK) on the test split:
top-1 agreement with the Keras model it was exported from, and accuracy.
Writes `int8_qat.json` and `int8_qat.md` (atomically) to `--output_dir`.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
from absl import app, flags, logging

from benchmarks import measure

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "lrunet10_fashion_mnist", "Published LruNet (a Fashion-MNIST one).")
flags.DEFINE_integer("epochs", 1, "Fine-tuning epochs with fake-quantized activations.")
flags.DEFINE_float("learning_rate", 1e-3, "SGD (momentum 0.9) learning rate of the fine-tuning.")
flags.DEFINE_bool(
    "fake_quant_weights", False, "Fake-quantize the kernels to int8 too (per channel)."
)
flags.DEFINE_integer("steps", None, "Steps per epoch (default: the whole training split).")
flags.DEFINE_integer("batch_size", 128, "Fine-tuning batch size.")
flags.DEFINE_integer("calibration", 500, "Training images that calibrate int8 and the ranges.")
flags.DEFINE_integer("test_examples", None, "Test images to verify on (default: all).")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where int8_qat.json/.md go.")

_OWN = (
    "preset",
    "epochs",
    "learning_rate",
    "fake_quant_weights",
    "steps",
    "batch_size",
    "calibration",
    "test_examples",
)


def _rows(model, name: str, params: int, calibration, test, directory: str) -> list[dict]:
    from keras_reuse import to_tflite

    rows = []
    for layout in ("converter", "compact"):
        report = to_tflite(
            model,
            os.path.join(directory, f"{name}-{layout}.tflite"),
            quantization="int8",
            representative_data=calibration,
            int8_layout=layout,
            verification_data=test,
            min_top1_agreement=0.5,  # report whatever it is
        )
        rows.append(
            {
                "model": name,
                "int8_layout": layout,
                "bytes": report.size_bytes,
                "bytes_per_param": report.size_bytes / params,
                "keras_accuracy": report.keras_accuracy,
                "tflite_accuracy": report.tflite_accuracy,
                "top1_agreement": report.top1_agreement,
                "test_examples": report.num_samples,
            }
        )
        logging.info("%s", rows[-1])
    return rows


def main(argv: list[str]) -> None:
    del argv
    from keras_reuse.applications.lrunet_presets import PRESETS

    if FLAGS.preset not in PRESETS or PRESETS[FLAGS.preset].eval_dataset is None:
        usable = sorted(n for n, p in PRESETS.items() if p.eval_dataset is not None)
        raise app.UsageError(f"--preset must be one of {usable}. Received: {FLAGS.preset!r}")
    for name in ("epochs", "batch_size", "calibration"):
        if FLAGS[name].value < 1:
            raise app.UsageError(f"--{name}={FLAGS[name].value}: must be an integer >= 1")
    if not FLAGS.learning_rate > 0:
        raise app.UsageError(f"--learning_rate={FLAGS.learning_rate}: must be > 0")
    os.makedirs(FLAGS.output_dir, exist_ok=True)

    from benchmarks.qat import finetune_for_int8
    from keras_reuse import applications, data

    preset = PRESETS[FLAGS.preset]
    model = applications.create(preset.name, classifier_activation=None)
    params = measure.trainable_params(model)
    split = "test" if FLAGS.test_examples is None else f"test[:{FLAGS.test_examples}]"
    test = data.load(preset.eval_dataset, split=split, batch_size=500)
    calibration = np.concatenate(
        [
            x
            for x, _ in data.load(
                preset.eval_dataset,
                split=f"train[:{FLAGS.calibration}]",
                augment=False,
                shuffle=False,
            ).as_numpy_iterator()
        ]
    )
    train = data.load(preset.eval_dataset, split="train", batch_size=FLAGS.batch_size, seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        rows += _rows(model, "published", params, calibration, test, directory)
        start = time.perf_counter()
        tuned = finetune_for_int8(
            model,
            train,
            calibration,
            FLAGS.epochs,
            FLAGS.learning_rate,
            FLAGS.steps,
            weights=FLAGS.fake_quant_weights,
        )
        seconds = time.perf_counter() - start
        steps = f"{FLAGS.steps} steps" if FLAGS.steps else "epoch"
        what = "activations and weights" if FLAGS.fake_quant_weights else "activations"
        label = f"QAT ({what}), {FLAGS.epochs} x {steps} of {FLAGS.batch_size}"
        rows += _rows(tuned, label, params, calibration, test, directory)
    machine = measure.machine()
    flags_used = [f"--{n}={FLAGS[n].value}" for n in _OWN if FLAGS[n].present]
    command = " ".join(["python -m benchmarks.int8_qat", *flags_used])
    lines = [
        f"Measured with `{command}` on {machine}: {FLAGS.preset}; fine-tuning took "
        f"{seconds / 60:.1f} min. Agreement with the Keras model each file was exported "
        f"from and accuracy on {rows[0]['test_examples']:,} test images, LiteRT with XNNPACK.",
        "",
        "| model | int8 layout | bytes | bytes/param | Keras accuracy | int8 accuracy | "
        "top-1 agreement |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['int8_layout']} | {r['bytes']:,} | {r['bytes_per_param']:.2f} "
            f"| {r['keras_accuracy']:.2%} | {r['tflite_accuracy']:.2%} | "
            f"{r['top1_agreement']:.2%} |"
        )
    table = "\n".join(lines) + "\n"
    payload = {"machine": machine, "seconds": seconds, "rows": rows}
    measure.write_results(FLAGS.output_dir, "int8_qat", payload, table)


if __name__ == "__main__":
    app.run(main)

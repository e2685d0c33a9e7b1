"""Input pipeline speed against LruNet-14 training speed (issue 3, "Speed").

    TFDS_DATA_DIR=../shared/tensorflow_datasets python -m benchmarks.pipeline

For each dataset: the images/s `keras_reuse.data.load` delivers on the train
split with augmentation on, over its first epoch (decoding, filling the
cache) and a second, cached one; then the images/s plain `model.fit` of
LruNet-14 consumes (batch 128, float32, after warm-up steps) on that
dataset's input shape. The pipeline must deliver at least 10x what training
consumes. Prints a table and writes JSON (atomically) to --output.
"""

from __future__ import annotations

import json
import os
import platform
import time

from absl import app, flags

from keras_reuse.utils import atomic

FLAGS = flags.FLAGS


def _define_flags() -> None:
    # Only when run as a script: benchmarks.run imports this module and has
    # flags of the same names.
    flags.DEFINE_list("datasets", ["cifar10_jpeg", "fashion_mnist"], "TFDS datasets to time.")
    flags.DEFINE_string("data_dir", None, "TFDS data directory (default: $TFDS_DATA_DIR).")
    flags.DEFINE_string("split", "train", "Split to read, e.g. train[:10%] for a quick run.")
    flags.DEFINE_integer("batch_size", 128, "Batch size of the pipeline and of training.")
    flags.DEFINE_integer("train_warmup_steps", 3, "Training steps before timing (tracing, caches).")
    flags.DEFINE_integer("train_steps", 10, "Timed training steps.")
    flags.DEFINE_integer("layer_reuse", 14, "LruNet layer reuse N.")
    flags.DEFINE_string("output", "benchmarks/results/pipeline.json", "Where the JSON goes.")


def _pipeline_epoch(ds) -> tuple[int, float]:
    images = 0
    start = time.perf_counter()
    for batch, _ in ds:
        images += int(batch.shape[0])
    return images, time.perf_counter() - start


def time_pipeline(name: str, data_dir: str | None, batch_size: int, split: str = "train") -> dict:
    """Images/s of the augmented train pipeline: first (uncached) and second epoch."""
    from keras_reuse import data

    ds = data.load(name, split=split, batch_size=batch_size, data_dir=data_dir, seed=0)
    first_images, first_s = _pipeline_epoch(ds)
    cached_images, cached_s = _pipeline_epoch(ds)
    return {
        "images_per_epoch": cached_images,
        "first_epoch_images_per_s": first_images / first_s,
        "cached_epoch_images_per_s": cached_images / cached_s,
    }


def time_training(input_shape, batch_size: int, layer_reuse: int, warmup: int, steps: int):
    """Images/s `model.fit` of LruNet consumes, fed from memory so input costs nothing."""
    import keras

    from benchmarks.measure import KerasTrainer
    from keras_reuse import LruNet

    keras.mixed_precision.set_global_policy("float32")
    model = LruNet(
        num_classes=10,
        layer_reuse=layer_reuse,
        input_shape=tuple(input_shape),
        classifier_activation=None,
    )
    return {
        "model": f"LruNet-{layer_reuse}",
        "input_shape": list(input_shape),
        "timed_steps": steps,
        "images_per_s": KerasTrainer(model, batch_size, warmup).run(steps)["steady"],
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    import tensorflow as tf

    from keras_reuse import data

    results = []
    for name in FLAGS.datasets:
        input_shape = data.info(name, data_dir=FLAGS.data_dir).input_shape
        pipeline = time_pipeline(name, FLAGS.data_dir, FLAGS.batch_size, FLAGS.split)
        training = time_training(
            input_shape,
            FLAGS.batch_size,
            FLAGS.layer_reuse,
            FLAGS.train_warmup_steps,
            FLAGS.train_steps,
        )
        train_rate = training["images_per_s"]
        results.append(
            {
                "dataset": name,
                "pipeline": pipeline,
                "training": training,
                "ratio_cached": pipeline["cached_epoch_images_per_s"] / train_rate,
                "ratio_first_epoch": pipeline["first_epoch_images_per_s"] / train_rate,
            }
        )
    payload = {
        "command": "python -m benchmarks.pipeline",
        "split": FLAGS.split,
        "batch_size": FLAGS.batch_size,
        "augment": True,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "tensorflow": tf.__version__,
        "results": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    atomic.write_text(FLAGS.output, json.dumps(payload, indent=2) + "\n")

    print(f"batch {FLAGS.batch_size}, augmentation on, {os.cpu_count()} CPUs, TF {tf.__version__}")
    header = (
        f"{'dataset':<14} {'pipeline 1st epoch':>19} {'pipeline cached':>16} "
        f"{'LruNet-' + str(FLAGS.layer_reuse) + ' fit':>14} {'ratio':>12}"
    )
    print(header)
    for r in results:
        print(
            f"{r['dataset']:<14} {r['pipeline']['first_epoch_images_per_s']:>13,.0f} img/s "
            f"{r['pipeline']['cached_epoch_images_per_s']:>10,.0f} img/s "
            f"{r['training']['images_per_s']:>8,.0f} img/s "
            f"{r['ratio_first_epoch']:>5.0f}x/{r['ratio_cached']:.0f}x"
        )
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)

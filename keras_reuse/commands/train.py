"""`keras-reuse train`: absl flags -> `TrainConfig` -> `keras_reuse.training.train`.

Bad flags end the program with a one-line error naming the flag and exit
code 2, before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from absl import flags

from keras_reuse.commands.model_flags import define_model_flags

FLAGS = flags.FLAGS
define_model_flags()
flags.DEFINE_string("dataset", "fashion_mnist", "TFDS image-classification dataset name.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: $TFDS_DATA_DIR).")
flags.DEFINE_integer("epochs", 300, "Epochs (the LruNet paper: 300).")
flags.DEFINE_integer("batch_size", 256, "Global batch size.")
flags.DEFINE_float("learning_rate", 0.1, "Base learning rate.")
flags.DEFINE_float("weight_decay", 5e-4, "L2 added to the gradient (PyTorch's weight_decay).")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_string(
    "schedule", "step", "step (/10 at 2/3 and 5/6 of the epochs), cosine or constant."
)
flags.DEFINE_string("mixed_precision", "float32", "auto, float32, mixed_float16 or mixed_bfloat16.")
flags.DEFINE_string("strategy", "default", "default, mirrored or multi_worker (uses TF_CONFIG).")
flags.DEFINE_integer(
    "cpu_devices", 1, "Split the CPU into this many logical devices (mirrored on a CPU)."
)
flags.DEFINE_string("output_dir", "runs/default", "Where the model, logs and results go.")
flags.DEFINE_boolean("resume", False, "Continue the run in --output_dir from its last epoch.")
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: one pass).")
flags.DEFINE_integer("max_train_examples", None, "Train on the first N examples only.")
flags.DEFINE_integer("max_eval_examples", None, "Evaluate on the first N test examples only.")
flags.DEFINE_boolean("export_tflite", False, "Also export model.tflite.")
flags.DEFINE_integer("seed", 0, "Random seed (weights, shuffling, augmentation).")


def _fail(message: str) -> None:
    print(f"keras-reuse train: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.cpu_devices < 1:
        _fail(f"--cpu_devices={FLAGS.cpu_devices}: must be an integer >= 1")

    from keras_reuse import distribute, training

    if FLAGS.cpu_devices > 1:
        distribute.split_cpu(FLAGS.cpu_devices)
    # Every TrainConfig field but `verbose` is a flag of the same name.
    fields = [f.name for f in dataclasses.fields(training.TrainConfig) if f.name != "verbose"]
    config = training.TrainConfig(**{name: FLAGS[name].value for name in fields})
    try:
        results = training.train(config)
    except training.ConfigError as error:
        _fail(str(error))
    print(
        f"test accuracy {results['test_accuracy']:.4f} after {results['epochs_completed']} "
        f"epoch(s); model: {results['model_path']}; results: "
        f"{results['model_path'].rsplit('/', 1)[0]}/results.json"
    )
    print(json.dumps({k: results[k] for k in ("test_accuracy", "images_per_sec")}))

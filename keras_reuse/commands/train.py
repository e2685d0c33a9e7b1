"""`keras-reuse train`: absl flags -> `TrainConfig` -> `keras_reuse.training.train`.

Bad flags end the program with a one-line error naming the flag and exit
code 2, before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from absl import flags

from keras_reuse.commands.model_flags import (
    config_values,
    define_model_flags,
    define_named_recipe_flag,
    define_recipe_flags,
)

FLAGS = flags.FLAGS
define_named_recipe_flag()
define_model_flags()
define_recipe_flags(epochs=300)
flags.DEFINE_string("strategy", "default", "default, mirrored or multi_worker (uses TF_CONFIG).")
flags.DEFINE_integer(
    "cpu_devices", 1, "Split the CPU into this many logical devices (mirrored on a CPU)."
)
flags.DEFINE_string("output_dir", "runs/default", "Where the model, logs and results go.")
flags.DEFINE_boolean("resume", False, "Continue the run in --output_dir from its last epoch.")
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
    try:
        config = training.TrainConfig(**config_values(FLAGS, fields))
        results = training.train(config)
    except training.ConfigError as error:
        _fail(str(error))
    except OSError as error:  # a write the OS refused (full disk, read-only)
        print(f"keras-reuse train: error: {error}", file=sys.stderr)
        sys.exit(1)
    print(
        f"test accuracy {results['test_accuracy']:.4f} after {results['epochs_completed']} "
        f"epoch(s); model: {results['model_path']}; results: "
        f"{results['model_path'].rsplit('/', 1)[0]}/results.json"
    )
    if "paper_test_accuracy" in results:
        print(
            f"recipe {results['recipe']}: {100 * results['test_accuracy']:.2f}% here; "
            f"the full recipe {results['paper_recipe']} (300 epochs) reaches "
            f"{100 * results['paper_test_accuracy']:.2f}% (the authors' published checkpoint)"
        )
    print(json.dumps({k: results[k] for k in ("test_accuracy", "images_per_sec")}))

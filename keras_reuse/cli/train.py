"""`keras-reuse train`: absl flags -> `TrainConfig` -> `keras_reuse.training.train`.

The flags are generated from `TrainConfig`'s fields and the registered
models' keyword arguments (`keras_reuse.cli.flags`);
`--config=run/config.json` starts from a saved run's spec.

Bad flags end the program with a one-line error naming the flag and exit
code 2, before anything is written.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags

from keras_reuse.cli.common import check_no_arguments
from keras_reuse.cli.flags import (
    config_from_flags,
    define_config_file_flag,
    define_config_flags,
    define_model_flags,
)

FLAGS = flags.FLAGS
define_config_file_flag()
# One flag per TrainConfig field and per keyword of a registered model.
_NAMES = [*define_config_flags(), *define_model_flags()]
flags.DEFINE_integer(
    "cpu_devices", 1, "Split the CPU into this many logical devices (mirrored on a CPU)."
)


def main(argv: list[str]) -> None:
    check_no_arguments(argv)
    if FLAGS.cpu_devices < 1:
        raise app.UsageError(f"--cpu_devices={FLAGS.cpu_devices}: must be an integer >= 1")

    # Lazy: the trainer and TFDS load only after the flags have parsed.
    from keras_reuse import training
    from keras_reuse.training import distribute

    if FLAGS.cpu_devices > 1:
        distribute.split_cpu(FLAGS.cpu_devices)
    try:
        results = training.train(config_from_flags(FLAGS, _NAMES))
    except training.ConfigError as error:
        raise app.UsageError(error.flag_message()) from error
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

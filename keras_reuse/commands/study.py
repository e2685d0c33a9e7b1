"""`keras-reuse study`: the layer-reuse study from the command line.

  keras-reuse study --dataset=fashion_mnist --reuse=1,2,4,8,10 --epochs=N \
      --output_dir=runs/layer_reuse_study

trains LruNet at every reuse count with the same budget and seed and writes
the CSV and PNG plots of `keras_reuse.study`. Budget flags are the
`keras-reuse train` flags of the same name. Bad flags end the program with
a one-line error naming the flag and exit code 2, before anything is
written.
"""

from __future__ import annotations

import sys

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_list("reuse", ["1", "2", "4", "8", "10"], "Reuse counts N to train, e.g. 1,2,4,8,10.")
flags.DEFINE_string("dataset", "fashion_mnist", "TFDS image-classification dataset name.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: $TFDS_DATA_DIR).")
flags.DEFINE_string("output_dir", "runs/layer_reuse_study", "Where runs, CSV and plots go.")
flags.DEFINE_boolean("resume", False, "Continue the study in --output_dir.")
flags.DEFINE_integer("epochs", 10, "Epochs of every run.")
flags.DEFINE_integer("batch_size", 256, "Batch size.")
flags.DEFINE_float("learning_rate", 0.1, "Base learning rate.")
flags.DEFINE_float("weight_decay", 5e-4, "L2 added to the gradient (PyTorch's weight_decay).")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_string(
    "schedule", "step", "step (/10 at 2/3 and 5/6 of the epochs), cosine or constant."
)
flags.DEFINE_float("width_multiplier", None, "LruNet width multiplier (default 1).")
flags.DEFINE_float("dropout", None, "Dropout before the classifier (default 0.5).")
flags.DEFINE_string("mixed_precision", "float32", "auto, float32, mixed_float16 or mixed_bfloat16.")
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: one pass).")
flags.DEFINE_integer("max_train_examples", None, "Train on the first N examples only.")
flags.DEFINE_integer("max_eval_examples", None, "Evaluate on the first N test examples only.")
flags.DEFINE_integer("seed", 0, "Random seed, the same for every run.")
flags.DEFINE_integer("verbose", 2, "Keras fit verbosity: 0, 1 (progress bar) or 2 (per epoch).")

# Flags that are `TrainConfig` fields of the same name.
_CONFIG_FLAGS = (
    "dataset",
    "data_dir",
    "epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "momentum",
    "schedule",
    "width_multiplier",
    "dropout",
    "mixed_precision",
    "steps_per_epoch",
    "max_train_examples",
    "max_eval_examples",
    "seed",
    "verbose",
)


def _fail(message: str) -> None:
    print(f"keras-reuse study: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    text = ",".join(FLAGS.reuse)
    try:
        reuse = [int(v) for v in FLAGS.reuse]
    except ValueError:
        _fail(f"--reuse={text}: expected integers >= 1, e.g. 1,2,4,8,10")
    if not reuse or min(reuse) < 1:
        _fail(f"--reuse={text}: expected integers >= 1, e.g. 1,2,4,8,10")
    if len(set(reuse)) != len(reuse):
        _fail(f"--reuse={text}: a reuse count is repeated")

    from keras_reuse import study, training

    config = training.TrainConfig(
        model="lrunet", **{name: FLAGS[name].value for name in _CONFIG_FLAGS}
    )
    try:
        result = study.run_study(reuse, FLAGS.output_dir, config, resume=FLAGS.resume)
    except training.ConfigError as error:
        _fail(str(error))
    print(study.format_table(result.rows))
    print(f"table: {result.csv_path}")
    print(f"plots: {', '.join(result.plots.values())}")

"""`keras-reuse study`: the layer-reuse study from the command line.

  keras-reuse study --dataset=fashion_mnist --reuse=1,2,4,10 --seeds=0,1 --epochs=N \
      --output_dir=runs/layer_reuse_study

trains LruNet at every reuse count and seed with the same budget (and, with
`--unshared=10`, the unshared LruNet-10 as a control arm) and writes
the CSVs (final and per-epoch test accuracy) and PNG plots of
`keras_reuse.experiments.study`, printing its progress; `--resume` continues a killed
study from the last completed epoch. Budget flags are the
`keras-reuse train` flags of the same name. Bad flags end the program with
a one-line error naming the flag and exit code 2, before anything is
written.
"""

from __future__ import annotations

from absl import app, flags

from keras_reuse.cli.common import check_no_arguments, distinct_integers
from keras_reuse.cli.flags import (
    config_from_flags,
    define_config_file_flag,
    define_config_flags,
    define_model_flags,
)

FLAGS = flags.FLAGS
flags.DEFINE_list("reuse", ["1", "2", "4", "8", "10"], "Reuse counts N to train, e.g. 1,2,4,8,10.")
flags.DEFINE_string("output_dir", "runs/layer_reuse_study", "Where runs, CSV and plots go.")
flags.DEFINE_boolean("resume", False, "Continue the study in --output_dir.")
flags.DEFINE_list("seeds", ["0"], "Seeds to train every N with, e.g. 0,1.")
flags.DEFINE_list(
    "unshared",
    [],
    "Reuse counts N (>= 2) to train as control arms too: the unshared network "
    "(keras_reuse.unshare(LruNet(N))), the same depth and compute with a fresh layer "
    "at every call, e.g. 10.",
)
flags.DEFINE_integer("verbose", 2, "Keras fit verbosity: 0, 1 (progress bar) or 2 (per epoch).")
define_config_file_flag()
# The budget: every TrainConfig field the study does not set per run, and
# LruNet's arguments but the reuse count.
_NAMES = [
    *define_config_flags(
        exclude=(
            "model",
            "unshare",
            "output_dir",
            "resume",
            "seed",
            "recipe",
            "strategy",
            "export_tflite",
        ),
        defaults={"epochs": 10},
    ),
    *define_model_flags(models=["lrunet"], exclude=("layer_reuse",)),
]


def main(argv: list[str]) -> None:
    check_no_arguments(argv)
    reuse = distinct_integers("reuse", FLAGS.reuse, 1, "1,2,4,8,10")
    seeds = distinct_integers("seeds", FLAGS.seeds, None, "0,1")
    unshared = distinct_integers("unshared", FLAGS.unshared, 2, "10") if FLAGS.unshared else []

    # Lazy: the trainer and TFDS load only after the flags have parsed.
    from keras_reuse import training
    from keras_reuse.experiments import study

    try:
        config = config_from_flags(FLAGS, _NAMES, seed=seeds[0], verbose=FLAGS.verbose)
        result = study.run_study(
            reuse,
            FLAGS.output_dir,
            config,
            resume=FLAGS.resume,
            seeds=seeds,
            progress=lambda line: print(f"study {line}", flush=True),
            unshared=unshared,
        )
    except training.ConfigError as error:
        raise app.UsageError(error.flag_message()) from error
    print(study.format_table(result.rows))
    print(study.format_summary(result.rows))
    differences = study.format_differences(result.rows)
    if differences:
        print(differences)
    print(f"table: {result.csv_path}")
    print(f"per-epoch table: {result.epochs_csv_path}")
    print(f"plots: {', '.join(result.plots.values())}")

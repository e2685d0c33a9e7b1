"""`keras-reuse study`: the layer-reuse study from the command line.

  keras-reuse study --dataset=fashion_mnist --reuse=1,2,4,10 --seeds=0,1 --epochs=N \
      --output_dir=runs/layer_reuse_study

trains LruNet at every reuse count and seed with the same budget and writes
the CSVs (final and per-epoch test accuracy) and PNG plots of
`keras_reuse.study`, printing its progress; `--resume` continues a killed
study from the last completed epoch. Budget flags are the
`keras-reuse train` flags of the same name. Bad flags end the program with
a one-line error naming the flag and exit code 2, before anything is
written.
"""

from __future__ import annotations

import sys

from absl import flags

from keras_reuse.commands.model_flags import (
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
flags.DEFINE_integer("verbose", 2, "Keras fit verbosity: 0, 1 (progress bar) or 2 (per epoch).")
define_config_file_flag()
# The budget: every TrainConfig field the study does not set per run, and
# LruNet's arguments but the reuse count.
_NAMES = [
    *define_config_flags(
        exclude=("model", "output_dir", "resume", "seed", "recipe", "strategy", "export_tflite"),
        defaults={"epochs": 10},
    ),
    *define_model_flags(models=["lrunet"], exclude=("layer_reuse",)),
]


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

    seeds_text = ",".join(FLAGS.seeds)
    try:
        seeds = [int(v) for v in FLAGS.seeds]
    except ValueError:
        _fail(f"--seeds={seeds_text}: expected integers, e.g. 0,1")
    if not seeds:
        _fail(f"--seeds={seeds_text}: expected integers, e.g. 0,1")
    if len(set(seeds)) != len(seeds):
        _fail(f"--seeds={seeds_text}: a seed is repeated")

    from keras_reuse import study, training

    try:
        config = config_from_flags(FLAGS, _NAMES, seed=seeds[0], verbose=FLAGS.verbose)
        result = study.run_study(
            reuse,
            FLAGS.output_dir,
            config,
            resume=FLAGS.resume,
            seeds=seeds,
            progress=lambda line: print(f"study {line}", flush=True),
        )
    except training.ConfigError as error:
        _fail(error.flag_message())
    print(study.format_table(result.rows))
    print(study.format_summary(result.rows))
    print(f"table: {result.csv_path}")
    print(f"per-epoch table: {result.epochs_csv_path}")
    print(f"plots: {', '.join(result.plots.values())}")

"""`keras-reuse tune`: absl flags -> `keras_reuse.tuning.search`.

  keras-reuse tune --model=lrunet --dataset=fashion_mnist --tuner=random --max_trials=10 \
      --epochs=5 --layer_reuse=1,2,4,8 --learning_rate=0.01,0.2 --output_dir=runs/tune

Search-space flags take one value (fixed) or the values to search: a list
of choices for --layer_reuse, --width_multiplier, --share, --depth and
--width, a `min,max` range for --dropout and --learning_rate. Unset ones
keep the HyperModel's default space. Bad flags end the program with a
one-line error naming the flag and exit code 2, before anything is written.
"""

from __future__ import annotations

import json
import re
import sys

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lrunet", "What to tune: lrunet or sharesnet (Wide ShaResNet).")
flags.DEFINE_string("dataset", "fashion_mnist", "TFDS image-classification dataset name.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: $TFDS_DATA_DIR).")
flags.DEFINE_string("tuner", "random", "random, bayesian or hyperband.")
flags.DEFINE_integer("max_trials", 10, "Trials to run (not hyperband).")
flags.DEFINE_integer("epochs", 10, "Epochs per trial (hyperband: at most).")
flags.DEFINE_integer("batch_size", 256, "Batch size.")
flags.DEFINE_integer("train_examples", None, "Training examples (default: all but validation).")
flags.DEFINE_integer(
    "validation_examples", 5000, "Examples held out of the train split to score trials."
)
flags.DEFINE_string("output_dir", "runs/tune", "Where best.json, trials.csv and tuner/ go.")
flags.DEFINE_boolean("overwrite", False, "Start afresh instead of continuing a search.")
flags.DEFINE_integer("seed", 0, "Seed of the tuner, the data order and the weights.")
flags.DEFINE_integer("verbose", 1, "0: quiet, 1: progress, 2: one line per epoch.")
# Search space.
flags.DEFINE_list("layer_reuse", None, "lrunet: reuse counts to search, e.g. 1,2,4,8.")
flags.DEFINE_list("width_multiplier", None, "lrunet: width multipliers, e.g. 0.5,1.")
flags.DEFINE_list("share", None, "sharesnet: true, false or true,false.")
flags.DEFINE_list("depth", None, "sharesnet: depths (6n+4), e.g. 10,16,22.")
flags.DEFINE_list("width", None, "sharesnet: width factors, e.g. 1,2.")
flags.DEFINE_list("dropout", None, "Dropout: a value or min,max.")
flags.DEFINE_list("learning_rate", None, "Learning rate: a value or min,max (log-uniform).")

_SPACE = {
    "layer_reuse": int,
    "width_multiplier": float,
    "share": "bool",
    "depth": int,
    "width": int,
    "dropout": float,
    "learning_rate": float,
}
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _fail(message: str) -> None:
    print(f"keras-reuse tune: error: {message}", file=sys.stderr)
    sys.exit(2)


def _flag_error(error: ValueError) -> str:
    """`--flag=value: reason` for a library error about one of this command's arguments."""
    message = str(error)
    # keras_reuse.tuning's errors begin with the argument's name in backquotes.
    match = re.match(r"`(\w+)`", message)
    name = match.group(1) if match and match.group(1) in FLAGS else None
    if name is None and "dataset" in message.lower():  # keras_reuse.data's errors
        name = "dataset"
    if name is None:
        return message
    value = FLAGS[name].value
    value = ",".join(value) if isinstance(value, list) else value
    return f"--{name}={value}: {message}"


def _parse(name: str, kind, texts: list[str]):
    try:
        if kind == "bool":
            values = [_BOOLS[t.strip().lower()] for t in texts]
        else:
            values = [kind(t) for t in texts]
    except (KeyError, ValueError):
        what = "true or false" if kind == "bool" else f"{kind.__name__} values"
        _fail(f"--{name}={','.join(texts)}: expected {what}")
    if not values:
        _fail(f"--{name}=: expected at least one value")
    return values[0] if len(values) == 1 else tuple(values)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    space = {
        name: _parse(name, kind, FLAGS[name].value)
        for name, kind in _SPACE.items()
        if FLAGS[name].value is not None
    }

    from keras_reuse import tuning

    try:
        result = tuning.search(
            model=FLAGS.model,
            dataset=FLAGS.dataset,
            output_dir=FLAGS.output_dir,
            tuner=FLAGS.tuner,
            max_trials=FLAGS.max_trials,
            epochs=FLAGS.epochs,
            batch_size=FLAGS.batch_size,
            train_examples=FLAGS.train_examples,
            validation_examples=FLAGS.validation_examples,
            space=space,
            seed=FLAGS.seed,
            overwrite=FLAGS.overwrite,
            data_dir=FLAGS.data_dir,
            verbose=FLAGS.verbose,
        )
    except ValueError as error:
        _fail(_flag_error(error))
    print(f"{len(result.trials)} trial(s); best val_accuracy {result.best_score:.4f} with")
    print(json.dumps(result.best_hyperparameters))
    with open(result.best_path) as f:
        print(f"retrain: {json.load(f)['train_command']}")
    print(f"table: {result.trials_path}; best: {result.best_path}")

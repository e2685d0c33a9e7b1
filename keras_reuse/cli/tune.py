"""`keras-reuse tune`: absl flags -> `keras_reuse.experiments.tuning.search`.

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
import typing

from absl import app, flags

from keras_reuse.cli.common import check_no_arguments
from keras_reuse.cli.flags import define_config_flags
from keras_reuse.experiments.tuning import HYPERMODELS, space_keys
from keras_reuse.training.config import docstring_args, flag_kind

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lrunet", "What to tune: lrunet or sharesnet (Wide ShaResNet).")
# The fields a trial shares with `keras-reuse train`, from its spec.
define_config_flags(
    only=("dataset", "data_dir", "epochs", "batch_size", "seed"),
    defaults={"epochs": 10},
    helps={
        "epochs": "Epochs per trial (hyperband: at most).",
        "seed": "Seed of the tuner, the data order and the weights.",
    },
)
flags.DEFINE_string("tuner", "random", "random, bayesian or hyperband.")
flags.DEFINE_integer("max_trials", 10, "Trials to run (not hyperband).")
flags.DEFINE_integer("train_examples", None, "Training examples (default: all but validation).")
flags.DEFINE_integer(
    "validation_examples", 5000, "Examples held out of the train split to score trials."
)
flags.DEFINE_string("output_dir", "runs/tune", "Where best.json, trials.csv and tuner/ go.")
flags.DEFINE_boolean("overwrite", False, "Start afresh instead of continuing a search.")
flags.DEFINE_integer("verbose", 1, "0: quiet, 1: progress, 2: one line per epoch.")


def _space_kinds() -> dict[str, type]:
    """Search argument -> kind, from the HyperModels' signatures (momentum and L2 are fixed)."""
    kinds: dict[str, type] = {}
    for model, hypermodel in HYPERMODELS.items():
        hints = typing.get_type_hints(hypermodel.__init__)
        for name in space_keys(model):
            if name not in ("momentum", "weight_decay"):
                kinds[name] = flag_kind(hints[name])
    return kinds


# Search space: one list flag per search argument of a HyperModel.
_SPACE = _space_kinds()
for _name in _SPACE:
    _helps = {
        model: docstring_args(hypermodel).get(_name)
        for model, hypermodel in HYPERMODELS.items()
        if _name in space_keys(model)
    }
    flags.DEFINE_list(
        _name,
        None,
        "; ".join(f"{model}: {text.rstrip('.')}" for model, text in _helps.items())
        + "."
        + " A value, or the values to search (choices; min,max for a range).",
    )
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _flag_error(error: ValueError) -> str:
    """`--flag=value: reason` for a library error about one of this command's arguments."""
    message = str(error)
    # keras_reuse.experiments.tuning's errors begin with the argument's name in backquotes.
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
        if kind is bool:
            values = [_BOOLS[t.strip().lower()] for t in texts]
        else:
            values = [kind(t) for t in texts]
    except (KeyError, ValueError):
        what = "true or false" if kind is bool else f"{kind.__name__} values"
        raise app.UsageError(f"--{name}={','.join(texts)}: expected {what}") from None
    if not values:
        raise app.UsageError(f"--{name}=: expected at least one value")
    return values[0] if len(values) == 1 else tuple(values)


def main(argv: list[str]) -> None:
    check_no_arguments(argv)
    space = {
        name: _parse(name, kind, FLAGS[name].value)
        for name, kind in _SPACE.items()
        if FLAGS[name].value is not None
    }

    # Lazy: the trainer and TFDS load only after the flags have parsed.
    from keras_reuse.experiments import tuning

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
        raise app.UsageError(_flag_error(error)) from error
    print(f"{len(result.trials)} trial(s); best val_accuracy {result.best_score:.4f} with")
    print(json.dumps(result.best_hyperparameters))
    with open(result.best_path) as f:
        print(f"retrain: {json.load(f)['train_command']}")
    print(f"table: {result.trials_path}; best: {result.best_path}")

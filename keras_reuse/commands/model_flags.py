"""absl flags shared by the subcommands that build and train a model.

`define_model_flags()` declares the architecture flags and
`model_kwargs(FLAGS, constructor)` turns the ones a constructor accepts into
its keyword arguments; `define_recipe_flags()` declares the data and
training-recipe flags that are `TrainConfig` fields of the same name;
`define_named_recipe_flag()` declares `--recipe` and `config_values()` reads
the flags with a named recipe's values under the ones given explicitly.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags

from keras_reuse.applications import list_models

# Flag name -> constructor keyword it feeds.
_MODEL_FLAGS = ("layer_reuse", "width_multiplier", "dropout", "share", "depth", "width")


def define_model_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Declares --model and the architecture flags."""
    # A string, not an enum: a bad name is reported by the subcommand as a
    # one-line usage error (exit code 2) instead of absl's parse failure.
    flags.DEFINE_string(
        "model",
        "lrunet",
        f"Model name, one of: {', '.join(list_models())}.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "layer_reuse",
        None,
        "LruNet: reuses per stage (default: the model's).",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "width_multiplier", None, "LruNet: width multiplier.", flag_values=flag_values
    )
    flags.DEFINE_float("dropout", None, "Dropout rate of the model.", flag_values=flag_values)
    flags.DEFINE_boolean(
        "share",
        None,
        "ShaResNets: share 3x3 convs (--noshare: plain ResNet).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer("depth", None, "Wide ShaResNet: depth (6n+4).", flag_values=flag_values)
    flags.DEFINE_integer("width", None, "Wide ShaResNet: width factor.", flag_values=flag_values)


def model_kwargs(flag_values: flags.FlagValues, constructor: Callable) -> dict[str, Any]:
    """Returns the set architecture flags as `constructor` keyword arguments.

    Raises:
        flags.ValidationError: if a flag is set that the model does not take.
    """
    accepted = inspect.signature(constructor).parameters
    kwargs = {}
    for name in _MODEL_FLAGS:
        value = flag_values[name].value
        if value is None:
            continue
        if name not in accepted:
            raise flags.ValidationError(
                f"--{name}={value} does not apply to --model={flag_values.model}"
            )
        kwargs[name] = value
    return kwargs


def define_recipe_flags(epochs: int, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Declares the dataset and training-recipe flags, the papers' recipe as defaults.

    Args:
        epochs: Default of --epochs.
        flag_values: Where to declare them.
    """

    def define(kind: Callable, name: str, default: Any, help_text: str) -> None:
        kind(name, default, help_text, flag_values=flag_values)

    define(flags.DEFINE_string, "dataset", "fashion_mnist", "TFDS image-classification dataset.")
    define(flags.DEFINE_string, "data_dir", None, "TFDS data directory (default: $TFDS_DATA_DIR).")
    define(flags.DEFINE_integer, "epochs", epochs, "Epochs (the LruNet paper: 300).")
    define(flags.DEFINE_integer, "batch_size", 256, "Global batch size.")
    define(flags.DEFINE_float, "learning_rate", 0.1, "Base learning rate.")
    define(flags.DEFINE_float, "weight_decay", 5e-4, "L2 added to the gradient (PyTorch's).")
    define(flags.DEFINE_float, "momentum", 0.9, "SGD momentum.")
    define(
        flags.DEFINE_string,
        "schedule",
        "step",
        "step (/10 at 2/3 and 5/6 of the epochs), cosine or constant.",
    )
    define(
        flags.DEFINE_string,
        "mixed_precision",
        "float32",
        "auto, float32, mixed_float16 or mixed_bfloat16.",
    )
    define(
        flags.DEFINE_float,
        "warmup_epochs",
        0.0,
        "Linear learning-rate warm-up from 0 over this many epochs (with --schedule=cosine).",
    )
    define(
        flags.DEFINE_integer,
        "precise_bn_batches",
        0,
        "Before every evaluation, set BatchNorm statistics to their population values "
        "over this many training batches (precise BN; 0: off).",
    )
    define(flags.DEFINE_integer, "steps_per_epoch", None, "Steps per epoch (default: one pass).")
    define(flags.DEFINE_integer, "max_train_examples", None, "Train on the first N examples only.")
    define(
        flags.DEFINE_integer,
        "max_eval_examples",
        None,
        "Evaluate on the first N test examples only.",
    )


def define_named_recipe_flag(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Declares --recipe (`keras_reuse.recipes`); a string, checked by the subcommand."""
    from keras_reuse.recipes import RECIPES

    flags.DEFINE_string(
        "recipe",
        None,
        "Named recipe; flags given explicitly override its values. One of: "
        + "; ".join(f"{r.name} ({r.description})" for r in RECIPES.values())
        + ".",
        flag_values=flag_values,
    )


def config_values(flag_values: flags.FlagValues, names: Sequence[str]) -> dict[str, Any]:
    """The values of flags `names`, with --recipe's values where a flag was not given.

    Raises:
        keras_reuse.training.ConfigError: for an unknown --recipe.
    """
    values = {name: flag_values[name].value for name in names}
    recipe = values.get("recipe")
    if recipe is not None:
        from keras_reuse import recipes

        for name, value in recipes.values(recipe).items():
            if name in values and not flag_values[name].present:
                values[name] = value
    return values

"""absl flags that describe a model, shared by the subcommands that build one.

`define_model_flags()` declares them; `model_kwargs(FLAGS, constructor)`
turns the ones a constructor accepts into its keyword arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
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

"""absl flags generated from the run specification, for `train`, `study` and `tune`.

`define_config_flags()` declares one flag per `TrainConfig` field (type,
default and help from the field), `define_model_flags()` one per keyword
argument of the registered constructors (`keras_reuse.training.config.model_arguments`),
so a new field or constructor keyword is a new flag with no edit here.
`config_from_flags()` reads them back into a `TrainConfig`: the flags'
defaults, under a `--config` file's values, under `--recipe`'s, under the
flags given explicitly.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from absl import flags

from keras_reuse.applications import list_models
from keras_reuse.training import config as spec

_DEFINE = {
    bool: flags.DEFINE_boolean,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    str: flags.DEFINE_string,
}


def _extra_help(name: str) -> str:
    """What a field's help gains on the command line: the values it takes."""
    if name == "model":
        return f" One of: {', '.join(list_models())}."
    if name == "recipe":
        # Lazy: the recipes' table is read only for --help.
        from keras_reuse.training.recipes import RECIPES

        return (
            " Flags given explicitly override its values. One of: "
            + "; ".join(f"{r.name} ({r.description})" for r in RECIPES.values())
            + "."
        )
    return ""


def config_flag_fields() -> list[dataclasses.Field]:
    """The `TrainConfig` fields that are flags (all but `model_args` and `verbose`)."""
    return [f for f in dataclasses.fields(spec.TrainConfig) if f.metadata.get("flag", True)]


def define_config_flags(
    flag_values: flags.FlagValues = flags.FLAGS,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
    helps: Mapping[str, str] | None = None,
) -> list[str]:
    """Declares a flag for each `TrainConfig` field.

    Args:
        flag_values: Where to declare them.
        only: Declare these fields only (default: every flag field).
        exclude: Fields not to declare.
        defaults: Field -> a default other than the field's.
        helps: Field -> a help text other than the field's.

    Returns:
        The names declared.
    """
    hints = typing.get_type_hints(spec.TrainConfig)
    defaults, helps = dict(defaults or {}), dict(helps or {})
    wanted = None if only is None else set(only)
    declared = []
    field_help = spec.field_help()
    for field in config_flag_fields():
        name = field.name
        if name in exclude or (wanted is not None and name not in wanted):
            continue
        help_text = helps.get(name) or field_help.get(name, name) + _extra_help(name)
        kind = spec.flag_kind(hints[name])
        _DEFINE[kind](name, defaults.get(name, field.default), help_text, flag_values=flag_values)
        declared.append(name)
    return declared


def define_model_flags(
    flag_values: flags.FlagValues = flags.FLAGS,
    models: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
) -> list[str]:
    """Declares a flag for each keyword argument of the registered constructors.

    Every flag defaults to None, which leaves the model's own default.

    Args:
        flag_values: Where to declare them.
        models: The registered models whose arguments to declare (default: all).
        exclude: Arguments not to declare.

    Returns:
        The names declared.
    """
    declared = []
    for name, argument in spec.model_arguments(models).items():
        if name in exclude:
            continue
        help_text = f"{', '.join(argument.models)}: {argument.help} Default: the model's."
        _DEFINE[argument.kind](name, None, help_text, flag_values=flag_values)
        declared.append(name)
    return declared


def define_config_file_flag(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Declares --config: a saved spec (a run's config.json or results.json)."""
    flags.DEFINE_string(
        "config",
        None,
        "A run's config.json (or results.json) to start from; --recipe and the flags "
        "given explicitly override its values.",
        flag_values=flag_values,
    )


def config_from_flags(
    flag_values: flags.FlagValues, names: Iterable[str], **fixed: Any
) -> spec.TrainConfig:
    """The `TrainConfig` that flags `names` (config fields and model arguments) say.

    Layers, lowest first: the flags' defaults; the `--config` file's values
    (if that flag is declared and set); `--recipe`'s values (if given on the
    command line); the flags given explicitly. Model-argument flags left at
    None are left out (the model's own default).

    Args:
        flag_values: The parsed flags.
        names: The flags to read.
        **fixed: Fields the command sets itself, over everything else.

    Returns:
        The config, not yet validated.

    Raises:
        keras_reuse.training.config.ConfigError: for an unreadable --config file, an
            unknown --recipe, or a name that is not a field nor a model argument.
    """
    names = list(names)
    model_args = spec.model_arguments()
    values = {
        n: flag_values[n].value
        for n in names
        if not (n in model_args and flag_values[n].value is None)
    }
    if "config" in flag_values and flag_values["config"].value is not None:
        saved = spec.load_config(flag_values["config"].value).to_dict()
        values.update({k: v for k, v in saved.items() if k != "model_args"})
        values.update(saved["model_args"])
    if "recipe" in flag_values and flag_values["recipe"].present:
        # Lazy: loaded only with --recipe.
        from keras_reuse.training import recipes

        values.update(recipes.values(flag_values["recipe"].value))
    values.update({n: flag_values[n].value for n in names if flag_values[n].present})
    return spec.TrainConfig.from_values({**values, **fixed})

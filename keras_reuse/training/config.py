"""The run specification: `TrainConfig`, its checks, and its JSON form.

One typed dataclass says everything a training run needs. Its fields are
the recipe (data, optimisation, run), each with its help text; the model is
a registered name and `model_args`, keyword arguments of that model's
constructor, checked once against the constructor's signature. The command
lines (`keras_reuse.cli.flags`) generate their absl flags from
these fields and from the registered constructors (`model_arguments()`),
so a new field or a new constructor keyword is a new flag with no other
edit. `config.json` and results.json hold `TrainConfig.to_dict()`;
`load_config(path)` reads either back, so a saved spec reproduces a run.

Errors are `ConfigError`s naming the field and the value ("epochs=0: must
be an integer >= 1"); the command lines turn them into `--epochs=0: ...`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

from keras_reuse import applications
from keras_reuse.training import distribute, precision, recipes
from keras_reuse.training.errors import ConfigError
from keras_reuse.utils import checks

SCHEDULES = ("step", "cosine", "constant")
# Constructor keywords that the run itself decides (keras.applications' set):
# the rest of a constructor's public keywords are model arguments.
_RUN_DECIDES = frozenset(
    (
        "num_classes",
        "input_shape",
        "input_tensor",
        "include_top",
        "pooling",
        "weights",
        "classifier_activation",
        "name",
        # The data pipeline's images are channels last.
        "data_format",
        # Layer classes, for benchmarks and tests: not a flag.
        "layer_types",
    )
)
# What defines the trained network: a resumed run must not change it.
MODEL_FIELDS = ("model", "dataset", "model_args", "unshare", "mixed_precision")


def _field(default: Any, flag: bool = True) -> Any:
    # A field's help is its entry in TrainConfig's Attributes (`field_help`).
    return dataclasses.field(default=default, metadata={"flag": flag})


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; field names equal the CLI flags.

    `model_args` holds the keyword arguments of the registered constructor
    `model` (e.g. `{"layer_reuse": 2}`); arguments left out take the
    model's own defaults. `from_values` builds a config from one flat
    mapping of fields and model arguments, as the command lines and
    `keras_reuse.training.recipes` write them.

    Attributes:
        model: Registered model name (`keras_reuse.list_models()`).
        model_args: Keyword arguments of the model's constructor.
        unshare: Train the unshared network (`keras_reuse.unshare`): a fresh
            layer at every call of a shared one, the same depth and compute.
        dataset: TFDS image-classification dataset.
        data_dir: TFDS data directory (default: $TFDS_DATA_DIR).
        output_dir: Where the model, logs and results go.
        epochs: Epochs (the LruNet paper: 300).
        batch_size: Global batch size.
        learning_rate: Base learning rate.
        weight_decay: L2 added to the gradient (PyTorch's).
        momentum: SGD momentum.
        schedule: step (/10 at 2/3 and 5/6 of the epochs), cosine or
            constant.
        warmup_epochs: Linear learning-rate warm-up from 0 over this many
            epochs (with --schedule=cosine).
        precise_bn_batches: Before every evaluation, set BatchNorm
            statistics to their population values over this many training
            batches (precise BN; 0: off).
        recipe: Named recipe (`keras_reuse.training.recipes`).
        mixed_precision: auto, float32, mixed_float16 or mixed_bfloat16.
        strategy: default, mirrored or multi_worker (uses TF_CONFIG).
        resume: Continue the run in --output_dir from its last epoch.
        steps_per_epoch: Steps per epoch (default: one pass).
        max_train_examples: Train on the first N examples only.
        max_eval_examples: Evaluate on the first N test examples only.
        export_tflite: Also export model.tflite.
        seed: Random seed (weights, shuffling, augmentation).
        verbose: Keras fit verbosity.
    """

    model: str = _field("lrunet")
    model_args: dict[str, Any] = dataclasses.field(default_factory=dict, metadata={"flag": False})
    unshare: bool = _field(False)
    dataset: str = _field("fashion_mnist")
    data_dir: str | None = _field(None)
    output_dir: str = _field("runs/default")
    epochs: int = _field(300)
    batch_size: int = _field(256)
    learning_rate: float = _field(0.1)
    weight_decay: float = _field(5e-4)
    momentum: float = _field(0.9)
    schedule: str = _field("step")
    warmup_epochs: float = _field(0.0)
    precise_bn_batches: int = _field(0)
    recipe: str | None = _field(None)
    mixed_precision: str = _field("float32")
    strategy: str = _field("default")
    resume: bool = _field(False)
    steps_per_epoch: int | None = _field(None)
    max_train_examples: int | None = _field(None)
    max_eval_examples: int | None = _field(None)
    export_tflite: bool = _field(False)
    seed: int | None = _field(0)
    # Output, not part of the run: no flag of `train` (Keras's "auto").
    verbose: int | str = _field("auto", flag=False)

    def model_kwargs(self) -> dict[str, Any]:
        """The model arguments, as constructor keyword arguments."""
        return dict(self.model_args)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form that `config.json` and results.json hold."""
        return dataclasses.asdict(self)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Builds a config from one flat mapping of fields and model arguments.

        Args:
            values: Field names and model-argument names (e.g. `layer_reuse`)
                with their values; a `model_args` mapping is merged in too,
                so `to_dict()`'s form and the files of earlier versions
                (model arguments beside the fields) both read back.

        Returns:
            The config. Model arguments are not checked here (`validate`).

        Raises:
            ConfigError: for a name that is neither a field nor an argument
                of a registered model.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        known_args = model_arguments()
        fields: dict[str, Any] = {}
        nested = values.get("model_args") or {}
        model_args = {k: v for k, v in nested.items() if v is not None}
        for name, value in values.items():
            if name == "model_args":
                continue
            if name in names:
                fields[name] = value
            elif name in known_args:
                if value is not None:  # None: the model's default
                    model_args[name] = value
            else:
                raise ConfigError(
                    name, value, "neither a TrainConfig field nor an argument of a registered model"
                )
        return cls(**fields, model_args=model_args)

    def difference(self, other: TrainConfig, names: Any = None) -> tuple[str, Any, Any] | None:
        """The first field or model argument where `other` differs.

        Args:
            other: The config compared with (e.g. a saved run's).
            names: The fields to compare (default: all); `model_args` is
                compared argument by argument.

        Returns:
            `(name, ours, theirs)`, or None if they agree.
        """
        for name in names or [f.name for f in dataclasses.fields(self)]:
            if name != "model_args":
                if getattr(self, name) != getattr(other, name):
                    return name, getattr(self, name), getattr(other, name)
                continue
            for arg in sorted(set(self.model_args) | set(other.model_args)):
                if self.model_args.get(arg) != other.model_args.get(arg):
                    return arg, self.model_args.get(arg), other.model_args.get(arg)
        return None


def load_config(path: str) -> TrainConfig:
    """Reads a saved spec: a run's `config.json`, or its results.json.

    Raises:
        ConfigError: naming `config` and the path, for a missing or
            unreadable file, or a key that is not a field.
    """
    try:
        with open(path) as f:
            saved = json.load(f)
    except OSError as error:
        raise ConfigError("config", path, error.strerror or str(error)) from error
    except ValueError as error:
        raise ConfigError("config", path, f"not JSON ({error})") from error
    if isinstance(saved, dict) and isinstance(saved.get("config"), dict):
        saved = saved["config"]  # results.json holds the config too
    if not isinstance(saved, dict):
        raise ConfigError("config", path, "holds no configuration object")
    try:
        return TrainConfig.from_values(saved)
    except ConfigError as error:
        raise ConfigError("config", path, f"{error.field}: {error.reason}") from error


# ------------------------------------------------------------ model arguments ---


@dataclasses.dataclass(frozen=True)
class ModelArgument:
    """A keyword argument that registered constructors take, as a flag sees it.

    Attributes:
        name: The keyword, also the flag's name.
        kind: `int`, `float`, `bool` or `str`.
        help: The first sentence of its docstring entry, with the models.
        models: The registered names whose constructors take it.
    """

    name: str
    kind: type
    help: str
    models: tuple[str, ...]


def flag_kind(annotation: Any) -> type | None:
    """bool, int, float or str for an annotation like `int` or `bool | None`, else None."""
    options = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    for kind in (bool, int, float, str):
        if kind in options:
            return kind
    return None


def docstring_args(
    fn: Callable, section: str = "Args", first_sentence: bool = True
) -> dict[str, str]:
    """Google-style entries of a docstring section of `fn`: name -> text.

    Args:
        fn: A function or class with a Google-style docstring.
        section: The section's heading ("Args", "Attributes").
        first_sentence: Keep each entry's first sentence only.

    Returns:
        Each entry's text, on one line.
    """
    doc = inspect.getdoc(fn) or ""
    heading = f"{section}:"
    part = doc.split(heading, 1)[1] if heading in doc else ""
    part = re.split(r"\n\S", part, maxsplit=1)[0]  # up to the next heading
    entries: dict[str, str] = {}
    for match in re.finditer(r"^    (\w+): (.*(?:\n {8,}.*)*)", part, re.MULTILINE):
        text = " ".join(match.group(2).split())
        if first_sentence:
            # Up to a period before a capital ("e.g. 10" goes on).
            text = re.split(r"(?<=\.)\s+(?=[A-Z`])", text, maxsplit=1)[0]
        entries[match.group(1)] = text
    return entries


def field_help() -> dict[str, str]:
    """Each `TrainConfig` field's help: its entry in the class's Attributes."""
    return docstring_args(TrainConfig, "Attributes", first_sentence=False)


def constructor_arguments(constructor: Callable) -> dict[str, inspect.Parameter]:
    """The model arguments of one constructor: its public keywords the run does not decide."""
    parameters = inspect.signature(constructor).parameters
    return {
        name: p
        for name, p in parameters.items()
        if name not in _RUN_DECIDES
        and not name.startswith("_")
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def model_arguments(models: Any = None) -> dict[str, ModelArgument]:
    """The keyword arguments of the registered constructors, for their flags.

    Args:
        models: Registered names to read (default: every registered model).

    Returns:
        Name -> `ModelArgument`, in the order the constructors list them.

    Raises:
        TypeError: if two constructors annotate one keyword with different kinds.
    """
    found: dict[str, ModelArgument] = {}
    for model in applications.list_models() if models is None else models:
        constructor = applications.get(model)
        hints = typing.get_type_hints(constructor)
        helps = docstring_args(constructor)
        for name in constructor_arguments(constructor):
            kind = flag_kind(hints.get(name)) or str
            known = found.get(name)
            if known is None:
                found[name] = ModelArgument(name, kind, helps.get(name, ""), (model,))
            elif known.kind is not kind:
                raise TypeError(
                    f"Model argument `{name}` is a {known.kind.__name__} of {known.models[0]} "
                    f"but a {kind.__name__} of {model}."
                )
            else:
                found[name] = dataclasses.replace(known, models=(*known.models, model))
    return found


_KIND_MESSAGES = {
    int: "must be an integer",
    float: "must be a number",
    bool: "must be True or False",
    str: "must be a string",
}


def check_model_args(model: str, model_args: Mapping[str, Any]) -> None:
    """Checks model arguments against the constructor's signature and annotations.

    Values are the constructor's to check (it does so when the model is built).

    Raises:
        ConfigError: naming an argument the model does not take, or one of
            the wrong type.
    """
    constructor = applications.get(model)
    accepted = constructor_arguments(constructor)
    hints = typing.get_type_hints(constructor)
    for name, value in model_args.items():
        if name not in accepted:
            raise ConfigError(name, value, f"does not apply to --model={model}")
        if value is None:
            continue  # the model's default
        kind = flag_kind(hints.get(name))
        if kind is None:
            continue  # not annotated with a kind we can check
        valid = {
            int: checks.is_int(value),
            float: checks.is_number(value),
            bool: isinstance(value, bool),
            str: isinstance(value, str),
        }[kind]
        if not valid:
            raise ConfigError(name, value, _KIND_MESSAGES[kind])


def constructor_error(error: ValueError, model: str, model_args: Mapping[str, Any]) -> ConfigError:
    """A constructor's ValueError as a `ConfigError` of the argument it names.

    Keras-style messages ("`layer_reuse` must be an integer >= 1. Received:
    layer_reuse=0") become the reason "must be an integer >= 1" of field
    `layer_reuse`; a message naming no model argument is about `model`.
    """
    message = str(error)
    for name, value in model_args.items():
        prefix = f"`{name}` "
        if message.startswith(prefix):
            reason = re.sub(r"\.?\s*Received: .*$", "", message[len(prefix) :], flags=re.DOTALL)
            return ConfigError(name, value, reason)
        if f"`{name}`" in message:
            return ConfigError(name, value, message)
    return ConfigError("model", model, message)


# ------------------------------------------------------------------ validate ---


def _check_int(field: str, value: Any, minimum: int = 1, optional: bool = False) -> None:
    try:
        checks.check_int(field, value, minimum, optional=optional)
    except ValueError:
        raise ConfigError(field, value, f"must be an integer >= {minimum}") from None


def validate(config: TrainConfig) -> None:
    """Checks the fields that can be checked without data or a model.

    Raises:
        ConfigError: naming the first invalid field and its value.
    """
    if config.model not in applications.list_models():
        raise ConfigError(
            "model", config.model, f"unknown model; one of {', '.join(applications.list_models())}"
        )
    if not isinstance(config.model_args, Mapping):
        raise ConfigError("model_args", config.model_args, "must be a mapping of keyword arguments")
    check_model_args(config.model, config.model_args)
    if not isinstance(config.unshare, bool):
        raise ConfigError("unshare", config.unshare, "must be True or False")
    _check_int("epochs", config.epochs)
    _check_int("batch_size", config.batch_size)
    _check_int("steps_per_epoch", config.steps_per_epoch, optional=True)
    _check_int("max_train_examples", config.max_train_examples, optional=True)
    _check_int("max_eval_examples", config.max_eval_examples, optional=True)
    if not checks.is_number(config.learning_rate) or not config.learning_rate > 0:
        raise ConfigError("learning_rate", config.learning_rate, "must be > 0")
    if not checks.is_number(config.weight_decay) or not config.weight_decay >= 0:
        raise ConfigError("weight_decay", config.weight_decay, "must be >= 0")
    if not checks.is_number(config.momentum) or not 0 <= config.momentum < 1:
        raise ConfigError("momentum", config.momentum, "must be in [0, 1)")
    if config.schedule not in SCHEDULES:
        raise ConfigError("schedule", config.schedule, f"one of {', '.join(SCHEDULES)}")
    if not checks.is_number(config.warmup_epochs) or not 0 <= config.warmup_epochs < config.epochs:
        raise ConfigError("warmup_epochs", config.warmup_epochs, "must be in [0, --epochs)")
    if config.warmup_epochs and config.schedule != "cosine":
        raise ConfigError("warmup_epochs", config.warmup_epochs, "needs --schedule=cosine")
    _check_int("precise_bn_batches", config.precise_bn_batches, minimum=0)
    if config.precise_bn_batches and config.strategy != "default":
        raise ConfigError(
            "precise_bn_batches", config.precise_bn_batches, "needs --strategy=default"
        )
    if config.recipe is not None:
        recipes.get(config.recipe)
    if config.mixed_precision not in precision.PRECISIONS:
        raise ConfigError(
            "mixed_precision", config.mixed_precision, f"one of {', '.join(precision.PRECISIONS)}"
        )
    if config.strategy not in distribute.STRATEGIES:
        raise ConfigError("strategy", config.strategy, f"one of {', '.join(distribute.STRATEGIES)}")
    try:
        distribute.check_backend(config.strategy)
    except ValueError as error:
        raise ConfigError("strategy", config.strategy, str(error)) from error
    if os.path.exists(config.output_dir) and not os.path.isdir(config.output_dir):
        raise ConfigError("output_dir", config.output_dir, "exists and is not a directory")

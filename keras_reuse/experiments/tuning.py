"""Hyperparameter search with keras-tuner: HyperModels for LruNet and ShaResNet, and `search`.

`LruNetHyperModel` (layer_reuse, width_multiplier, dropout, learning rate)
and `ShaResNetHyperModel` (share on/off, depth, width, learning rate) build
their models from the registry and compile them as `keras_reuse.training`
does (CoupledSGD, cross-entropy on logits, an "accuracy" metric), so they
work with any keras-tuner tuner and `keras_reuse.data` datasets:

```python
hypermodel = LruNetHyperModel(num_classes=10, input_shape=(28, 28, 1))
tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=8)
tuner.search(train_ds, validation_data=val_ds, epochs=3)
```

`search(...)` is that loop for a dataset name, with a validation split held
out of the training split (the test split is never looked at), and writes
`best.json` (the best hyperparameters and the `keras-reuse train` command
that retrains them) and `trials.csv` (one row per trial). `keras-reuse tune`
is its command line.
"""

from __future__ import annotations

import csv
import dataclasses
import inspect
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import keras_tuner

from keras_reuse import data
from keras_reuse.applications.lrunet.model import check_width
from keras_reuse.training.builders import create_model
from keras_reuse.training.optimizers import compile_for_training
from keras_reuse.utils import atomic
from keras_reuse.utils.checks import check_int, is_int, is_number

TUNERS = ("random", "bayesian", "hyperband")
OBJECTIVE = "val_accuracy"


# ------------------------------------------------------- search-space checks ---


def _choices(name: str, value: Any, check) -> tuple:
    """A fixed value or a non-empty sequence of distinct choices, each passing `check`."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values or len(set(values)) != len(values):
        raise ValueError(
            f"`{name}` must be a value or a non-empty sequence of distinct values. "
            f"Received: {name}={value!r}"
        )
    for v in values:
        check(name, v, value)
    return values


def _range(name: str, value: Any, low: float, high: float, high_inclusive: bool) -> tuple:
    """A fixed number or a `(min, max)` pair inside [low, high] (or [low, high))."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value, value)
    in_range = (lambda v: low <= v <= high) if high_inclusive else (lambda v: low <= v < high)
    bound = f"[{low}, {high}]" if high_inclusive else f"[{low}, {high})"
    if len(values) != 2 or not all(is_number(v) and in_range(v) for v in values):
        raise ValueError(
            f"`{name}` must be a number or a (min, max) pair in {bound}. Received: {name}={value!r}"
        )
    if values[0] > values[1]:
        raise ValueError(f"`{name}` must be (min, max) with min <= max. Received: {name}={value!r}")
    return (float(values[0]), float(values[1]))


def _check_reuse(name: str, v: Any, value: Any) -> None:
    if not is_int(v) or v < 1:
        raise ValueError(f"`{name}` values must be integers >= 1. Received: {name}={value!r}")


def _check_lrunet_width(name: str, v: Any, value: Any) -> None:
    try:
        check_width(v)
    except ValueError as error:
        raise ValueError(f"{error} Received: {name}={value!r}") from None


def _check_depth(name: str, v: Any, value: Any) -> None:
    if not is_int(v) or v < 10 or (v - 4) % 6:
        raise ValueError(
            f"`{name}` values must be of the form 6n + 4 with n >= 1 (10, 16, 22, 28, ...). "
            f"Received: {name}={value!r}"
        )


def _check_choice_bool(name: str, v: Any, value: Any) -> None:
    if not isinstance(v, bool):
        raise ValueError(f"`{name}` values must be True or False. Received: {name}={value!r}")


def _check_common(num_classes: Any, input_shape: Any, momentum: Any, weight_decay: Any) -> tuple:
    if not is_int(num_classes) or num_classes < 1:
        raise ValueError(
            f"`num_classes` must be an integer >= 1. Received: num_classes={num_classes!r}"
        )
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if shape is None or len(shape) != 3 or not all(is_int(d) and d >= 1 for d in shape):
        raise ValueError(
            "`input_shape` must be (height, width, channels) of positive integers. "
            f"Received: input_shape={input_shape!r}"
        )
    if not is_number(momentum) or not 0 <= momentum < 1:
        raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={momentum!r}")
    if not is_number(weight_decay) or weight_decay < 0:
        raise ValueError(f"`weight_decay` must be >= 0. Received: weight_decay={weight_decay!r}")
    return shape


def _hp_choice(hp: keras_tuner.HyperParameters, name: str, values: tuple) -> Any:
    if len(values) == 1:
        return hp.Fixed(name, values[0])
    return hp.Choice(name, list(values))


def _hp_float(
    hp: keras_tuner.HyperParameters, name: str, bounds: tuple, log: bool = False
) -> float:
    low, high = bounds
    if low == high:
        return hp.Fixed(name, low)
    if log:
        return hp.Float(name, low, high, sampling="log")
    return hp.Float(name, low, high, step=0.05)


# ---------------------------------------------------------------- HyperModels ---


class _ReuseHyperModel(keras_tuner.HyperModel):
    """Shared part: seeding, compilation, and the `keras-reuse train` flags of a trial."""

    registry_name = ""

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        learning_rate: float | Sequence[float],
        momentum: float,
        weight_decay: float,
        seed: int | None,
        name: str | None,
        tunable: bool,
    ):
        self.input_shape = _check_common(num_classes, input_shape, momentum, weight_decay)
        if seed is not None and (not is_int(seed) or seed < 0):
            raise ValueError(f"`seed` must be a non-negative integer or None. Received: {seed!r}")
        self.num_classes = num_classes
        self.learning_rate = _range("learning_rate", learning_rate, 1e-6, 10.0, True)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.seed = seed
        super().__init__(name=name or self.registry_name, tunable=tunable)

    def model_kwargs(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """The architecture keywords of the registry constructor for `hp`."""
        raise NotImplementedError

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """Builds and compiles one model of the search space.

        With a `seed`, every trial starts from the same random state, so
        trials differ by their hyperparameters only.

        Args:
            hp: The trial's hyperparameters.

        Returns:
            A compiled model that outputs logits.
        """
        if self.seed is not None:
            keras.utils.set_random_seed(self.seed)
        kwargs = self.model_kwargs(hp)
        learning_rate = _hp_float(hp, "learning_rate", self.learning_rate, log=True)
        model = create_model(self.registry_name, kwargs, self.num_classes, self.input_shape)
        return compile_for_training(
            model, learning_rate, momentum=self.momentum, l2=self.weight_decay
        )

    def train_flags(self, values: Mapping[str, Any]) -> list[str]:
        """`keras-reuse train` flags that train the model of hyperparameter `values`."""
        flags = [f"--model={self.registry_name}"]
        for name, value in values.items():
            if name.startswith("tuner/"):
                continue
            if isinstance(value, bool):
                flags.append(f"--{name}" if value else f"--no{name}")
            else:
                flags.append(
                    f"--{name}={value:.6g}" if isinstance(value, float) else f"--{name}={value}"
                )
        flags += [f"--momentum={self.momentum:g}", f"--weight_decay={self.weight_decay:g}"]
        return flags


class LruNetHyperModel(_ReuseHyperModel):
    """Search space of LruNet: layer reuse, width multiplier, dropout and learning rate.

    Each search-space argument takes a fixed value or the values to search:
    a sequence of choices for `layer_reuse` and `width_multiplier`, a
    `(min, max)` range for `dropout` (steps of 0.05) and `learning_rate`
    (log-uniform). Models are compiled like `keras_reuse.training` compiles
    them (CoupledSGD with momentum and coupled L2, cross-entropy on logits,
    an "accuracy" metric; objective "val_accuracy"), with a constant
    learning rate.

    Args:
        num_classes: Number of classes.
        input_shape: `(height, width, channels)`, at least 28x28.
        layer_reuse: Reuses per stage to search (N of N-LruNet).
        width_multiplier: Width multipliers to search (64 * w a multiple of 8).
        dropout: Dropout rate before the classifier, fixed or `(min, max)` in [0, 1).
        learning_rate: Learning rate, fixed or `(min, max)`.
        momentum: SGD momentum.
        weight_decay: L2 added to the gradient (PyTorch's `weight_decay`).
        seed: Reset Keras's random state to this seed before each build, so
            trials differ by their hyperparameters only; None leaves it.
        name: Name of the HyperModel.
        tunable: See `keras_tuner.HyperModel`.

    Raises:
        ValueError: naming the argument and its value, for a value the
            model would refuse or a malformed range.
    """

    registry_name = "lrunet"

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: Sequence[int] = (28, 28, 1),
        layer_reuse: int | Sequence[int] = (1, 2, 4, 6, 8, 10, 12, 14),
        width_multiplier: float | Sequence[float] = (0.5, 1.0),
        dropout: float | Sequence[float] = (0.0, 0.5),
        learning_rate: float | Sequence[float] = (0.01, 0.2),
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        seed: int | None = 0,
        name: str | None = None,
        tunable: bool = True,
    ):
        self.layer_reuse = _choices("layer_reuse", layer_reuse, _check_reuse)
        self.width_multiplier = _choices("width_multiplier", width_multiplier, _check_lrunet_width)
        self.dropout = _range("dropout", dropout, 0.0, 1.0, False)
        super().__init__(
            num_classes, input_shape, learning_rate, momentum, weight_decay, seed, name, tunable
        )

    def model_kwargs(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        return {
            "layer_reuse": _hp_choice(hp, "layer_reuse", self.layer_reuse),
            "width_multiplier": _hp_choice(hp, "width_multiplier", self.width_multiplier),
            "dropout": _hp_float(hp, "dropout", self.dropout),
        }


class ShaResNetHyperModel(_ReuseHyperModel):
    """Search space of the CIFAR-style Wide ShaResNet: sharing on/off, depth, width, learning rate.

    Builds `wide_sharesnet` from the registry (pre-activation WRN-depth-width
    whose blocks 2..n of a stage share their second 3x3 convolution when
    `share` is True; a plain WRN when False). It takes inputs from 8x8, so
    it fits Fashion-MNIST as well as CIFAR. Compiled like
    `LruNetHyperModel`.

    Args:
        num_classes: Number of classes.
        input_shape: `(height, width, channels)`, at least 8x8.
        share: True, False or both `(True, False)`: whether 3x3 convs are shared.
        depth: Depths to search, each 6n + 4.
        width: Width factors to search.
        dropout: Dropout rate inside the blocks, fixed or `(min, max)` in [0, 1).
        learning_rate: Learning rate, fixed or `(min, max)`.
        momentum: SGD momentum.
        weight_decay: L2 added to the gradient (PyTorch's `weight_decay`).
        seed: Reset Keras's random state to this seed before each build; None
            leaves it.
        name: Name of the HyperModel.
        tunable: See `keras_tuner.HyperModel`.

    Raises:
        ValueError: naming the argument and its value.
    """

    registry_name = "wide_sharesnet"

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: Sequence[int] = (32, 32, 3),
        share: bool | Sequence[bool] = (True, False),
        depth: int | Sequence[int] = (10, 16, 22),
        width: int | Sequence[int] = 1,
        dropout: float | Sequence[float] = 0.0,
        learning_rate: float | Sequence[float] = (0.01, 0.2),
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        seed: int | None = 0,
        name: str | None = None,
        tunable: bool = True,
    ):
        self.share = _choices("share", share, _check_choice_bool)
        self.depth = _choices("depth", depth, _check_depth)
        self.width = _choices("width", width, _check_reuse)
        self.dropout = _range("dropout", dropout, 0.0, 1.0, False)
        super().__init__(
            num_classes, input_shape, learning_rate, momentum, weight_decay, seed, name, tunable
        )

    def model_kwargs(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        return {
            "share": _hp_choice(hp, "share", self.share),
            "depth": _hp_choice(hp, "depth", self.depth),
            "width": _hp_choice(hp, "width", self.width),
            "dropout": _hp_float(hp, "dropout", self.dropout),
        }


HYPERMODELS = {"lrunet": LruNetHyperModel, "sharesnet": ShaResNetHyperModel}


# --------------------------------------------------------------------- search ---


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What `search` found and wrote.

    Attributes:
        best_hyperparameters: The best trial's hyperparameter values.
        best_score: Its validation accuracy.
        trials: One dict per trial, best first (the rows of `trials.csv`).
        best_path: Path of `best.json`.
        trials_path: Path of `trials.csv`.
        tuner: The keras-tuner `Tuner`.
        best_trial_id: The keras-tuner id of the best trial. Among trials with
            equal scores the earliest is the best, here and in `best.json`;
            keras-tuner's own `get_best_*` may pick another of them.
    """

    best_hyperparameters: dict[str, Any]
    best_score: float
    trials: tuple[dict[str, Any], ...]
    best_path: str
    trials_path: str
    tuner: keras_tuner.Tuner
    best_trial_id: str

    def best_model(self) -> keras.Model:
        """The best trial's trained model, loaded from its checkpoint.

        Returns:
            The compiled model of trial `best_trial_id` with its best weights.
        """
        return self.tuner.load_model(self.tuner.oracle.get_trial(self.best_trial_id))


def space_keys(model: str) -> list[str]:
    """The search-space arguments of a `HYPERMODELS` entry, e.g. `["layer_reuse", ...]`.

    Raises:
        ValueError: for a name not in `HYPERMODELS`.
    """
    if model not in HYPERMODELS:
        raise ValueError(
            f"`model` must be one of {', '.join(HYPERMODELS)}. Received: model={model!r}"
        )
    fixed = ("self", "num_classes", "input_shape", "seed", "name", "tunable")
    parameters = inspect.signature(HYPERMODELS[model].__init__).parameters
    return [p for p in parameters if p not in fixed]


def _make_tuner(
    name: str,
    hypermodel: keras_tuner.HyperModel,
    max_trials: int,
    epochs: int,
    seed: int,
    directory: str,
    overwrite: bool,
) -> keras_tuner.Tuner:
    common = dict(
        objective=OBJECTIVE,
        seed=seed,
        directory=directory,
        project_name="tuner",
        overwrite=overwrite,
    )
    if name == "random":
        return keras_tuner.RandomSearch(hypermodel, max_trials=max_trials, **common)
    if name == "bayesian":
        return keras_tuner.BayesianOptimization(hypermodel, max_trials=max_trials, **common)
    # Hyperband decides its own number of trials from max_epochs.
    return keras_tuner.Hyperband(hypermodel, max_epochs=epochs, factor=3, **common)


def _trial_rows(tuner: keras_tuner.Tuner) -> list[dict[str, Any]]:
    trials = list(tuner.oracle.trials.values())
    names: list[str] = []
    for trial in trials:
        names += [n for n in trial.hyperparameters.values if n not in names]
    rows = []
    for trial in trials:
        score = trial.score
        row = {"trial_id": trial.trial_id, "status": trial.status}
        row.update({n: trial.hyperparameters.values.get(n) for n in names})
        row[OBJECTIVE] = None if score is None else float(score)
        row["best_epoch"] = None if trial.best_step is None else int(trial.best_step) + 1
        rows.append(row)
    # Ties (common on short searches) go to the earliest trial, so that a
    # search reloaded from disk reports the same best as the one that ran.
    rows.sort(
        key=lambda r: (
            math.inf if r[OBJECTIVE] is None else -r[OBJECTIVE],
            _trial_order(r["trial_id"]),
        )
    )
    return rows


def _trial_order(trial_id: str) -> tuple[float, str]:
    # keras-tuner's ids are "0", "1", ... (Hyperband: "0000", ...); compare as numbers.
    return (int(trial_id), trial_id) if trial_id.isdigit() else (math.inf, trial_id)


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    fields = list(rows[0]) if rows else ["trial_id", "status", OBJECTIVE]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _check_search(
    model: Any,
    tuner: Any,
    max_trials: Any,
    epochs: Any,
    batch_size: Any,
    train_examples: Any,
    validation_examples: Any,
    seed: Any,
    output_dir: Any,
    space: Any,
) -> None:
    """`search`'s arguments that need no data; raises ValueError naming the first bad one."""
    if model not in HYPERMODELS:
        raise ValueError(
            f"`model` must be one of {', '.join(HYPERMODELS)}. Received: model={model!r}"
        )
    if tuner not in TUNERS:
        raise ValueError(f"`tuner` must be one of {', '.join(TUNERS)}. Received: tuner={tuner!r}")
    check_int("max_trials", max_trials)
    check_int("epochs", epochs)
    check_int("batch_size", batch_size)
    check_int("train_examples", train_examples, optional=True)
    check_int("validation_examples", validation_examples)
    if not is_int(seed) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer. Received: seed={seed!r}")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"`output_dir` exists and is not a directory. Received: {output_dir!r}")
    space = dict(space or {})
    allowed = space_keys(model)
    unknown = sorted(set(space) - set(allowed))
    if unknown:
        raise ValueError(
            f"`space` has keys that {model} does not tune: {unknown}. "
            f"Valid keys: {', '.join(allowed)}. Received: space={space!r}"
        )


def _search_data(
    dataset: str,
    data_dir: str | None,
    train_examples: int | None,
    validation_examples: int,
    batch_size: int,
    seed: int,
) -> tuple[Any, int, Any, Any]:
    """`(info, training examples, training dataset, validation dataset)` of a search."""
    info = data.info(dataset, data_dir=data_dir)
    if "train" not in info.splits:
        raise ValueError(f"dataset={dataset!r} has no train split: {sorted(info.splits)}")
    total = info.splits["train"]
    n_train = total - validation_examples if train_examples is None else train_examples
    if n_train < 1 or n_train + validation_examples > total:
        raise ValueError(
            f"train_examples={train_examples} plus validation_examples={validation_examples} "
            f"exceed the {total} examples of {dataset!r}'s train split."
        )

    train_ds = data.load(
        dataset, split=f"train[:{n_train}]", batch_size=batch_size, seed=seed, data_dir=data_dir
    )
    val_ds = data.load(
        dataset,
        split=f"train[{n_train}:{n_train + validation_examples}]",
        batch_size=batch_size,
        augment=False,
        shuffle=False,
        data_dir=data_dir,
    )
    return info, n_train, train_ds, val_ds


def search(
    model: str = "lrunet",
    dataset: str = "fashion_mnist",
    output_dir: str = "runs/tune",
    tuner: str = "random",
    max_trials: int = 10,
    epochs: int = 10,
    batch_size: int = 256,
    train_examples: int | None = None,
    validation_examples: int = 5000,
    space: Mapping[str, Any] | None = None,
    seed: int = 0,
    overwrite: bool = False,
    data_dir: str | None = None,
    verbose: int | str = "auto",
) -> SearchResult:
    """Searches a model's hyperparameters on a dataset and writes the results.

    The training split is cut into a training part (its first
    `train_examples`, default: all but the validation part, augmented as in
    `keras_reuse.training`) and a validation part (the `validation_examples`
    after it, not augmented) on which trials are scored by `val_accuracy`.

    Writes to `output_dir`: `best.json` (best hyperparameters, score and the
    `keras-reuse train` flags that retrain them), `trials.csv` (one row per
    trial, best first) and `tuner/` (keras-tuner's project: with
    `overwrite=False` a second call continues a search found there).

    Args:
        model: "lrunet" or "sharesnet" (see `HYPERMODELS`).
        dataset: TFDS image-classification dataset name.
        output_dir: Where results go.
        tuner: "random" (RandomSearch), "bayesian" (BayesianOptimization) or
            "hyperband" (Hyperband with `max_epochs=epochs`, which chooses
            its own number of trials and ignores `max_trials`).
        max_trials: Trials to run.
        epochs: Epochs per trial (Hyperband: the most any trial gets).
        batch_size: Batch size.
        train_examples: Training examples per epoch; None for all that the
            validation part leaves.
        validation_examples: Size of the validation part.
        space: Search-space arguments of the HyperModel, e.g.
            `{"layer_reuse": (1, 2, 4), "width_multiplier": 1.0}`.
        seed: Seed of the tuner, the data order and every trial's weights.
        overwrite: Start afresh instead of continuing a search in `output_dir`.
        data_dir: TFDS data directory (default: `$TFDS_DATA_DIR`).
        verbose: Verbosity of keras-tuner and `model.fit`.

    Returns:
        A `SearchResult`.

    Raises:
        ValueError: naming the argument and its value, before anything is
            written.
    """
    _check_search(
        model,
        tuner,
        max_trials,
        epochs,
        batch_size,
        train_examples,
        validation_examples,
        seed,
        output_dir,
        space,
    )
    hypermodel_cls = HYPERMODELS[model]
    space = dict(space or {})
    info, n_train, train_ds, val_ds = _search_data(
        dataset, data_dir, train_examples, validation_examples, batch_size, seed
    )
    hypermodel = hypermodel_cls(
        num_classes=info.num_classes, input_shape=info.input_shape, seed=seed, **space
    )
    os.makedirs(output_dir, exist_ok=True)
    kt_tuner = _make_tuner(tuner, hypermodel, max_trials, epochs, seed, output_dir, overwrite)
    kt_tuner.search(train_ds, validation_data=val_ds, epochs=epochs, verbose=verbose)

    return _write_results(
        kt_tuner,
        hypermodel,
        output_dir,
        dataset,
        tuner,
        batch_size,
        epochs,
        n_train,
        validation_examples,
    )


def _write_results(
    kt_tuner: keras_tuner.Tuner,
    hypermodel: _ReuseHyperModel,
    output_dir: str,
    dataset: str,
    tuner: str,
    batch_size: int,
    epochs: int,
    n_train: int,
    validation_examples: int,
) -> SearchResult:
    """Writes `trials.csv` and `best.json` of a finished search; returns its result."""
    rows = _trial_rows(kt_tuner)
    trials_path = os.path.join(output_dir, "trials.csv")
    atomic.write_text(trials_path, _csv_text(rows))
    if not rows or rows[0][OBJECTIVE] is None:
        raise RuntimeError(f"No trial of the search in {output_dir} completed; see {trials_path}.")
    best_trial = kt_tuner.oracle.get_trial(rows[0]["trial_id"])
    values = {
        k: v for k, v in best_trial.hyperparameters.values.items() if not k.startswith("tuner/")
    }
    # The trial's recipe (constant learning rate) on the whole training split.
    train_flags = [
        *hypermodel.train_flags(values),
        f"--dataset={dataset}",
        f"--batch_size={batch_size}",
        f"--epochs={epochs}",
        "--schedule=constant",
    ]
    summary = {
        "model": hypermodel.registry_name,
        "dataset": dataset,
        "tuner": tuner,
        "objective": OBJECTIVE,
        OBJECTIVE: float(best_trial.score),
        "trial_id": best_trial.trial_id,
        "hyperparameters": values,
        "trials": len(rows),
        "train_examples": n_train,
        "validation_examples": validation_examples,
        "epochs": epochs,
        "train_command": "keras-reuse train " + " ".join(train_flags),
    }
    best_path = os.path.join(output_dir, "best.json")
    atomic.write_text(best_path, json.dumps(summary, indent=2) + "\n")
    return SearchResult(
        best_hyperparameters=values,
        best_score=float(best_trial.score),
        trials=tuple(rows),
        best_path=best_path,
        trials_path=trials_path,
        tuner=kt_tuner,
        best_trial_id=best_trial.trial_id,
    )

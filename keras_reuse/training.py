"""Training on `model.fit`: a small config object and one `train` function.

`train(TrainConfig(...))` reproduces the papers' recipe by default (SGD
momentum 0.9 with coupled L2 5e-4, batch 256, learning rate 0.1 divided by
10 at 2/3 and 5/6 of the epochs, dropout 0.5, cross-entropy on logits),
builds the model from the dataset's metadata, and writes to `output_dir`:

- `model.keras`: the final model (outputs logits), written atomically;
- `logs/`: TensorBoard logs; `metrics.csv`: per-epoch metrics;
- `config.json`: the run's configuration, checked on `resume`;
- `results.json`: parameters, test accuracy, images/s, wall time;
- `backup/`: the per-epoch backup that `resume=True` continues from.

`precise_bn_batches=B` recomputes the BatchNorm statistics over B training
batches before every evaluation (`keras_reuse.callbacks.PreciseBatchNorm`);
`recipe="quick"` or a published configuration's name
(`keras_reuse.recipes`) is recorded, and results.json then states the
paper's accuracy next to ours.

No hand-written loop: Keras callbacks do the checkpointing and logging.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import statistics
import time
from typing import Any

import keras
import tensorflow as tf

from keras_reuse import applications, atomic, data, distribute, precision
from keras_reuse.callbacks import (
    AtomicBackupAndRestore,
    PreciseBatchNorm,
    ThroughputMonitor,
    latest_backup_epoch,
)
from keras_reuse.compiling import compile_for_training
from keras_reuse.summary import reuse_summary

SCHEDULES = ("step", "cosine", "constant")
# Fields that define the trained network: a resumed run must not change them.
MODEL_FIELDS = (
    "model",
    "dataset",
    "layer_reuse",
    "width_multiplier",
    "dropout",
    "share",
    "depth",
    "width",
    "mixed_precision",
)
_ARCH_FIELDS = ("layer_reuse", "width_multiplier", "dropout", "share", "depth", "width")


class ConfigError(ValueError):
    """A `TrainConfig` field has an invalid value.

    Attributes:
        field: The field (and command-line flag) name.
    """

    def __init__(self, field: str, value: Any, reason: str):
        super().__init__(f"--{field}={value}: {reason}")
        self.field = field


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; field names equal the CLI flags.

    Architecture fields left as None take the model's own default; fields
    that a model does not take must stay None.
    """

    model: str = "lrunet"
    dataset: str = "fashion_mnist"
    output_dir: str = "runs/default"
    layer_reuse: int | None = None
    width_multiplier: float | None = None
    dropout: float | None = None
    share: bool | None = None
    depth: int | None = None
    width: int | None = None
    epochs: int = 300
    batch_size: int = 256
    learning_rate: float = 0.1
    weight_decay: float = 5e-4
    momentum: float = 0.9
    schedule: str = "step"
    warmup_epochs: float = 0.0
    precise_bn_batches: int = 0
    recipe: str | None = None
    mixed_precision: str = "float32"
    strategy: str = "default"
    resume: bool = False
    steps_per_epoch: int | None = None
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    export_tflite: bool = False
    seed: int | None = 0
    data_dir: str | None = None
    verbose: int | str = "auto"

    def model_kwargs(self) -> dict[str, Any]:
        """The architecture fields that are set, as constructor kwargs."""
        values = {name: getattr(self, name) for name in _ARCH_FIELDS}
        return {name: value for name, value in values.items() if value is not None}


def _check_int(field: str, value: Any, minimum: int = 1, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(field, value, f"must be an integer >= {minimum}")


def validate(config: TrainConfig) -> None:
    """Checks the fields that can be checked without data or a model.

    Raises:
        ConfigError: naming the first invalid field and its value.
    """
    if config.model not in applications.list_models():
        raise ConfigError(
            "model", config.model, f"unknown model; one of {', '.join(applications.list_models())}"
        )
    _check_int("epochs", config.epochs)
    _check_int("batch_size", config.batch_size)
    _check_int("layer_reuse", config.layer_reuse, optional=True)
    _check_int("steps_per_epoch", config.steps_per_epoch, optional=True)
    _check_int("max_train_examples", config.max_train_examples, optional=True)
    _check_int("max_eval_examples", config.max_eval_examples, optional=True)
    if not config.learning_rate > 0:
        raise ConfigError("learning_rate", config.learning_rate, "must be > 0")
    if not config.weight_decay >= 0:
        raise ConfigError("weight_decay", config.weight_decay, "must be >= 0")
    if not 0 <= config.momentum < 1:
        raise ConfigError("momentum", config.momentum, "must be in [0, 1)")
    if config.schedule not in SCHEDULES:
        raise ConfigError("schedule", config.schedule, f"one of {', '.join(SCHEDULES)}")
    if not 0 <= config.warmup_epochs < config.epochs:
        raise ConfigError("warmup_epochs", config.warmup_epochs, "must be in [0, --epochs)")
    if config.warmup_epochs and config.schedule != "cosine":
        raise ConfigError("warmup_epochs", config.warmup_epochs, "needs --schedule=cosine")
    _check_int("precise_bn_batches", config.precise_bn_batches, minimum=0)
    if config.precise_bn_batches and config.strategy != "default":
        raise ConfigError(
            "precise_bn_batches", config.precise_bn_batches, "needs --strategy=default"
        )
    if config.recipe is not None:
        from keras_reuse import recipes

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
    accepted = inspect.signature(applications.get(config.model)).parameters
    for name, value in config.model_kwargs().items():
        if name not in accepted:
            raise ConfigError(name, value, f"does not apply to --model={config.model}")


def _check_output_dir(config: TrainConfig) -> None:
    """Refuses to overwrite a run, or to resume one with another network."""
    saved_path = os.path.join(config.output_dir, "config.json")
    if not os.path.isfile(saved_path):
        return
    if not config.resume:
        raise ConfigError(
            "output_dir",
            config.output_dir,
            "already holds a run; pass --resume to continue it or choose another directory",
        )
    with open(saved_path) as f:
        saved = json.load(f)
    for field in MODEL_FIELDS:
        if saved.get(field) != getattr(config, field):
            raise ConfigError(
                field,
                getattr(config, field),
                f"differs from the run being resumed in {config.output_dir} "
                f"({field}={saved.get(field)})",
            )


def learning_rate_schedule(config: TrainConfig, steps_per_epoch: int):
    """The learning rate as a function of the optimizer step.

    "step" is the papers' schedule: the base rate, /10 after 2/3 of the
    epochs and /100 after 5/6 (epochs 200 and 250 of 300). Schedules are
    functions of `optimizer.iterations`, which the backup restores, so a
    resumed run continues on the same curve.
    """
    total = config.epochs * steps_per_epoch
    lr = config.learning_rate
    if config.schedule == "constant":
        return lr
    if config.schedule == "cosine":
        warmup = round(config.warmup_epochs * steps_per_epoch)
        if not warmup:
            return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total)
        # Linear from 0 to `lr` over the warm-up, then cosine to 0.
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total - warmup, warmup_target=lr, warmup_steps=warmup
        )
    # PiecewiseConstantDecay switches *after* a boundary step; step k is the
    # (k+1)-th update, so epoch 200 (0-based) starts at step 200 * S.
    boundaries = [
        round(config.epochs * 2 / 3) * steps_per_epoch - 1,
        round(config.epochs * 5 / 6) * steps_per_epoch - 1,
    ]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, [lr, lr / 10, lr / 100])


def _split(base: str, limit: int | None) -> str:
    return base if limit is None else f"{base}[:{limit}]"


def _prune_csv(path: str, completed_epochs: int) -> None:
    """Drops CSV rows of epochs that the resumed run will redo."""
    if not os.path.isfile(path):
        return
    with open(path) as f:
        lines = f.read().splitlines()
    if not lines:
        return
    kept = [lines[0]]
    for line in lines[1:]:
        epoch = line.split(",")[0]
        # A row that a kill cut short is the redone epoch's: drop it too.
        if epoch.isdigit() and int(epoch) < completed_epochs:
            kept.append(line)
    atomic.write_text(path, "\n".join(kept) + "\n", fault="metrics_csv")


def train(config: TrainConfig) -> dict[str, Any]:
    """Trains a registered model on a TFDS dataset with `model.fit`.

    Args:
        config: The run's configuration.

    Returns:
        The content of `results.json`.

    Raises:
        ConfigError: (a ValueError) for an invalid field, before anything is
            written.
    """
    start = time.perf_counter()
    validate(config)
    try:
        info = data.info(config.dataset, data_dir=config.data_dir)
    except ValueError as error:
        raise ConfigError("dataset", config.dataset, str(error)) from error
    except data.DatasetNotPreparedError as error:
        field = "data_dir" if config.data_dir is not None else "dataset"
        raise ConfigError(field, getattr(config, field), str(error)) from error
    _check_output_dir(config)
    policy = precision.resolve_precision(config.mixed_precision)
    strategy = distribute.make_strategy(config.strategy)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)

    constructor = applications.get(config.model)
    with strategy.scope(), precision.dtype_policy_scope(policy):
        try:
            model = constructor(
                num_classes=info.num_classes,
                input_shape=info.input_shape,
                classifier_activation=None,
                **config.model_kwargs(),
            )
        except ValueError as error:
            # Name the architecture flag the model's message is about, if any.
            named = [k for k in config.model_kwargs() if f"`{k}`" in str(error)]
            field = named[0] if named else "model"
            raise ConfigError(field, getattr(config, field), str(error)) from error

    train_split = "train" if "train" in info.splits else next(iter(info.splits))
    test_split = "test" if "test" in info.splits else "validation"
    train_ds = data.load(
        config.dataset,
        split=_split(train_split, config.max_train_examples),
        batch_size=config.batch_size,
        seed=config.seed,
        data_dir=config.data_dir,
    )
    test_ds = data.load(
        config.dataset,
        split=_split(test_split, config.max_eval_examples),
        batch_size=config.batch_size,
        data_dir=config.data_dir,
    )
    if config.strategy == "multi_worker":
        # TFDS splits are few files; shard by element so each worker gets data.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        train_ds = train_ds.with_options(options)
        test_ds = test_ds.with_options(options)
    steps_per_epoch = config.steps_per_epoch
    if steps_per_epoch is None:
        steps_per_epoch = int(train_ds.cardinality())
        if steps_per_epoch <= 0:
            n = min(info.splits[train_split], config.max_train_examples or math.inf)
            steps_per_epoch = max(1, int(n // config.batch_size))
    else:
        train_ds = train_ds.repeat()

    with strategy.scope():
        compile_for_training(
            model,
            learning_rate_schedule(config, steps_per_epoch),
            momentum=config.momentum,
            l2=config.weight_decay,
            loss_scale=policy == "mixed_float16",
        )
        optimizer = model.optimizer

    chief = distribute.is_chief(strategy)
    out = config.output_dir
    if not chief:
        # Non-chief workers must still save (collectives), but privately.
        out = os.path.join(out, ".workers", str(strategy.cluster_resolver.task_id))
    os.makedirs(out, exist_ok=True)
    # Temporary files of writes that a kill interrupted.
    atomic.remove_leftovers(out)
    if chief:
        atomic.write_text(
            os.path.join(out, "config.json"),
            json.dumps(dataclasses.asdict(config), indent=2),
            fault="config_json",
        )
    backup_dir = os.path.join(out, "backup")
    csv_path = os.path.join(out, "metrics.csv")
    _prune_csv(csv_path, latest_backup_epoch(backup_dir))
    throughput = ThroughputMonitor(config.batch_size)
    callbacks = [
        throughput,
        keras.callbacks.CSVLogger(csv_path, append=True),
        keras.callbacks.TensorBoard(os.path.join(out, "logs")),
        # Last: an epoch's CSV row is written before its backup is published.
        # Published first, a kill in between lost the row for good (the
        # resumed run does not redo the epoch); now the row of an epoch that
        # is not backed up is pruned and redone.
        AtomicBackupAndRestore(backup_dir),
    ]
    if config.precise_bn_batches:
        # First: the validation, the CSV row and the backup see its statistics.
        callbacks.insert(0, PreciseBatchNorm(train_ds, config.precise_bn_batches))
    with distribute.fit_compat(model, strategy, train_ds):
        history = model.fit(
            train_ds,
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch,
            validation_data=test_ds,
            callbacks=callbacks,
            verbose=config.verbose,
        )
        if history.epoch:
            # The last epoch's validation pass is the test evaluation.
            test = {
                "accuracy": history.history["val_accuracy"][-1],
                "loss": history.history["val_loss"][-1],
            }
        else:  # a resumed run that had nothing left to train
            test = model.evaluate(test_ds, return_dict=True, verbose=0)

    model_path = os.path.join(out, "model.keras")
    atomic.save_model(model, model_path, fault="model_keras")
    summary = reuse_summary(model)
    results = {
        "model": config.model,
        "dataset": config.dataset,
        "config": dataclasses.asdict(config),
        "mixed_precision": policy,
        "strategy": config.strategy,
        "num_replicas": strategy.num_replicas_in_sync,
        "trainable_params": summary.unique_params,
        "unrolled_params": summary.unrolled_params,
        "macs_per_example": summary.macs,
        "epochs_completed": int(optimizer.iterations.numpy()) // steps_per_epoch,
        "epochs_this_session": len(history.epoch),
        "test_accuracy": float(test["accuracy"]),
        "test_loss": float(test["loss"]),
        "images_per_sec": (
            statistics.median(throughput.epoch_rates) if throughput.epoch_rates else None
        ),
        "wall_time_s": time.perf_counter() - start,
        "model_path": os.path.abspath(model_path),
    }
    if config.recipe is not None:
        from keras_reuse import recipes

        results.update(recipes.paper_comparison(config.recipe, results["test_accuracy"]))
    if config.export_tflite and chief:
        from keras_reuse import export

        tflite_path = os.path.join(out, "model.tflite")
        export.to_tflite(model, tflite_path)
        results["tflite_path"] = os.path.abspath(tflite_path)
    atomic.write_text(
        os.path.join(out, "results.json"), json.dumps(results, indent=2), fault="results_json"
    )
    return results

"""Builders of a run's parts from a `TrainConfig`: model, datasets, compile, callbacks.

`keras_reuse.training.train` is their orchestration; the study, the
benchmarks and the examples build the same parts the same way. Every
builder turns a library error about a field into a `ConfigError` naming
it, before anything is written.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from typing import Any

import keras
import tensorflow as tf

from keras_reuse import applications, data
from keras_reuse.applications.lrunet.model import unroll_reuse_loops
from keras_reuse.reuse.sharing import unshare
from keras_reuse.training.callbacks import (
    AtomicBackupAndRestore,
    PreciseBatchNorm,
    ThroughputMonitor,
)
from keras_reuse.training.config import ConfigError, TrainConfig, constructor_error
from keras_reuse.training.optimizers import compile_for_training


def dataset_info(config: TrainConfig) -> data.DatasetInfo:
    """The metadata of `config.dataset` (classes, input shape, splits).

    Raises:
        ConfigError: naming `dataset` (or `data_dir`) for a dataset that is
            unknown or not prepared.
    """
    try:
        return data.info(config.dataset, data_dir=config.data_dir)
    except ValueError as error:
        raise ConfigError("dataset", config.dataset, str(error)) from error
    except data.DatasetNotPreparedError as error:
        field = "data_dir" if config.data_dir is not None else "dataset"
        raise ConfigError(field, getattr(config, field), str(error)) from error


def create_model(
    name: str, model_args: dict[str, Any], num_classes: int, input_shape: tuple[int, ...]
) -> keras.Model:
    """The registered model `name` with `model_args`, outputting logits.

    Args:
        name: A registered model name.
        model_args: Keyword arguments of its constructor.
        num_classes: Classes of the head.
        input_shape: `(height, width, channels)`.

    Returns:
        The model (`classifier_activation=None`: the loss takes logits),
        channels last whatever `keras.config.image_data_format()` says: the
        data pipeline's images are `(batch, height, width, channels)`.

    Raises:
        ConfigError: naming the model argument the constructor refused.
    """
    constructor = applications.get(name)
    # The images are channels last; a constructor of a user's may not take
    # the keyword (it then follows keras.config.image_data_format()).
    parameters = inspect.signature(constructor).parameters
    layout = {"data_format": "channels_last"} if "data_format" in parameters else {}
    try:
        return constructor(
            num_classes=num_classes,
            input_shape=input_shape,
            classifier_activation=None,
            **layout,
            **model_args,
        )
    except ValueError as error:
        raise constructor_error(error, name, model_args) from error


def build_model(config: TrainConfig, info: data.DatasetInfo, **overrides: Any) -> keras.Model:
    """The model of `config` for the dataset (`create_model` of its name and `model_args`).

    With `config.unshare`, every call of a shared layer gets a layer of its
    own (`keras_reuse.unshare`): the study's control for depth without sharing.

    Args:
        config: The run's configuration.
        info: The dataset's metadata (`dataset_info`).
        **overrides: Model arguments that replace the config's.

    Returns:
        The model, with a logits output.

    Raises:
        ConfigError: naming the model argument the constructor refused.
    """
    model_args = {**config.model_args, **overrides}
    model = create_model(config.model, model_args, info.num_classes, info.input_shape)
    # A looped LruNet stage is one layer called once: unrolled first, every
    # call of its shared layers gets a layer of its own.
    return unshare(unroll_reuse_loops(model)) if config.unshare else model


@dataclasses.dataclass(frozen=True)
class Datasets:
    """The batched datasets of a run.

    Attributes:
        train: Shuffled, augmented training batches (repeated when
            `steps_per_epoch` is set).
        test: The evaluation batches.
        steps_per_epoch: Training steps per epoch.
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    steps_per_epoch: int


def _split(base: str, limit: int | None) -> str:
    return base if limit is None else f"{base}[:{limit}]"


def build_datasets(config: TrainConfig, info: data.DatasetInfo) -> Datasets:
    """The training and test datasets of `config` through `keras_reuse.data`."""
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
    return Datasets(train_ds, test_ds, steps_per_epoch)


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


def compile_model(
    model: keras.Model, config: TrainConfig, steps_per_epoch: int, policy: str = "float32"
) -> keras.Model:
    """Compiles `model` with the one recipe (`compile_for_training`) and the config's schedule.

    Args:
        model: The model to compile (call inside the strategy's scope).
        config: Learning rate, schedule, momentum and weight decay.
        steps_per_epoch: Training steps per epoch, for the schedule.
        policy: The resolved dtype policy; "mixed_float16" scales the loss.

    Returns:
        `model`, compiled.
    """
    return compile_for_training(
        model,
        learning_rate_schedule(config, steps_per_epoch),
        momentum=config.momentum,
        l2=config.weight_decay,
        loss_scale=policy == "mixed_float16",
    )


def build_callbacks(
    config: TrainConfig, out: str, train_ds: tf.data.Dataset
) -> tuple[list[keras.callbacks.Callback], ThroughputMonitor]:
    """The callbacks of a run writing into `out`, and its throughput monitor.

    Returns:
        `(callbacks, throughput)`: precise BN (if asked for) first, then the
        throughput monitor, the CSV log, TensorBoard, and the backup last.
    """
    throughput = ThroughputMonitor(config.batch_size)
    callbacks = [
        throughput,
        keras.callbacks.CSVLogger(os.path.join(out, "metrics.csv"), append=True),
        keras.callbacks.TensorBoard(os.path.join(out, "logs")),
        # Last: an epoch's CSV row is written before its backup is published.
        # Published first, a kill in between lost the row for good (the
        # resumed run does not redo the epoch); now the row of an epoch that
        # is not backed up is pruned and redone.
        AtomicBackupAndRestore(os.path.join(out, "backup")),
    ]
    if config.precise_bn_batches:
        # First: the validation, the CSV row and the backup see its statistics.
        callbacks.insert(0, PreciseBatchNorm(train_ds, config.precise_bn_batches))
    return callbacks, throughput

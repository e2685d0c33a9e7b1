"""Keras callbacks for resumable, measured training runs.

`AtomicBackupAndRestore` is Keras's `BackupAndRestore` with crash-safe
writes: Keras writes the weights and the epoch counter as two files in
place, so a run killed between (or during) the two writes resumes from
weights that do not match the epoch it believes it is at. Here every backup
is written into a fresh directory and published by atomically replacing a
one-line `latest` pointer, so a restart only ever sees a complete backup.

`PreciseBatchNorm` (and `recompute_batchnorm_statistics`) replaces the
BatchNorm moving averages by population statistics before evaluating.

`ThroughputMonitor` adds `images_per_sec` (training throughput, first batch
of each epoch excluded as warm-up) to the epoch logs, so `CSVLogger`,
`TensorBoard` and the `History` record it.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import keras
import numpy as np

from keras_reuse.applications.lrunet.stage import LruStage
from keras_reuse.utils import atomic

_LATEST = "latest"
_WEIGHTS = "model.weights.h5"
_METADATA = "training_metadata.json"


def latest_backup_epoch(backup_dir: str) -> int:
    """Number of completed epochs in the newest complete backup (0 if none)."""
    pointer = os.path.join(backup_dir, _LATEST)
    if not os.path.isfile(pointer):
        return 0
    with open(pointer) as f:
        name = f.read().strip()
    with open(os.path.join(backup_dir, name, _METADATA)) as f:
        return int(json.load(f)["epoch"])


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose backups are published atomically.

    Backs up at the end of every epoch (weights with optimizer state, and
    the epoch counter) and restores the newest complete backup when `fit`
    starts. The backup is kept after training so that re-running a finished
    run with the same directory does no extra epoch.

    Args:
        backup_dir: Directory for the backups; created when needed.
    """

    def __init__(self, backup_dir: str):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)

    def _point_at(self, name: str) -> None:
        directory = os.path.join(self.backup_dir, name)
        self._weights_path = os.path.join(directory, _WEIGHTS)
        self._training_metadata_path = os.path.join(directory, _METADATA)

    def on_train_begin(self, logs=None):
        pointer = os.path.join(self.backup_dir, _LATEST)
        if os.path.isfile(pointer):
            with open(pointer) as f:
                name = f.read().strip()
            self._point_at(name)
            self._load_model()
            self._prune(name)

    def _prune(self, keep: str) -> None:
        """Deletes older backups and what killed saves left: nothing points to them."""
        for entry in os.listdir(self.backup_dir):
            if entry not in (keep, _LATEST) and entry.startswith("epoch-"):
                shutil.rmtree(os.path.join(self.backup_dir, entry), ignore_errors=True)
        atomic.remove_leftovers(self.backup_dir)

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        atomic.fault_point("train:batch_end")

    def _save_model(self):
        name = f"epoch-{self._current_epoch:05d}"
        final = os.path.join(self.backup_dir, name)
        tmp = atomic.make_temp_directory(final)
        try:
            weights = os.path.join(tmp, _WEIGHTS)
            self.model.save_weights(weights)
            atomic.fault_point("backup:mid_weights", partial=weights)
            with open(os.path.join(tmp, _METADATA), "w") as f:
                json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
            if os.path.exists(final):  # a killed save's, never published
                shutil.rmtree(final)
            atomic.replace_directory(tmp, final)
        except OSError as error:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(error, atomic.AtomicWriteError):
                raise
            raise atomic.AtomicWriteError(final, error) from error
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        atomic.fault_point("backup:after_weights")
        # The one step that publishes the backup: until the pointer names it,
        # a restart restores the previous one.
        atomic.write_text(os.path.join(self.backup_dir, _LATEST), name, fault="backup_pointer")
        atomic.fault_point("backup:published")
        self._point_at(name)
        self._prune(name)


class ThroughputMonitor(keras.callbacks.Callback):
    """Logs training images/s per epoch as `images_per_sec`.

    Times from the end of an epoch's first batch to the end of its last, so
    tracing and pipeline warm-up do not count.

    Args:
        batch_size: Global batch size (images per training step).
    """

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.epoch_rates: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._first = None
        self._last = None
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._first is None:
            self._first = now
        else:
            self._batches += 1
        self._last = now

    def on_epoch_end(self, epoch, logs=None):
        if self._batches and logs is not None:
            rate = self._batches * self.batch_size / (self._last - self._first)
            self.epoch_rates.append(rate)
            logs["images_per_sec"] = rate


# ------------------------------------------------------------- precise BN ---


def _batchnorm_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every trainable BatchNormalization (subclasses included) and looped
    LruNet stage (`keras_reuse.applications.lrunet.stage.LruStage`, N BatchNorms per
    iteration kind) inside `model`."""

    found = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, (keras.layers.BatchNormalization, LruStage)) and layer.trainable
    ]
    # A layer reachable through two nested models is still one layer.
    return list({id(layer): layer for layer in found}.values())


def _statistics(layer: keras.layers.Layer) -> list[tuple[str, object, object]]:
    """`(name, moving_mean, moving_variance)` of each statistics pair of `layer`.

    A BatchNormalization has one; a looped stage two, "dw_bn" and "pw_bn",
    each `(N, channels)`, row i-1 for iteration i.
    """
    if isinstance(layer, keras.layers.BatchNormalization):
        return [(layer.name, layer.moving_mean, layer.moving_variance)]
    return [
        (kind, getattr(layer, f"{kind}_moving_mean"), getattr(layer, f"{kind}_moving_variance"))
        for kind in ("dw_bn", "pw_bn")
    ]


def _images(batch):
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def recompute_batchnorm_statistics(model: keras.Model, dataset, batches: int) -> dict[str, int]:
    """Sets every BatchNorm's moving statistics to their population values.

    Precise BatchNorm (Detectron2's `PreciseBN`, pycls's
    `compute_precise_bn_stats`): with the weights unchanged, runs `batches`
    batches of `dataset` through `model` in training mode and sets each
    BatchNormalization's `moving_mean` and `moving_variance` to the mean and
    (biased) variance of its inputs over all those examples, instead of the
    exponential moving average that training left there, which lags the
    weights after few or large steps. Per channel, with c_b examples'
    positions in batch b:

        mean = sum_b c_b * mean_b / sum_b c_b
        var  = sum_b c_b * (var_b + mean_b**2) / sum_b c_b - mean**2

    A BatchNorm that the model calls several times (a shared BatchNorm)
    gets the statistics over all its calls, since its one pair of moving
    statistics serves all of them at inference. BatchNorms with
    `trainable=False` are left alone: Keras runs them in inference mode even
    in training, so their statistics are deliberately frozen. Accumulation is
    in float64. Masks are not supported (the models here have none). The
    BatchNorms inside a looped LruNet stage (`LruNet(reuse_loop=True)`) are
    recomputed row by row, each iteration's from its own inputs, exactly as
    in the unrolled network.

    Args:
        model: A built Keras model.
        dataset: An iterable of batches: images, or tuples whose first item
            is the images (e.g. a `tf.data.Dataset` of `(images, labels)`).
        batches: Number of batches to use (>= 1). A dataset that ends
            earlier is used whole.

    Returns:
        BatchNorm layer name -> examples its statistics cover (summed over
        its calls: a BatchNorm called twice per forward pass counts twice).
        A looped stage's rows are named as the unrolled network's
        BatchNorms, `stage{k}_reuse{i}_dw_bn` / `_pw_bn`.

    Raises:
        ValueError: for `batches` < 1, or a dataset that yields nothing.
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"`batches` must be an integer >= 1. Received: batches={batches!r}")
    layers = _batchnorm_layers(model)
    if not layers:
        return {}
    # One slot per pair of moving statistics: a BatchNorm has one, a looped
    # stage two, whose (N, C) rows are its iterations' BatchNorms.
    slots = {id(layer): [] for layer in layers}
    pairs = []
    for layer in layers:
        for name, moving_mean, moving_variance in _statistics(layer):
            slots[id(layer)].append(len(pairs))
            pairs.append((layer, name, moving_mean, moving_variance))
    recorded: list = []
    originals = {}

    def recording(layer):
        original = layer.call
        slot = slots[id(layer)]

        if not isinstance(layer, keras.layers.BatchNormalization):  # a looped stage

            def call_stage(inputs, *args, **kwargs):
                outputs, stats = layer.run_iterations(inputs, True)
                count = keras.ops.shape(inputs)[0]
                for i, kind in zip(slot, ("dw_bn", "pw_bn"), strict=True):
                    recorded.append((i, count, *stats[kind]))
                return outputs

            return call_stage

        def call(inputs, *args, **kwargs):
            x = keras.ops.cast(inputs, "float32")
            axis = layer.axis % len(x.shape)
            reduce = [a for a in range(len(x.shape)) if a != axis]
            mean = keras.ops.mean(x, axis=reduce, keepdims=True)
            # The batch's own (biased) variance, as the layer computes it;
            # E[x^2] - mean^2 in float32 would cancel badly for large means.
            variance = keras.ops.mean(keras.ops.square(x - mean), axis=reduce)
            count = keras.ops.shape(x)[0]
            recorded.append((slot[0], count, keras.ops.squeeze(mean), variance))
            return original(inputs, *args, **kwargs)

        return call

    def forward(images):
        recorded.clear()
        model(images, training=True)
        return list(recorded)

    if keras.backend.backend() == "tensorflow":
        # Optional: TensorFlow, imported on its backend's path only.
        import tensorflow as tf

        # No tensor-dependent Python control flow: nothing for AutoGraph to
        # convert (it warns on the closure instead).
        forward = tf.function(forward, reduce_retracing=True, autograph=False)

    sums = [
        [0.0, np.zeros(moving_mean.shape), np.zeros(moving_mean.shape)]
        for _, _, moving_mean, _ in pairs
    ]
    for layer in layers:
        originals[layer] = layer.__dict__.get("call")
        object.__setattr__(layer, "call", recording(layer))
    try:
        used = 0
        for batch in dataset:
            if used == batches:
                break
            for i, count, mean, variance in forward(_images(batch)):
                # Every position of an example counts alike, so weighting a
                # call by its examples weights it by its positions.
                shape = sums[i][1].shape
                count = float(keras.ops.convert_to_numpy(count))
                mean = keras.ops.convert_to_numpy(mean).astype(np.float64).reshape(shape)
                variance = keras.ops.convert_to_numpy(variance).astype(np.float64).reshape(shape)
                sums[i][0] += count
                sums[i][1] += count * mean
                sums[i][2] += count * (variance + mean**2)
            used += 1
    finally:
        for layer, original in originals.items():
            if original is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", original)
    if used == 0:
        raise ValueError("`dataset` yielded no batch to compute BatchNorm statistics from.")
    covered = {}
    for (layer, name, moving_mean, moving_variance), (count, mean_sum, square_sum) in zip(
        pairs, sums, strict=True
    ):
        if count == 0:  # not on the forward path
            continue
        mean = mean_sum / count
        variance = np.maximum(square_sum / count - mean**2, 0.0)
        moving_mean.assign(mean.astype(moving_mean.dtype))
        moving_variance.assign(variance.astype(moving_variance.dtype))
        if isinstance(layer, keras.layers.BatchNormalization):
            covered[name] = int(count)
        else:  # named as the unrolled network's BatchNorms
            for i in range(layer.layer_reuse):
                covered[f"{layer.name}_reuse{i + 1}_{name}"] = int(count)
    return covered


class PreciseBatchNorm(keras.callbacks.Callback):
    """Recomputes BatchNorm statistics before every evaluation during `fit`.

    Calls `recompute_batchnorm_statistics(model, dataset, batches)` when
    `fit` starts an epoch's validation (`on_test_begin`), so the validation
    metrics, and the backups and model saved at epoch end, use population
    statistics; in an epoch without validation it recomputes at the epoch's
    end. Training itself is unchanged: training-mode BatchNorm normalizes
    with the batch's statistics and the moving averages continue from the
    recomputed values.

    Args:
        dataset: Batches to compute the statistics from, usually the
            training data (augmented, as the authors' PreciseBN does).
        batches: Batches per recomputation (>= 1).
    """

    def __init__(self, dataset, batches: int):
        super().__init__()
        if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
            raise ValueError(f"`batches` must be an integer >= 1. Received: batches={batches!r}")
        self.dataset = dataset
        self.batches = batches
        self._in_fit = False
        self._done_this_epoch = False

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._done_this_epoch = False

    def _recompute(self) -> None:
        recompute_batchnorm_statistics(self.model, self.dataset, self.batches)
        self._done_this_epoch = True

    def on_test_begin(self, logs=None):
        if self._in_fit:
            self._recompute()

    def on_epoch_end(self, epoch, logs=None):
        if not self._done_this_epoch:
            self._recompute()

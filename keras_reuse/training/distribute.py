"""tf.distribute strategies for `model.fit`, with the multi-worker workaround.

`make_strategy("default" | "mirrored" | "multi_worker")` returns the
strategy; `fit_compat(model, strategy)` is a context manager around
`model.fit` that works around two upstream bugs that break Keras 3's
`fit` under `tf.distribute.MultiWorkerMirroredStrategy` (TF 2.16 to at
least 2.21 with Keras 3.15):

1. keras-team/keras#20585: `fit` first calls `_maybe_symbolic_build`, which
   eagerly `strategy.reduce`s the first distributed batch only to learn its
   shapes, and fails with "Attempt to convert a value (PerReplica:...)".
   We build the model, loss and metrics symbolically from the dataset's
   `element_spec` instead (nothing is read from the data) and skip that call
   on this model instance.
2. tensorflow/tensorflow#72388: Keras reduces the scalar metric results of
   each step with `strategy.reduce("MEAN", value, axis=0)`, which fails on
   scalars ("Invalid reduction dimension 0 for input with 0 dimensions").
   While `fit` runs, metric results are reduced with `axis=None`.

Both patches are scoped to the `with` block and do nothing for other
strategies. Remove them when the upstream issues are fixed.

TensorFlow loads when a strategy is made, not when this module is imported:
the strategy names and `check_backend` serve `TrainConfig` and the command
line where TensorFlow is not installed, and a distributed strategy there
raises one ImportError naming the flag.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import keras

from keras_reuse.utils.backends import require_installed, require_tensorflow

if TYPE_CHECKING:
    import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


def _tensorflow(feature: str) -> Any:
    """TensorFlow, or an ImportError naming `feature` where it is not installed.

    The strategy names and the checks above read without it, so the command
    line and `TrainConfig` work on the model side alone.
    """
    require_installed(feature)
    # Lazy: TensorFlow only where a strategy is made or used.
    import tensorflow as tf

    return tf


def split_cpu(num_devices: int) -> None:
    """Splits the CPU into `num_devices` logical devices (before TF starts).

    MirroredStrategy then has several CPU replicas, which lets data-parallel
    training be exercised on a machine without GPUs.

    Raises:
        ImportError: where TensorFlow is not installed.
    """
    tf = _tensorflow("--cpu_devices (tf.distribute)")
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
    )


def check_backend(name: str) -> None:
    """Raises ValueError if the strategy `name` needs a backend Keras is not running.

    "default" (no distribution) runs on every backend; the others are
    `tf.distribute` strategies, which only the TensorFlow backend uses.

    Raises:
        ImportError: for a distributed strategy where TensorFlow is not installed.
        ValueError: for a distributed strategy under another Keras backend.
    """
    if name != "default":
        require_installed(f"--strategy={name} (tf.distribute)")
        require_tensorflow(
            f"--strategy={name} (tf.distribute)",
            "Run with KERAS_BACKEND=tensorflow, or train on one device with "
            "--strategy=default (keras.distribution is the JAX backend's multi-device API).",
        )


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Returns the `tf.distribute` strategy called `name`.

    Args:
        name: "default" (no distribution), "mirrored" (one machine: all GPUs,
            else all logical CPU devices) or "multi_worker" (several
            machines, described by the `TF_CONFIG` environment variable).

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ImportError: where TensorFlow is not installed.
        ValueError: for an unknown name, or a distributed strategy under a
            backend other than TensorFlow.
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"`strategy` must be one of {', '.join(STRATEGIES)}. Received: strategy={name!r}"
        )
    check_backend(name)
    tf = _tensorflow(f"--strategy={name} (tf.distribute)")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process should write the run's outputs."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    if resolver.task_type == "chief":
        return True
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and ("chief" not in resolver.cluster_spec().as_dict())
    )


def _is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    tf = _tensorflow("tf.distribute")
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


@contextlib.contextmanager
def fit_compat(
    model: keras.Model, strategy: tf.distribute.Strategy, dataset: tf.data.Dataset
) -> Iterator[None]:
    """Makes `model.fit(dataset)` work under MultiWorkerMirroredStrategy.

    A no-op for every other strategy. See the module docstring for the two
    upstream bugs and what is patched.

    Args:
        model: A compiled model, created under `strategy.scope()`.
        strategy: The strategy `model` was created under.
        dataset: The training dataset (only its `element_spec` is used).
    """
    if not _is_multi_worker(strategy):
        yield
        return
    tf = _tensorflow("tf.distribute")
    # Optional: TensorFlow, imported on its backend's path only.
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def symbolic(spec):
        return keras.KerasTensor((None, *spec.shape[1:]), spec.dtype.name)

    with strategy.scope():
        model._symbolic_build(data_batch=tf.nest.map_structure(symbolic, dataset.element_spec))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and _is_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original
        del model._maybe_symbolic_build

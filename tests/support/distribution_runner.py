"""One side of the distributed-training check in tests/training/test_training.py.

`python tests/support/distribution_runner.py STRATEGIES DIR` trains a small LruNet-1
three steps with `keras_reuse.compile_for_training` under each of the comma-separated
`STRATEGIES` in turn ("default"; "mirrored" over two logical CPU devices;
"multi_worker" from `TF_CONFIG`, one process per worker) and writes its trainable
weights to `DIR/STRATEGY-TASK.npz` with a JSON line per run. Every run starts from
`DIR/initial.weights.h5` (written by the first, default, run) and reads the same
three global batches of 16.

Each global batch is one batch of 8 images twice: whatever replica gets which half,
every replica's BatchNorm sees the statistics the global batch has (Keras's BatchNorm
is not synchronized across replicas; with distinct halves the per-replica statistics,
and so the gradients, would differ from one-device training by more than rounding).
The averaged per-replica gradients are then the global batch's gradient.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

GLOBAL_BATCH = 16
STEPS = 3


def batches() -> tuple[np.ndarray, np.ndarray]:
    """`STEPS` global batches, each a half-batch repeated: `(STEPS * 16, 28, 28, 1)`."""
    rng = np.random.default_rng(0)
    half = GLOBAL_BATCH // 2
    x = rng.random((STEPS, half, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, (STEPS, half))
    x = np.concatenate([x, x], axis=1).reshape(STEPS * GLOBAL_BATCH, 28, 28, 1)
    y = np.concatenate([y, y], axis=1).reshape(STEPS * GLOBAL_BATCH)
    return x, y


def main(names: str, directory: str) -> None:
    from keras_reuse.training import distribute

    if "mirrored" in names.split(","):
        distribute.split_cpu(2)
    for name in names.split(","):
        train(name, directory)


def train(name: str, directory: str) -> None:
    """One run under the strategy `name`; see the module docstring."""
    # After `split_cpu`: TensorFlow's devices are fixed when it first uses them.
    import keras
    import tensorflow as tf

    import keras_reuse
    from keras_reuse.applications import LruNet
    from keras_reuse.training import distribute

    strategy = distribute.make_strategy(name)
    initial = os.path.join(directory, "initial.weights.h5")
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = LruNet(
            layer_reuse=1,
            width_multiplier=0.125,
            input_shape=(28, 28, 1),
            dropout=0.0,
            classifier_activation=None,
        )
        if name == "default":
            model.save_weights(initial)
        else:
            model.load_weights(initial)
        keras_reuse.compile_for_training(model, 0.05)
    x, y = batches()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    if name == "multi_worker":  # as keras_reuse.training.builders does
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        dataset = dataset.with_options(options)
    with distribute.fit_compat(model, strategy, dataset):
        history = model.fit(dataset, epochs=1, verbose=0)
    resolver = getattr(strategy, "cluster_resolver", None)
    task = resolver.task_id if resolver is not None and resolver.cluster_spec().as_dict() else 0
    np.savez(
        os.path.join(directory, f"{name}-{task}.npz"),
        **{v.path: keras.ops.convert_to_numpy(v) for v in model.trainable_weights},
    )
    result = {
        "strategy": name,
        "task": task,
        "num_replicas": strategy.num_replicas_in_sync,
        "iterations": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "loss": [float(v) for v in history.history["loss"]],
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

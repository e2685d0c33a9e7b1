"""Looped (`reuse_loop=True`) vs unrolled LruNet on one Keras backend.

Imported by tests/applications/test_reuse_loop.py on TensorFlow; run as a script under
another backend (`KERAS_BACKEND=jax python tests/support/reuse_loop_runner.py N`) it
prints the same comparison as one JSON line. Both networks get the same
seeded weights (BatchNorm statistics randomized too) through
`convert_reuse_weights`; every figure is a relative error, looped against
unrolled: inference logits, training-mode logits, the moving statistics
after that training call, and the gradient of every trainable weight (the
looped stacks compared row by row with the unrolled layers').
"""

from __future__ import annotations

import json
import re
import sys

import keras
import numpy as np

from keras_reuse.applications.lrunet import model as lrunet
from keras_reuse.applications.lrunet.model import LruNet, convert_reuse_weights

INPUT_SHAPE = (28, 28, 3)
WIDTH = 0.125  # stages of 8, 16, 32, 64 channels
BATCH = 4
STAGE_INPUT_SHAPE = (6, 6, 16)
_STACKED = re.compile(r"^(stage\d)/(dw_bn|pw_bn)_(gamma|beta|moving_mean|moving_variance)$")


def _stage_model(layer_reuse: int, loop: bool) -> keras.Model:
    """One 16-channel LruNet stage on 6x6 inputs, pooled, a Dense head."""
    inputs = keras.Input(STAGE_INPUT_SHAPE)
    if loop:
        x = lrunet._lru_stage_loop(inputs, 16, layer_reuse, 1)
    else:
        x = lrunet._lru_stage(inputs, 16, layer_reuse, "stage1", lrunet._LAYER_TYPES)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="fc")(x))


def build_pair(
    layer_reuse: int, seed: int = 0, stage_only: bool = False
) -> tuple[keras.Model, keras.Model]:
    """(unrolled, looped) LruNets with the same randomized weights, logits out.

    `stage_only`: one stage and a Dense head instead of the network (cheap
    to compile under XLA).
    """
    kwargs = dict(
        layer_reuse=layer_reuse,
        width_multiplier=WIDTH,
        input_shape=INPUT_SHAPE,
        dropout=0.0,
        classifier_activation=None,
    )
    keras.utils.set_random_seed(seed)
    unrolled = (
        _stage_model(layer_reuse, False) if stage_only else LruNet(**kwargs, reuse_loop=False)
    )
    rng = np.random.default_rng(seed)
    for variable in unrolled.weights:
        name = variable.path.rsplit("/", 1)[-1]
        shape = variable.shape
        if name in ("gamma", "moving_variance"):
            variable.assign((1.0 + 0.5 * rng.random(shape)).astype("float32"))
        elif name in ("beta", "moving_mean"):
            variable.assign((0.2 * rng.standard_normal(shape)).astype("float32"))
    looped = _stage_model(layer_reuse, True) if stage_only else LruNet(**kwargs, reuse_loop=True)
    looped = convert_reuse_weights(unrolled, looped)
    return unrolled, looped


def batch(seed: int = 1, shape: tuple = INPUT_SHAPE) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, *shape)).astype("float32")
    return x, rng.integers(0, 10, size=(BATCH,))


def as_unrolled(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Looped variable paths -> unrolled ones (stacks split into rows)."""
    out = {}
    for path, value in values.items():
        match = _STACKED.match(path)
        if match:
            stage, kind, weight = match.groups()
            for i, row in enumerate(value):
                out[f"{stage}_reuse{i + 1}_{kind}/{weight}"] = row
        else:
            path = re.sub(r"^(stage\d)/depthwise_kernel$", r"\1_dw/kernel", path)
            path = re.sub(r"^(stage\d)/pointwise_kernel$", r"\1_pw/kernel", path)
            out[path] = value
    return out


def gradients(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """d(loss)/d(weight) of a training-mode call, by variable path (no state change)."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    backend = keras.backend.backend()
    trainable = model.trainable_variables
    if backend == "tensorflow":
        import tensorflow as tf

        saved = [v.numpy() for v in model.non_trainable_variables]
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, [v.value for v in trainable])
        for v, s in zip(model.non_trainable_variables, saved, strict=True):
            v.assign(s)
    elif backend == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]

        def compute(values):
            logits, _ = model.stateless_call(values, non_trainable, x, training=True)
            return loss_fn(y, logits)

        grads = jax.grad(compute)([v.value for v in trainable])
    elif backend == "torch":
        import torch

        saved = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
        for v in trainable:
            v.value.grad = None
        loss = loss_fn(torch.as_tensor(y), model(x, training=True))
        loss.backward()
        grads = [v.value.grad for v in trainable]
        for v, s in zip(model.non_trainable_variables, saved, strict=True):
            v.assign(s)
    else:
        raise ValueError(f"backend {backend!r}")
    return {v.path: keras.ops.convert_to_numpy(g) for v, g in zip(trainable, grads, strict=True)}


def relative(a, b) -> float:
    a = np.asarray(keras.ops.convert_to_numpy(a), np.float64)
    b = np.asarray(keras.ops.convert_to_numpy(b), np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def per_tensor(looped: dict, unrolled: dict) -> dict[str, float]:
    looped = as_unrolled(looped)
    if set(looped) != set(unrolled):
        raise AssertionError(f"paths differ: {sorted(set(looped) ^ set(unrolled))[:5]}")
    return {path: relative(looped[path], unrolled[path]) for path in unrolled}


def per_tensor_scaled(looped: dict, unrolled: dict, floor: float = 1e-2) -> dict[str, float]:
    """Gradient errors: ||a - b|| / max(||b||, floor * the largest ||b||).

    The floor is for gradients that are zero in exact arithmetic and rounding
    noise in float32: the depthwise BatchNorms' betas (a per-channel shift
    before the pointwise BatchNorm, which removes it in training mode).
    """
    if set(looped) != set(unrolled):
        raise AssertionError(f"paths differ: {sorted(set(looped) ^ set(unrolled))[:5]}")
    norms = {p: float(np.linalg.norm(np.asarray(v, np.float64))) for p, v in unrolled.items()}
    scale = floor * max(norms.values())
    return {
        p: float(
            np.linalg.norm(np.asarray(looped[p], np.float64) - np.asarray(unrolled[p], np.float64))
        )
        / max(norms[p], scale, 1e-30)
        for p in unrolled
    }


def weights(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}


def compare(layer_reuse: int, stage_only: bool = False) -> dict:
    """Every looped-vs-unrolled relative error for one N."""
    unrolled, looped = build_pair(layer_reuse, stage_only=stage_only)
    x, y = batch(shape=STAGE_INPUT_SHAPE if stage_only else INPUT_SHAPE)
    result = {"backend": keras.backend.backend(), "layer_reuse": layer_reuse}
    result["inference"] = relative(
        keras.ops.convert_to_numpy(looped(x, training=False)),
        keras.ops.convert_to_numpy(unrolled(x, training=False)),
    )
    looped_grads = as_unrolled(gradients(looped, x, y))
    unrolled_grads = gradients(unrolled, x, y)
    grads = per_tensor_scaled(looped_grads, unrolled_grads)
    result["gradients_max"] = max(grads.values())
    result["gradients_worst"] = max(grads, key=grads.get)
    result["gradients_count"] = len(grads)
    result["training"] = relative(
        keras.ops.convert_to_numpy(looped(x, training=True)),
        keras.ops.convert_to_numpy(unrolled(x, training=True)),
    )
    moving = {
        p: e for p, e in per_tensor(weights(looped), weights(unrolled)).items() if "moving" in p
    }
    result["moving_max"] = max(moving.values())
    result["moving_count"] = len(moving)
    return result


if __name__ == "__main__":
    print(json.dumps(compare(int(sys.argv[1]), stage_only="--stage" in sys.argv)), flush=True)

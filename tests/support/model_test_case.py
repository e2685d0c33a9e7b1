"""One check every registered model runs through (keras-hub's `run_backbone_test` idea).

`run_model_test(name, tmp_path)` builds the model of `CASES[name]` (a small
configuration), runs it, saves and reloads it as `.keras` with the same
outputs and reuse table, checks that `reuse_summary` counts the model's own
trainable parameters, and builds it under mixed_float16 with float16 compute,
float32 variables and a float32 output. tests/applications/test_applications.py runs it
for every name of `list_models()` and fails for a registered model without
a case.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np

import keras_reuse
from keras_reuse import applications

# name -> (constructor keywords, input batch shape): small, fast configurations.
CASES = {
    "sharesnet18": (dict(num_classes=5, input_shape=(64, 64, 3)), (2, 64, 64, 3)),
    "sharesnet34": (dict(num_classes=5, input_shape=(32, 32, 3)), (2, 32, 32, 3)),
    "sharesnet50": (dict(num_classes=5, input_shape=(32, 32, 3)), (2, 32, 32, 3)),
    "sharesnet101": (dict(num_classes=5, input_shape=(32, 32, 3)), (2, 32, 32, 3)),
    "sharesnet152": (dict(num_classes=5, input_shape=(32, 32, 3)), (1, 32, 32, 3)),
    "sharesnet164": (dict(num_classes=10), (2, 32, 32, 3)),
    "wide_sharesnet": (dict(depth=16, width=1, num_classes=10, dropout=0.3), (2, 32, 32, 3)),
    "lrunet": (dict(layer_reuse=3, input_shape=(28, 28, 1)), (2, 28, 28, 1)),
}


def run_model_test(name: str, tmp_path: Path, mixed_precision: bool = True) -> None:
    """Asserts what every registered model must do; see the module docstring."""
    kwargs, x_shape = CASES[name]
    model = applications.create(name, **kwargs)
    x = np.random.default_rng(2).random(x_shape, dtype=np.float32)
    # Eager calls: `predict` would trace each deep network (twice) for 2 images.
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    assert expected.shape == (x_shape[0], kwargs.get("num_classes", 10))
    assert np.isfinite(expected).all()

    summary = keras_reuse.reuse_summary(model)
    own = sum(math.prod(w.shape) for w in model.trainable_weights)
    assert summary.unique_params == own, (summary.unique_params, own)
    assert summary.unrolled_params >= summary.unique_params

    path = tmp_path / f"{name}.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    actual = keras.ops.convert_to_numpy(restored(x, training=False))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    assert keras_reuse.reuse_summary(restored).calls == summary.calls

    if not mixed_precision:
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = applications.create(name, **kwargs)
    finally:
        keras.config.set_dtype_policy(previous)
    kernels = [layer for layer in mixed.layers if getattr(layer, "kernel", None) is not None]
    assert kernels
    for layer in kernels[:-1]:
        assert layer.compute_dtype == "float16", layer.name
    assert all(w.dtype == "float32" for w in mixed.weights)
    assert mixed.output.dtype == "float32"

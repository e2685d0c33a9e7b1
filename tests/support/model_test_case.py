"""One check every registered model runs through (keras-hub's `run_backbone_test` idea).

`run_model_test(name, tmp_path)` builds the model of `CASES[name]` (a small
configuration), runs it, saves and reloads it as `.keras` with the same
outputs and reuse table, checks that `reuse_summary` counts the model's own
trainable parameters, and builds it under mixed_float16 with float16 compute,
float32 variables and a float32 output. tests/applications/test_applications.py runs it
for every name of `list_models()` and fails for a registered model without
a case.

`run_data_format_test(name, tmp_path)` builds the same case in both image
data formats, the channels-first one through
`keras.config.set_image_data_format` with `input_shape` read channels first
(keras.applications' convention), and checks that the same weights give
the same outputs on transposed inputs: logits, every stage's features,
the first stage's in training mode, the reuse table, and a `.keras` round trip
that stays channels first when loaded under channels_last. It needs a
backend that runs channels first on a CPU: the tests run it under PyTorch
(tests/support/data_format_runner.py).
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


def _transposed_case(name: str) -> tuple[dict, tuple]:
    """`CASES[name]` read channels first: `input_shape` and the batch shape transposed."""
    kwargs, (batch, height, width, channels) = CASES[name]
    kwargs = dict(kwargs)
    if "input_shape" in kwargs:
        h, w, c = kwargs["input_shape"]
        kwargs["input_shape"] = (c, h, w)
    return kwargs, (batch, channels, height, width)


def _relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30))


def _numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


# Same arithmetic in another memory order: float32 sums in another order.
# Measured on PyTorch at these sizes, as a fraction of the largest |output|:
# up to 4.5e-5 (ShaResNet-34's logits at random weights: sums of 512 pooled
# features that largely cancel, while those features agree to 6.9e-7),
# 3.4e-6 for every stage's features, 4.5e-6 for the first stage in training
# mode. The tolerance is about twice the largest.
DATA_FORMAT_RTOL = 1e-4


def run_data_format_test(name: str, tmp_path: Path) -> dict:
    """Asserts that `CASES[name]` computes the same in both image data formats.

    Returns:
        The relative errors measured, by what was compared.
    """
    kwargs, x_shape = CASES[name]
    first_kwargs, first_shape = _transposed_case(name)
    keras.utils.set_random_seed(0)
    last = applications.create(name, **kwargs, data_format="channels_last")
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        # The global format is the default, as in keras.applications.
        first = applications.create(name, **first_kwargs)
    finally:
        keras.config.set_image_data_format(previous)
    assert tuple(first.input_shape[1:]) == first_shape[1:]
    formats = {getattr(layer, "data_format", None) for layer in first.layers} - {None}
    assert formats == {"channels_first"}, formats
    axes = {layer.axis for layer in first.layers if hasattr(layer, "moving_mean")}
    assert axes <= {1}, axes

    rng = np.random.default_rng(3)
    # Random BatchNorm statistics, so that no output is trivially zero.
    for layer in last.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            (channels,) = layer.gamma.shape
            layer.moving_mean.assign(rng.normal(0.0, 0.1, channels).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, channels).astype(np.float32))
    weights = last.get_weights()
    first.set_weights(weights)
    x = rng.random(x_shape, dtype=np.float32)
    xt = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    errors = {}

    expected = _numpy(last(x, training=False))
    errors["logits"] = _relative_error(_numpy(first(xt, training=False)), expected)

    features_last = applications.feature_extractor(last)(x, training=False)
    features_first = applications.feature_extractor(first)(xt, training=False)
    assert list(features_first) == list(features_last)
    for stage, value in features_last.items():
        errors[f"features_{stage}"] = _relative_error(
            _numpy(features_first[stage]).transpose(0, 2, 3, 1), _numpy(value)
        )

    # Training mode (batch statistics) on the first stage, where each
    # channel's statistics have many positions. Deeper, a batch of 1-2
    # images at 1x1 or 2x2 makes the batch variance nearly zero, and the
    # normalization amplifies any rounding (the logits' relative error was
    # 0.1-0.45 for ShaResNet-50 and -101 in both orders of summation).
    stage, _ = next(iter(features_last.items()))
    for model in (last, first):  # no dropout's random masks
        for layer in model.layers:
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0
    errors[f"training_features_{stage}"] = _relative_error(
        _numpy(applications.feature_extractor(first)(xt, training=True)[stage]).transpose(
            0, 2, 3, 1
        ),
        _numpy(applications.feature_extractor(last)(x, training=True)[stage]),
    )
    first.set_weights(weights)  # training mode moved the BatchNorm statistics
    last.set_weights(weights)

    summary_last = keras_reuse.reuse_summary(last)
    summary_first = keras_reuse.reuse_summary(first)
    for field in ("unique_params", "unrolled_params", "non_trainable_params", "macs"):
        assert getattr(summary_first, field) == getattr(summary_last, field), field
    assert summary_first.calls == summary_last.calls

    path = tmp_path / f"{name}_channels_first.keras"
    first.save(path)
    # Loaded where the global format is channels_last (the default): the
    # file's own format holds.
    assert keras.config.image_data_format() == "channels_last"
    restored = keras.models.load_model(path)
    assert tuple(restored.input_shape[1:]) == first_shape[1:]
    errors["restored_logits"] = _relative_error(_numpy(restored(xt, training=False)), expected)

    for what, error in errors.items():
        assert error <= DATA_FORMAT_RTOL, (what, error)
    return errors


def run_preset_data_format_test() -> dict:
    """Asserts that every published Fashion-MNIST LruNet gives the same logits channels first.

    The shipped weights files load into either format; the input is
    `(1, 28, 28)` channels first.

    Returns:
        Preset name -> relative error of the channels-first logits.
    """
    # Lazy: the preset table, only for this check.
    from keras_reuse.applications.lrunet.presets import PRESETS

    errors = {}
    x = np.random.default_rng(4).random((2, 28, 28, 1), dtype=np.float32)
    for preset in PRESETS.values():
        if preset.dataset != "fashion_mnist":
            continue
        logits = {}
        for data_format, images in (
            ("channels_last", x),
            ("channels_first", x.transpose(0, 3, 1, 2)),
        ):
            model = applications.create(
                preset.name, classifier_activation=None, data_format=data_format
            )
            logits[data_format] = _numpy(model(np.ascontiguousarray(images), training=False))
        errors[preset.name] = _relative_error(logits["channels_first"], logits["channels_last"])
        assert errors[preset.name] <= DATA_FORMAT_RTOL, (preset.name, errors[preset.name])
    assert errors, "no Fashion-MNIST preset"
    return errors

"""Mixed precision on CPU: training steps, loss scaling, the fused BatchNorm's float16
path, and what `--mixed_precision=auto` picks for a faked device list and CPU.

Mixed precision is the same training as float32: a few steps from the same start
end within a stated multiple of the compute dtype's unit roundoff of float32's
weights, and float16's loss scale skips an overflowing step (weights untouched,
scale halved) and trains on as if it had not come."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_reuse
from keras_reuse import training
from keras_reuse.applications import LruNet
from keras_reuse.layers import FusedBatchNormalization
from keras_reuse.training import precision

# A tiny `keras-reuse train` run on a real slice of Fashion-MNIST.
QUICK = dict(
    model="lrunet",
    dataset="fashion_mnist",
    layer_reuse=1,
    epochs=1,
    batch_size=16,
    steps_per_epoch=2,
    max_train_examples=64,
    max_eval_examples=32,
    verbose=0,
)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_lrunet1_fits_under_mixed_precision_with_float32_predictions(policy):
    keras.utils.set_random_seed(0)
    with precision.dtype_policy_scope(policy):
        model = LruNet(layer_reuse=1)
    assert keras.config.dtype_policy().name == "float32"
    assert model.get_layer("stage1_pw").compute_dtype == policy.removeprefix("mixed_")
    assert model.get_layer("stage1_pw").kernel.dtype == "float32"  # float32 master weights
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((8, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 8)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    predictions = model.predict(x, verbose=0)
    assert predictions.dtype == np.float32
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)
    # Keras scales the loss for float16 only (bfloat16 has float32's range).
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")
    if scaled:
        # The dynamic loss scale ran: every step either applied its gradients
        # or found them non-finite in float16, skipped them and halved the scale.
        optimizer = model.optimizer
        applied = int(keras.ops.convert_to_numpy(optimizer.iterations))
        scale = float(keras.ops.convert_to_numpy(optimizer.dynamic_scale))
        halvings = np.log2(optimizer.initial_scale / scale)
        assert halvings == int(halvings) and applied + int(halvings) == 2


def test_training_wraps_float16_in_a_loss_scale_optimizer(tmp_path):
    config = training.TrainConfig.from_values(
        dict(QUICK, output_dir=str(tmp_path / "fp16"), mixed_precision="mixed_float16")
    )
    results = training.train(config)
    assert results["mixed_precision"] == "mixed_float16"
    assert np.isfinite(results["test_loss"])
    model = keras.models.load_model(results["model_path"])
    assert model.get_layer("stage1_pw").compute_dtype == "float16"
    assert model.get_layer("predictions").compute_dtype == "float32"
    # Saved with the model: the optimizer training.py compiled it with.
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert type(model.optimizer.inner_optimizer).__name__ == "CoupledSGD"
    assert keras.config.dtype_policy().name == "float32"


def _bn_pair(policy):
    kwargs = dict(momentum=0.9, epsilon=1e-5, dtype=policy)
    return FusedBatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)


def test_fused_batchnorm_float16_path_equals_stock_batchnorm():
    rng = np.random.default_rng(6)
    x = tf.cast(rng.standard_normal((8, 5, 5, 16)).astype(np.float32) * 2 + 1, tf.float16)
    fused, stock = _bn_pair("mixed_float16")
    fused.build(x.shape)
    stock.build(x.shape)
    weights = [
        rng.uniform(0.5, 1.5, 16),
        rng.standard_normal(16),
        rng.standard_normal(16) * 0.1,
        rng.uniform(0.5, 2.0, 16),
    ]
    for layer in (fused, stock):
        layer.set_weights([w.astype(np.float32) for w in weights])
    y_fused = fused(x, training=True)
    y_stock = stock(x, training=True)
    assert y_fused.dtype == y_stock.dtype == tf.float16
    assert fused.moving_mean.dtype == "float32"
    # float16 keeps 11 significant bits: 1e-3 relative on outputs of order 1-3.
    np.testing.assert_allclose(
        tf.cast(y_fused, tf.float32).numpy(), tf.cast(y_stock, tf.float32).numpy(), atol=1e-2
    )
    # Statistics are accumulated in float32 from the same float16 inputs.
    np.testing.assert_allclose(
        fused.moving_mean.numpy(), stock.moving_mean.numpy(), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        fused.moving_variance.numpy(), stock.moving_variance.numpy(), rtol=1e-4
    )


def _fake_devices(monkeypatch, gpus):
    real = tf.config.list_physical_devices

    def list_physical_devices(device_type=None):
        if device_type == "GPU":
            return gpus
        return real(device_type)

    monkeypatch.setattr(tf.config, "list_physical_devices", list_physical_devices)


@pytest.mark.parametrize(
    "gpus, bf16_cpu, expected",
    [
        (["/physical_device:GPU:0"], False, "mixed_float16"),
        (["/physical_device:GPU:0"], True, "mixed_float16"),
        ([], True, "mixed_bfloat16"),
        ([], False, "float32"),
    ],
)
def test_auto_precision_follows_the_devices(monkeypatch, gpus, bf16_cpu, expected):
    _fake_devices(monkeypatch, gpus)
    monkeypatch.setattr(precision, "cpu_supports_bfloat16", lambda: bf16_cpu)
    assert precision.resolve_precision("auto") == expected
    # An explicit choice is never overridden.
    assert precision.resolve_precision("float32") == "float32"


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("fpu sse2 avx2 fma", False),
        ("fpu avx2 avx512f avx512_bf16", True),
        ("fpu avx2 amx_tile amx_bf16", True),
    ],
)
def test_bfloat16_cpu_detection_reads_the_cpu_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert precision.cpu_supports_bfloat16(str(cpuinfo)) is expected
    assert precision.cpu_supports_bfloat16(str(tmp_path / "missing")) is False


# ------------------------------------------------- the same training, in fewer bits --

# A tiny LruNet-1 (stages of 8 to 64 channels) and three batches of 32 images whose
# pixels (k/16) every compute dtype holds exactly, so rounding starts inside the network.
_STEPS, _BATCH, _LR = 3, 32, 0.01
# The unit roundoff of each compute dtype: 2**-(significand bits).
UNIT_ROUNDOFF = {"mixed_float16": 2.0**-11, "mixed_bfloat16": 2.0**-8}
# Tolerance: ||w_mixed - w_float32|| <= K * u * ||w_float32 - w_0||, the rounding of
# each step's gradient (relative error K * u) carried into the weights it moves. K is
# this network's amplification of rounding, measured, not derived: the weight gradient
# of a convolution followed by a training-mode BatchNorm is a sum whose terms mostly
# cancel (BatchNorm removes the mean of the signal it passes back), so its relative
# error is u times the cancellation ratio; the stem kernel's dominates (64-75% of the
# deviation). Measured (this AVX2 CPU, oneDNN off, under load): K = 182 for float16
# (relative deviation 0.089) and 62 for bfloat16 (0.24); float16 loses more than its
# u suggests because its range makes Keras scale the loss. Bound: K = 400 and 130, about
# 2.2x and 2.1x the measured, far below a lost step (about 1/3 of the update) or a
# doubled learning rate (1.0) for float16, below the latter for bfloat16.
AMPLIFICATION = {"mixed_float16": 400, "mixed_bfloat16": 130}


def _tiny_lrunet(policy):
    keras.utils.set_random_seed(0)
    with precision.dtype_policy_scope(policy):
        return LruNet(
            layer_reuse=1,
            width_multiplier=0.125,
            input_shape=(28, 28, 1),
            dropout=0.0,
            classifier_activation=None,
        )


def _batches():
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 17, (_STEPS, _BATCH, 28, 28, 1)) / 16).astype(np.float32)
    return x, rng.integers(0, 10, (_STEPS, _BATCH))


def _train(model, x, y):
    """One applied step per batch: a float16 step its loss scale skipped is retried."""
    for xb, yb in zip(x, y, strict=True):
        for _ in range(20):
            before = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
            model.train_on_batch(xb, yb)
            if int(keras.ops.convert_to_numpy(model.optimizer.iterations)) > before:
                break
    return [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_weights]


def _norm(tensors):
    return float(np.sqrt(sum(np.sum(np.square(t, dtype=np.float64)) for t in tensors)))


@pytest.fixture(scope="module")
def float32_run():
    model = _tiny_lrunet("float32")
    initial = model.get_weights()
    start = [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_weights]
    keras_reuse.compile_for_training(model, _LR)
    return initial, start, _train(model, *_batches())


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_to_float32s_weights(float32_run, policy):
    initial, start, expected = float32_run
    model = _tiny_lrunet(policy)
    model.set_weights(initial)  # the same start (float32 master weights)
    keras_reuse.compile_for_training(model, _LR, loss_scale=policy == "mixed_float16")
    actual = _train(model, *_batches())
    update = _norm([e - s for e, s in zip(expected, start, strict=True)])
    deviation = _norm([a - e for a, e in zip(actual, expected, strict=True)])
    bound = AMPLIFICATION[policy] * UNIT_ROUNDOFF[policy]
    assert update > 0.01  # three steps moved the weights (0.076)
    assert deviation <= bound * update, (deviation / update, bound)


def test_float16_loss_scaling_skips_an_overflow_step_and_trains_on():
    x, y = _batches()
    runs = {}
    for overflow in (False, True):
        model = _tiny_lrunet("mixed_float16")
        keras_reuse.compile_for_training(model, _LR, loss_scale=True)
        optimizer = model.optimizer
        start = [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_weights]
        _train(model, x[:1], y[:1])
        if overflow:
            before = [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_weights]
            scale = float(keras.ops.convert_to_numpy(optimizer.dynamic_scale))
            steps = int(keras.ops.convert_to_numpy(optimizer.iterations))
            # A loss weighted 1e8: finite in float32, but its gradient overflows
            # float16 (65504) on its way back into the network.
            model.train_on_batch(x[1], y[1], sample_weight=np.full(_BATCH, 1e8, np.float32))
            after = [keras.ops.convert_to_numpy(v) for v in model.trainable_weights]
            assert float(keras.ops.convert_to_numpy(optimizer.dynamic_scale)) == scale / 2
            assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == steps  # skipped
            for a, b in zip(after, before, strict=True):
                np.testing.assert_array_equal(a, b)
        runs[overflow] = _train(model, x[1:], y[1:])
        assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == _STEPS
    # Training went on as if the overflow step had never come: the scale changed
    # by a power of two (exact) and the moving statistics that step updated are
    # not used in training mode. Measured 2.4e-12 of the update; bound 1e-6.
    update = _norm([w - s for w, s in zip(runs[False], start, strict=True)])
    deviation = _norm([a - b for a, b in zip(runs[True], runs[False], strict=True)])
    assert update > 0.01 and deviation <= 1e-6 * update, deviation / update

"""Mixed precision on CPU: training steps, loss scaling, the fused BatchNorm's float16
path, and what `--mixed_precision=auto` picks for a faked device list and CPU."""

import keras
import numpy as np
import pytest
import tensorflow as tf

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

"""benchmarks.qat: the fake-quantized twin of the export graph that int8 fine-tuning trains."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks.qat import (
    _KERNELS,
    FakeQuant,
    QuantizedKernel,
    copy_kernels,
    fake_quant_graph,
)
from keras_reuse import LruNet
from keras_reuse.layers import GroupedPointwiseConv


@pytest.fixture(scope="module")
def small():
    keras.utils.set_random_seed(0)
    model = LruNet(
        layer_reuse=2, width_multiplier=0.25, input_shape=(28, 28, 1), classifier_activation=None
    )
    images = np.random.default_rng(0).random((32, 28, 28, 1), dtype=np.float32)
    graph, qat = fake_quant_graph(model, images)
    return model, graph, qat, images


def test_every_op_output_is_fake_quantized_and_close_to_the_graph(small):
    model, graph, qat, images = small
    quantizers = [layer for layer in qat.layers if isinstance(layer, FakeQuant)]
    ops = [layer for layer in graph.layers if not isinstance(layer, keras.layers.InputLayer)]
    # One quantizer per call: a shared layer is called (and quantized) once per reuse.
    assert len(quantizers) > len(ops)
    expected = model(images, training=False).numpy()
    np.testing.assert_allclose(graph(images, training=False), expected, atol=1e-4)
    outputs = qat(images, training=False).numpy()
    scale = np.abs(expected).max()
    assert 0 < np.abs(outputs - expected).max() <= 0.25 * scale
    # 8 bits: at most 256 distinct output values.
    assert len(np.unique(outputs)) <= 256


def test_fine_tuning_trains_the_kernels_only_and_copies_them_back(small):
    model, graph, qat, images = small
    trainable = {layer.name for layer in graph.layers if layer.trainable and layer.weights}
    assert trainable and all("bn" not in name for name in trainable)
    before = {v.path: v.numpy() for v in graph.weights}
    qat.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    qat.fit(images, np.zeros((32, 10)), epochs=1, batch_size=16, verbose=0)
    changed = {v.path for v in graph.weights if not np.array_equal(v.numpy(), before[v.path])}
    assert changed and all(any(name in path for name in trainable) for path in changed)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy_kernels(graph, copy)
    for name in trainable:
        mine, theirs = copy.get_layer(name).weights, graph.get_layer(name).weights
        for a, b in zip(mine, theirs, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_range_follows_training_batches():
    layer = FakeQuant((0.0, 1.0), momentum=0.5)
    layer(np.zeros((1, 4), np.float32))
    layer(np.full((1, 4), 3.0, np.float32), training=True)
    assert float(layer.high.numpy()) == pytest.approx(2.0)  # 0.5 * 1 + 0.5 * 3
    assert float(layer.low.numpy()) == 0.0  # the range keeps 0


# Each kernel layer with the axes its per-output-channel int8 scale reduces.
_KERNEL_LAYERS = {
    "conv": (lambda: keras.layers.Conv2D(6, 3, strides=2, use_bias=True), (0, 1, 2)),
    "depthwise": (
        lambda: keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False),
        (0, 1),
    ),
    "grouped": (lambda: GroupedPointwiseConv(8, groups=2), (1,)),
}


@pytest.mark.parametrize("kind", sorted(_KERNEL_LAYERS))
def test_quantized_kernel_runs_the_layer_with_its_int8_kernel(kind):
    make, axes = _KERNEL_LAYERS[kind]
    layer = make()
    x = tf.constant(np.random.default_rng(1).standard_normal((2, 9, 9, 4), np.float32))
    float_out = layer(x).numpy()
    kernel = layer.kernel.numpy()
    scale = np.abs(kernel).max(axis=axes, keepdims=True) / 127.0
    int8 = np.clip(np.round(kernel / scale), -127, 127) * scale
    wrapped = QuantizedKernel(layer)
    with tf.GradientTape() as tape:
        out = wrapped(x)
        loss = tf.reduce_sum(out * out)
    grad = tape.gradient(loss, layer.kernel.value)
    assert wrapped.trainable_weights and layer.kernel in wrapped.trainable_weights
    assert not np.allclose(out.numpy(), float_out, atol=1e-6)  # the rounding shows
    layer.kernel.assign(int8)
    with tf.GradientTape() as tape:
        expected = layer(x)
        loss = tf.reduce_sum(expected * expected)
    # Straight through: the gradient of the op at the int8 kernel.
    expected_grad = tape.gradient(loss, layer.kernel.value)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad.numpy(), expected_grad.numpy(), rtol=1e-4, atol=1e-4)


def test_weights_true_wraps_each_kernel_layer_once(small):
    model, _, _, images = small
    graph, qat = fake_quant_graph(model, images, weights=True)
    kernels = {id(layer) for layer in graph.layers if isinstance(layer, _KERNELS)}
    wrapped = [layer for layer in qat.layers if isinstance(layer, QuantizedKernel)]
    assert kernels and {id(w.layer) for w in wrapped} == kernels
    assert len(wrapped) == len(kernels)  # a shared kernel is one wrapper, called per reuse
    outputs = qat(images, training=False).numpy()
    expected = model(images, training=False).numpy()
    assert 0 < np.abs(outputs - expected).max() <= 0.25 * np.abs(expected).max()


def test_a_grouped_conv2d_is_refused_with_its_groups():
    layer = keras.layers.Conv2D(4, 1, groups=2, name="grouped_conv")
    with pytest.raises(ValueError, match=r"'grouped_conv': groups=2 is not supported"):
        QuantizedKernel(layer)

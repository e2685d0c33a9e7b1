"""benchmarks.qat: the fake-quantized twin of the export graph that int8 fine-tuning trains."""

import keras
import numpy as np
import pytest

from benchmarks.qat import FakeQuant, copy_kernels, fake_quant_graph
from keras_reuse import LruNet


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

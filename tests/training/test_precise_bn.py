"""Precise BatchNorm: population statistics equal numpy's, shared BatchNorms, the callback."""

import keras
import numpy as np
import pytest

from keras_reuse import data
from keras_reuse.applications import LruNet
from keras_reuse.layers import FusedBatchNormalization
from keras_reuse.training.callbacks import PreciseBatchNorm, recompute_batchnorm_statistics


def batches(sizes, seed=0, shape=(28, 28, 1)):
    rng = np.random.default_rng(seed)
    # Offset and scaled, so a mean of 0 and variance of 1 would be wrong.
    return [(3 * rng.random((n, *shape)) + 1).astype("float32") for n in sizes]


def bn_inputs(model, layers, xs):
    """Each layer's inputs over all batches (training mode), (examples * positions, C)."""
    probe = keras.Model(model.input, [layer.input for layer in layers])
    # A one-output model returns a tensor, not a list of one.
    outs = [keras.tree.flatten(probe(x, training=True)) for x in xs]
    return [
        np.concatenate([np.asarray(out[j]).reshape(-1, layer.moving_mean.shape[0]) for out in outs])
        for j, layer in enumerate(layers)
    ]


def assert_population(layer, values):
    values = values.astype(np.float64)
    scale = values.std(0).max()
    np.testing.assert_allclose(layer.moving_mean.numpy(), values.mean(0), atol=1e-5 * scale)
    np.testing.assert_allclose(
        layer.moving_variance.numpy(), values.var(0), rtol=1e-4, atol=1e-6 * scale**2
    )


def test_moving_statistics_become_the_population_statistics_of_every_batchnorm():
    keras.utils.set_random_seed(0)
    model = LruNet(num_classes=10, input_shape=(28, 28, 1), layer_reuse=2)
    layers = [x for x in model.layers if isinstance(x, keras.layers.BatchNormalization)]
    assert len(layers) == 18 and all(isinstance(x, FusedBatchNormalization) for x in layers)
    xs = batches([16, 16, 16, 5])  # unequal batches: weighted by examples
    expected = bn_inputs(model, layers, xs)
    weights = [w.numpy() for w in model.trainable_weights]

    covered = recompute_batchnorm_statistics(model, [(x, None) for x in xs], batches=10)

    assert covered == {layer.name: 53 for layer in layers}
    for layer, values in zip(layers, expected, strict=True):
        assert_population(layer, values)
    # Weights frozen; the layers' own `call` is back.
    for before, after in zip(weights, model.trainable_weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())
    assert all("call" not in vars(layer) for layer in layers)


def test_only_the_first_batches_are_used():
    keras.utils.set_random_seed(0)
    model = LruNet(num_classes=10, input_shape=(28, 28, 1), layer_reuse=1)
    xs = batches([8, 8, 8])
    stem = model.get_layer("stem_bn")
    expected = bn_inputs(model, [stem], xs[:2])[0]
    assert recompute_batchnorm_statistics(model, iter(xs), batches=2)["stem_bn"] == 16
    assert_population(stem, expected)


def test_a_shared_batchnorm_gets_the_statistics_over_all_its_calls():
    inputs = keras.Input((6, 6, 3))
    shared = FusedBatchNormalization(name="shared_bn")
    conv = keras.layers.Conv2D(3, 3, padding="same", name="conv")
    frozen = keras.layers.BatchNormalization(name="frozen_bn")
    frozen.trainable = False
    first = shared(inputs)
    second = shared(conv(first))
    model = keras.Model(inputs, frozen(second))
    xs = batches([10, 7], shape=(6, 6, 3))

    head = keras.Model(inputs, first)
    calls = [np.concatenate([x.reshape(-1, 3) for x in xs])]  # first call: the images
    calls.append(
        np.concatenate([np.asarray(conv(head(x, training=True))).reshape(-1, 3) for x in xs])
    )
    covered = recompute_batchnorm_statistics(model, xs, batches=2)

    assert covered == {"shared_bn": 34}  # 17 examples, twice; the frozen one is left alone
    assert_population(shared, np.concatenate(calls))
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), np.zeros(3))
    np.testing.assert_array_equal(frozen.moving_variance.numpy(), np.ones(3))


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_bad_batches_is_refused(value):
    model = LruNet(num_classes=10, input_shape=(28, 28, 1), layer_reuse=1)
    with pytest.raises(ValueError, match=f"Received: batches={value!r}"):
        recompute_batchnorm_statistics(model, batches([2]), batches=value)
    with pytest.raises(ValueError, match=f"Received: batches={value!r}"):
        PreciseBatchNorm(batches([2]), value)
    with pytest.raises(ValueError, match="yielded no batch"):
        recompute_batchnorm_statistics(model, [], batches=1)


def accuracy(model, dataset):
    correct = total = 0
    for x, y in dataset:
        correct += int((np.asarray(model(x, training=False)).argmax(1) == y.numpy()).sum())
        total += len(y)
    return correct / total


def test_an_undertrained_model_predicts_better_with_precise_statistics():
    # 8 large steps: the moving averages (momentum 0.9) still hold much of
    # their initial 0 / 1, as after the old Quickstart's 16 steps. Measured on
    # these 512 test images: 15% as trained, 26% after 6 more training-mode
    # passes (what the moving averages make of them), 39% with the population
    # statistics of 6 batches.
    keras.utils.set_random_seed(0)
    model = LruNet(
        num_classes=10, input_shape=(28, 28, 1), layer_reuse=1, classifier_activation=None
    )
    train = data.load("fashion_mnist", "train[:512]", batch_size=64, seed=0)
    test = data.load("fashion_mnist", "test[:512]", batch_size=128)
    model.compile(
        keras.optimizers.SGD(0.1, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(train, epochs=1, verbose=0)
    trained = model.get_weights()
    before = accuracy(model, test)
    for x, _ in train.take(6):
        model(x, training=True)
    averaged = accuracy(model, test)
    model.set_weights(trained)
    recompute_batchnorm_statistics(model, train, batches=6)
    after = accuracy(model, test)
    assert after > before + 0.1 and after > averaged + 0.05, (before, averaged, after)


def test_the_callback_recomputes_before_each_validation_in_fit():
    keras.utils.set_random_seed(0)
    model = LruNet(num_classes=10, input_shape=(28, 28, 1), layer_reuse=1)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    xs = batches([16, 16], seed=1)
    ys = [np.arange(16) % 10 for _ in xs]
    train = list(zip(xs, ys, strict=True))
    stem = model.get_layer("stem_bn")
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            seen.append(stem.moving_variance.numpy().copy())

    history = model.fit(
        np.concatenate(xs),
        np.concatenate(ys),
        batch_size=16,
        shuffle=False,
        epochs=2,
        validation_data=(xs[0], ys[0]),
        callbacks=[PreciseBatchNorm(train, batches=2), Spy()],
        verbose=0,
    )
    assert len(seen) == 2  # one validation per epoch, after the recomputation
    expected = bn_inputs(model, [stem], xs)[0]
    assert_population(stem, expected)  # the final weights' population statistics
    np.testing.assert_array_equal(seen[-1], stem.moving_variance.numpy())
    evaluated = model.evaluate(xs[0], ys[0], verbose=0, return_dict=True)
    assert history.history["val_accuracy"][-1] == pytest.approx(evaluated["accuracy"])

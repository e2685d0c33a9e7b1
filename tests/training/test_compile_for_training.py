"""The one training compile: the recipe's parts, and a train step traced once."""

import keras
import numpy as np
import pytest

from keras_reuse.applications import LruNet
from keras_reuse.training.optimizers import CoupledSGD, build_optimizer, compile_for_training


def _traces_of_first_fit(model):
    """How many times `fit`'s first call runs (traces) the Python train step."""
    calls = []
    train_step = model.train_step

    def counting(data):
        calls.append(1)
        return train_step(data)

    model.train_step = counting  # instance attribute: only this model is counted
    x = np.zeros((4, 28, 28, 1), np.float32)
    y = np.zeros((4,), np.int64)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    return len(calls)


def _model():
    return LruNet(layer_reuse=1, input_shape=(28, 28, 1), classifier_activation=None)


def test_compile_for_training_traces_the_train_step_once():
    assert _traces_of_first_fit(compile_for_training(_model())) == 1


def test_plain_compile_traces_it_twice():
    # Why build_optimizer exists: Keras creates the optimizer's variables
    # inside the first traced step, and TensorFlow then traces it again.
    model = _model()
    model.compile(optimizer=CoupledSGD(0.1), loss="sparse_categorical_crossentropy")
    assert _traces_of_first_fit(model) == 2


def test_the_recipe():
    model = compile_for_training(_model(), learning_rate=0.05, momentum=0.8, l2=1e-4)
    optimizer = model.optimizer
    assert isinstance(optimizer, CoupledSGD) and optimizer.built
    assert (optimizer.momentum, optimizer.l2) == (0.8, 1e-4)
    assert float(optimizer.learning_rate) == pytest.approx(0.05)
    assert len(optimizer.momentums) == len(model.trainable_variables)
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    assert model.loss.get_config()["from_logits"] is True
    scaled = compile_for_training(_model(), loss_scale=True).optimizer
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer)
    assert isinstance(scaled.inner_optimizer, CoupledSGD) and scaled.built


def test_build_optimizer_needs_a_compiled_model():
    with pytest.raises(ValueError, match="Model 'lrunet' has no optimizer"):
        build_optimizer(_model())

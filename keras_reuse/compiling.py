"""The one training compile: the papers' optimizer and loss, ready before `fit`.

`keras-reuse train`, the tuner and the benchmarks compile through here, so a
model trains the same way wherever it is trained.

Why the optimizer is built here: on the TensorFlow backend without a
distribution strategy, Keras defers building the optimizer to the first
traced train step. Its variables (one momentum buffer per weight) are then
created inside `tf.function`, which makes TensorFlow trace the whole train
step a second time. For LruNet-14 one trace takes about 10-15 s, so building
the optimizer before `fit` removes a third of the time to the first step.
"""

from __future__ import annotations

import keras

from keras_reuse.optimizers import CoupledSGD


def build_optimizer(model: keras.Model) -> None:
    """Creates the optimizer's variables now, outside any traced function.

    Call after `model.compile(...)` (inside the strategy scope when there is
    one). Without it Keras creates them during the first traced train step
    and TensorFlow traces that step twice.

    Args:
        model: A compiled model.

    Raises:
        ValueError: if the model is not compiled.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError(
            f"Model {model.name!r} has no optimizer: call model.compile(...) before "
            "build_optimizer(model)."
        )
    if not optimizer.built:
        optimizer.build(model.trainable_variables)


def compile_for_training(
    model: keras.Model,
    learning_rate=0.1,
    momentum: float = 0.9,
    l2: float = 5e-4,
    loss_scale: bool = False,
    metrics: bool = True,
) -> keras.Model:
    """Compiles `model` with the papers' recipe and builds its optimizer.

    The recipe: `CoupledSGD` (PyTorch's SGD with momentum and L2 added to the
    gradient), sparse categorical cross-entropy on logits, accuracy.

    Args:
        model: A model that outputs logits (`classifier_activation=None`).
        learning_rate: A float or a `keras.optimizers.schedules` schedule.
        momentum: SGD momentum.
        l2: L2 coefficient added to the gradient (PyTorch's `weight_decay`).
        loss_scale: Wrap the optimizer in `LossScaleOptimizer` (mixed_float16).
        metrics: Track accuracy (named "accuracy").

    Returns:
        `model`, compiled, with its optimizer variables created.
    """
    optimizer = CoupledSGD(learning_rate, momentum=momentum, l2=l2)
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")] if metrics else None,
    )
    build_optimizer(model)
    return model

"""The papers' optimizer: SGD with momentum and coupled L2 weight decay.

Both papers train with PyTorch's `torch.optim.SGD(momentum=0.9,
weight_decay=5e-4)`, which adds `weight_decay * w` to the gradient *before*
the momentum buffer and applies the learning rate to the whole buffer.
Keras's `SGD(weight_decay=...)` decays weights decoupled from the gradient
(AdamW style) and folds the learning rate into its velocity, which differs
under momentum and whenever the learning rate changes. `CoupledSGD`
reproduces PyTorch's update exactly.

On TensorFlow the momentum update is TensorFlow's fused
`ResourceApplyMomentum` kernel, which is PyTorch's update to the letter: one
graph op per variable instead of about eight, which shortens the traced
train step (LruNet-14 has 240 trainable variables) and its execution.

`compile_for_training` is the one training compile (the papers' optimizer and
loss): `keras-reuse train`, the tuner and the benchmarks compile through it,
so a model trains the same way wherever it is trained. It builds the
optimizer before `fit`: on the TensorFlow backend without a
distribution strategy, Keras defers building the optimizer to the first
traced train step. Its variables (one momentum buffer per weight) are then
created inside `tf.function`, which makes TensorFlow trace the whole train
step a second time. Building it before `fit` saves that second trace.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_reuse")
class CoupledSGD(keras.optimizers.Optimizer):
    """SGD with momentum and L2 decay added to the gradient (PyTorch's SGD).

    For every trainable variable `w` with gradient `g`:

    ```python
    g = g + l2 * w
    buf = momentum * buf + g          # buf starts at 0
    w = w - learning_rate * (g + momentum * buf if nesterov else buf)
    ```

    Args:
        learning_rate: A float, a `keras.optimizers.schedules` schedule or a
            callable.
        momentum: Momentum factor in [0, 1).
        l2: L2 penalty coefficient added to the gradient (PyTorch's
            `weight_decay`); applies to every trainable variable, as in the
            authors' training code.
        nesterov: Whether to use Nesterov momentum.
        fused: Use TensorFlow's fused momentum kernel (same arithmetic).
            None (default) uses it on the TensorFlow backend; False always
            runs the backend-agnostic `keras.ops` update.
        name: Optimizer name.
        **kwargs: Base optimizer arguments (`clipnorm`, `loss_scale_factor`,
            ...). `weight_decay` (Keras's decoupled decay) is refused.
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum: float = 0.9,
        l2: float = 5e-4,
        nesterov: bool = False,
        fused: bool | None = None,
        name: str = "coupled_sgd",
        **kwargs,
    ):
        if kwargs.get("weight_decay") is not None:
            raise ValueError(
                "CoupledSGD takes `l2` (decay added to the gradient), not Keras's "
                f"decoupled `weight_decay`. Received: weight_decay={kwargs['weight_decay']!r}"
            )
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if isinstance(momentum, bool) or not 0.0 <= momentum < 1.0:
            raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={momentum!r}")
        if isinstance(l2, bool) or l2 < 0:
            raise ValueError(f"`l2` must be >= 0. Received: l2={l2!r}")
        self.momentum = float(momentum)
        self.l2 = float(l2)
        self.nesterov = bool(nesterov)
        if fused not in (None, True, False):
            raise ValueError(f"`fused` must be None, True or False. Received: fused={fused!r}")
        if fused and keras.backend.backend() != "tensorflow":
            raise ValueError(
                "`fused=True` needs the TensorFlow backend (its ResourceApplyMomentum "
                f"kernel). Received: fused=True on backend {keras.backend.backend()!r}; "
                "use fused=None."
            )
        self.fused = fused
        self._use_fused = fused is not False and keras.backend.backend() == "tensorflow"

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = []
        if self.momentum:
            self.momentums = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.l2:
            gradient = ops.add(gradient, ops.multiply(variable, ops.cast(self.l2, variable.dtype)))
        if not self.momentum:
            self.assign_sub(variable, ops.multiply(gradient, learning_rate))
            return
        buf = self.momentums[self._get_variable_index(variable)]
        if self._use_fused and self._fused_update(gradient, variable, buf, learning_rate):
            return
        momentum = ops.cast(self.momentum, variable.dtype)
        self.assign(buf, ops.add(ops.multiply(buf, momentum), gradient))
        step = ops.add(gradient, ops.multiply(buf, momentum)) if self.nesterov else buf
        self.assign_sub(variable, ops.multiply(step, learning_rate))

    def _fused_update(self, gradient, variable, buf, learning_rate) -> bool:
        """The momentum step as one TensorFlow kernel; False where it cannot serve."""
        # Optional: TensorFlow, imported on its backend's path only.
        import tensorflow as tf

        if isinstance(gradient, tf.IndexedSlices):
            return False
        # accum = accum * momentum + grad; var -= lr * accum (Nesterov:
        # var -= lr * (grad + momentum * accum)): PyTorch's SGD step.
        tf.raw_ops.ResourceApplyMomentum(
            var=variable.handle,
            accum=buf.handle,
            lr=learning_rate,
            grad=gradient,
            momentum=tf.cast(self.momentum, variable.dtype),
            use_locking=False,
            use_nesterov=self.nesterov,
        )
        return True

    def get_config(self):
        config = super().get_config()
        config.pop("weight_decay", None)
        config.update(
            {
                "momentum": self.momentum,
                "l2": self.l2,
                "nesterov": self.nesterov,
                "fused": self.fused,
            }
        )
        return config


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

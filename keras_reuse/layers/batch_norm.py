"""`FusedBatchNormalization`: Keras's BatchNormalization, one fused op per pass on TensorFlow."""

from __future__ import annotations

import keras

from keras_reuse.layers.ops import PACKAGE, fused_batch_norm_train


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step is one fused op.

    Keras 3 normalizes a training batch with separate TensorFlow ops
    (moments, then a multiply-add), and differentiates each of them; on CPU
    that costs several passes over the activation per BatchNorm. On the
    TensorFlow backend, for 4D inputs normalized over the channels of
    either image data format (`axis=-1` or 3: NHWC; `axis=1`: NCHW), this
    layer runs the training-mode forward pass as TensorFlow's
    `FusedBatchNormV3` (one op, with a one-op gradient) and otherwise
    defers to the parent class.

    Same weights (`gamma`, `beta`, `moving_mean`, `moving_variance`), same
    config and same semantics as the parent: the batch is normalized with
    its biased variance, and the moving statistics are updated as
    `moving = moving * momentum + batch_stat * (1 - momentum)` with the
    biased batch variance, exactly as Keras does. Inference (and any case the
    fused op cannot serve: masks, renorm, synchronized statistics, other
    ranks or axes, other backends) runs the parent's own code, so a trained
    model predicts exactly as with `BatchNormalization`. On JAX and PyTorch
    it is `BatchNormalization`, and the weights and `.keras` files are
    interchangeable between backends.

    It takes the arguments of `keras.layers.BatchNormalization`.
    """

    def _fused_format(self) -> str:
        """TensorFlow's name of the layout this layer normalizes: "NCHW" for axis 1."""
        return "NCHW" if self.axis == 1 else "NHWC"

    def _fusable(self, inputs, mask) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and len(inputs.shape) == 4
            and self.axis in (-1, 1, 3)
            and self.center
            and self.scale
            and not self.renorm
            and not self.synchronized
        )

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        # Optional: TensorFlow, imported on its backend's path only.
        import tensorflow as tf

        y, mean, variance = fused_batch_norm_train(
            inputs,
            tf.cast(self.gamma, tf.float32),
            tf.cast(self.beta, tf.float32),
            self.epsilon,
            self._fused_format(),
        )
        moving_mean = tf.cast(self.moving_mean, tf.float32)
        moving_variance = tf.cast(self.moving_variance, tf.float32)
        self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            moving_variance * self.momentum + variance * (1.0 - self.momentum)
        )
        return tf.cast(y, self.compute_dtype)

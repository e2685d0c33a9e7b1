"""`DepthwiseConv2D`: Keras's depthwise convolution with TensorFlow's oneDNN multiplier-1 form."""

from __future__ import annotations

import keras
from keras import ops

from keras_reuse.layers.ops import PACKAGE, depthwise_conv


@keras.saving.register_keras_serializable(package=PACKAGE)
class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` that TensorFlow's oneDNN runs fast.

    With `depth_multiplier > 1`, channels last, on TensorFlow's CPU with
    oneDNN, the convolution runs as `depthwise_conv`'s multiplier-1 form
    (training and inference; in training the channel repeat interleaves as
    complex numbers, `layers.ops.interleave_channels`); everything else runs
    the parent's code. Same weights, config and arithmetic as the parent.
    The class name is the parent's on purpose: Keras's `.weights.h5` files
    address a model's layers by class name, so weights files of networks
    built with `keras.layers.DepthwiseConv2D` (the published LruNets') load
    into it. `keras_reuse.to_tflite` exports it as the parent (one TFLite
    depthwise op with the multiplier).

    It takes the arguments of `keras.layers.DepthwiseConv2D`.
    """

    def call(self, inputs, training=None):
        if self.data_format != "channels_last" or self.depth_multiplier == 1:
            return super().call(inputs)
        kernel = ops.convert_to_tensor(self.kernel)
        outputs = depthwise_conv(
            inputs,
            kernel,
            self.strides,
            self.padding,
            self.dilation_rate,
            training=bool(training),
        )
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            return self.activation(outputs)
        return outputs

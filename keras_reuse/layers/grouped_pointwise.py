"""`GroupedPointwiseConv`: a grouped 1x1 convolution as one matmul per group.

TensorFlow's own CPU kernels have no gradient for a grouped convolution and
`Conv2D(groups=...)` falls back to a slow path there; the fast paths are in
`keras_reuse.layers.ops`.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_reuse.layers.ops import PACKAGE, conv_kernel_initializer, grouped_pointwise
from keras_reuse.utils.checks import channel_axis, check_data_format


@keras.saving.register_keras_serializable(package=PACKAGE)
class GroupedPointwiseConv(keras.layers.Layer):
    """Grouped 1x1 convolution over the channels (the last axis, or axis 1 channels first).

    Input channels are split into `groups` contiguous slices and slice `g`
    is mapped to output slice `g` by its own `(C_in/groups, filters/groups)`
    matrix, exactly like PyTorch's `Conv2d(kernel_size=1, groups=groups)`.
    The kernel is stored as `(groups, C_in/groups, filters/groups)` and
    applied as one matmul per group on the channel slices, which on CPU is
    several times faster than `keras.layers.Conv2D(groups=groups)` (and
    than an einsum over a `(groups, ...)` view).

    Works on inputs of any rank >= 2, on every Keras backend (the matmuls
    are `keras.ops`); on TensorFlow, channels last, 4D inference, and 4D
    float32 training of narrow groups where oneDNN runs TensorFlow's CPU
    kernels, run the same arithmetic as one grouped `tf.nn.conv2d` (see the
    module docstring). Channels first, the groups are one batched matmul
    on `(batch, groups, C_in/groups, positions)`, on every backend. The
    kernel is the same in both formats.

    Args:
        filters: Number of output channels; divisible by `groups`.
        groups: Number of channel groups; must divide the input channels.
        use_bias: Whether to add a bias vector.
        kernel_initializer: Initializer for the kernel.
        bias_initializer: Initializer for the bias.
        kernel_regularizer: Optional regularizer for the kernel.
        data_format: "channels_last", "channels_first" (channels on axis 1
            of inputs of rank 3 and more) or None:
            `keras.config.image_data_format()`.
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).
    """

    def __init__(
        self,
        filters: int,
        groups: int = 1,
        use_bias: bool = False,
        kernel_initializer="default",
        bias_initializer="zeros",
        kernel_regularizer=None,
        data_format: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"`filters` must be a positive integer. Received: filters={filters}")
        if not isinstance(groups, int) or groups < 1:
            raise ValueError(f"`groups` must be a positive integer. Received: groups={groups}")
        if filters % groups:
            raise ValueError(
                f"`filters` must be divisible by `groups`. Received: "
                f"filters={filters}, groups={groups}"
            )
        self.data_format = check_data_format(data_format)
        self.filters = filters
        self.groups = groups
        self.use_bias = use_bias
        if kernel_initializer == "default":
            kernel_initializer = conv_kernel_initializer()
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def _axis(self, rank: int) -> int:
        return channel_axis(self.data_format) if rank > 2 else -1

    def build(self, input_shape):
        axis = self._axis(len(input_shape))
        channels = input_shape[axis]
        if channels is None or channels % self.groups:
            raise ValueError(
                f"Layer '{self.name}': input channels must be divisible by "
                f"groups={self.groups}. Received input_shape={input_shape}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.groups, channels // self.groups, self.filters // self.groups),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.filters,), initializer=self.bias_initializer
            )
        else:
            self.bias = None
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={axis: channels})

    def call(self, inputs, training=None):
        # Read the kernel's value once: JAX and PyTorch cannot unstack a Keras
        # Variable, and on TensorFlow it is the same graph.
        kernel = ops.convert_to_tensor(self.kernel)
        y = grouped_pointwise(inputs, kernel, training, data_format=self.data_format)
        if self.bias is not None:
            if self._axis(len(y.shape)) == 1:
                y = y + ops.reshape(self.bias, (self.filters,) + (1,) * (len(y.shape) - 2))
            else:
                y = y + self.bias
        return y

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        shape[self._axis(len(shape))] = self.filters
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "groups": self.groups,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "data_format": self.data_format,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Files saved before the layer took a data_format were channels last.
        return super().from_config({"data_format": "channels_last", **config})

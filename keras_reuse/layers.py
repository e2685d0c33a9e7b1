"""Reuse primitives: the layers our architectures need that Keras lacks.

`GroupedPointwiseConv` is a grouped 1x1 convolution written as one batched
matmul, because TensorFlow has no native grouped convolution on CPU and
`Conv2D(groups=...)` falls back to a slow path there. `ChannelShuffle` is the
ShuffleNet channel permutation, optionally preceded by the half swap that the
LruNet authors apply between reuse iterations. Both are serializable, so
models using them round-trip through `.keras` files without `custom_objects`.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

_PACKAGE = "keras_reuse"


def _conv_kernel_initializer() -> keras.initializers.Initializer:
    # The LruNet authors initialise convolutions with PyTorch's
    # kaiming_normal_(mode="fan_out"); this is the Keras equivalent.
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GroupedPointwiseConv(keras.layers.Layer):
    """Grouped 1x1 convolution over the last (channels) axis.

    Input channels are split into `groups` contiguous slices and slice `g`
    is mapped to output slice `g` by its own `(C_in/groups, filters/groups)`
    matrix, exactly like PyTorch's `Conv2d(kernel_size=1, groups=groups)`.
    The kernel is stored as `(groups, C_in/groups, filters/groups)` and
    applied with a single einsum, which on CPU is several times faster than
    `keras.layers.Conv2D(groups=groups)`.

    Works on inputs of any rank >= 2 with channels last.

    Args:
        filters: Number of output channels; divisible by `groups`.
        groups: Number of channel groups; must divide the input channels.
        use_bias: Whether to add a bias vector.
        kernel_initializer: Initializer for the kernel.
        bias_initializer: Initializer for the bias.
        kernel_regularizer: Optional regularizer for the kernel.
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
        self.filters = filters
        self.groups = groups
        self.use_bias = use_bias
        if kernel_initializer == "default":
            kernel_initializer = _conv_kernel_initializer()
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        channels = input_shape[-1]
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
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: channels})

    def call(self, inputs):
        shape = ops.shape(inputs)
        lead = shape[:-1]
        x = ops.reshape(inputs, (-1, self.groups, shape[-1] // self.groups))
        y = ops.einsum("ngi,gio->ngo", x, self.kernel)
        y = ops.reshape(y, (*lead, self.filters))
        if self.bias is not None:
            y = y + self.bias
        return y

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

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
            }
        )
        return config


def channel_shuffle_permutation(
    channels: int, groups: int = 2, swap_halves: bool = False
) -> np.ndarray:
    """Source channel index for every output channel of a channel shuffle.

    Args:
        channels: Number of channels; divisible by `groups` (and by 2 when
            `swap_halves`).
        groups: ShuffleNet groups: channels are viewed as `(groups,
            channels / groups)`, transposed and flattened.
        swap_halves: Exchange the two channel halves before shuffling, as the
            LruNet authors do.

    Returns:
        An int array `perm` with `output[..., k] = input[..., perm[k]]`.
    """
    source = np.arange(channels)
    if swap_halves:
        source = np.roll(source, -(channels // 2))
    return source.reshape(groups, channels // groups).T.reshape(-1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ChannelShuffle(keras.layers.Layer):
    """ShuffleNet channel shuffle on the last axis, as one fixed gather.

    Equivalent to viewing the channels as `(groups, C / groups)`,
    transposing and flattening (after exchanging the two channel halves when
    `swap_halves=True`, the LruNet variant), but done as a single gather with
    a permutation computed once at build time.

    Args:
        groups: Number of shuffle groups; must divide the input channels.
        swap_halves: Exchange the channel halves before the shuffle.
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).
    """

    def __init__(self, groups: int = 2, swap_halves: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(groups, int) or groups < 1:
            raise ValueError(f"`groups` must be a positive integer. Received: groups={groups}")
        self.groups = groups
        self.swap_halves = swap_halves
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        channels = input_shape[-1]
        divisor = np.lcm(self.groups, 2) if self.swap_halves else self.groups
        if channels is None or channels % divisor:
            raise ValueError(
                f"Layer '{self.name}': input channels must be divisible by "
                f"{divisor}. Received input_shape={input_shape}"
            )
        self._permutation = channel_shuffle_permutation(
            channels, self.groups, self.swap_halves
        ).tolist()

    def call(self, inputs):
        return ops.take(inputs, self._permutation, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"groups": self.groups, "swap_halves": self.swap_halves})
        return config

"""Reuse primitives: the layers our architectures need that Keras lacks.

Every layer is serializable under the package name "keras_reuse", so models
using them round-trip through `.keras` files without `custom_objects`. The
backend ops behind them (generic `keras.ops` forms and TensorFlow's fast
paths) are in `keras_reuse.layers.ops`.
"""

from keras_reuse.layers.batch_norm import FusedBatchNormalization
from keras_reuse.layers.channel_shuffle import ChannelShuffle
from keras_reuse.layers.depthwise import DepthwiseConv2D
from keras_reuse.layers.grouped_pointwise import GroupedPointwiseConv
from keras_reuse.layers.ops import (
    channel_shuffle,
    channel_shuffle_permutation,
    depthwise_conv,
    grouped_pointwise,
    half_swap_shuffle,
    inverse_half_swap_shuffle,
)

__all__ = [
    "ChannelShuffle",
    "DepthwiseConv2D",
    "FusedBatchNormalization",
    "GroupedPointwiseConv",
    "channel_shuffle",
    "channel_shuffle_permutation",
    "depthwise_conv",
    "grouped_pointwise",
    "half_swap_shuffle",
    "inverse_half_swap_shuffle",
]

"""`ChannelShuffle`: the ShuffleNet channel permutation, optionally after the LruNet half swap."""

from __future__ import annotations

import keras
import numpy as np

from keras_reuse.layers.ops import PACKAGE, channel_shuffle
from keras_reuse.utils.checks import channel_axis, check_data_format


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelShuffle(keras.layers.Layer):
    """ShuffleNet channel shuffle on the channel axis (last, or 1 with channels first).

    Views the channels as `(groups, C / groups)`, transposes and flattens
    (after exchanging the two channel halves when `swap_halves=True`, the
    LruNet variant): output channel `k` is input channel
    `channel_shuffle_permutation(C, groups, swap_halves)[k]`.

    Args:
        groups: Number of shuffle groups; must divide the input channels.
        swap_halves: Exchange the channel halves before the shuffle.
        data_format: "channels_last" (channels on the last axis),
            "channels_first" (on axis 1 of inputs of rank 3 and more) or
            None: `keras.config.image_data_format()`.
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).
    """

    def __init__(
        self, groups: int = 2, swap_halves: bool = False, data_format: str | None = None, **kwargs
    ):
        super().__init__(**kwargs)
        if not isinstance(groups, int) or groups < 1:
            raise ValueError(f"`groups` must be a positive integer. Received: groups={groups}")
        self.groups = groups
        self.swap_halves = swap_halves
        self.data_format = check_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        axis = channel_axis(self.data_format) if len(input_shape) > 2 else -1
        channels = input_shape[axis]
        divisor = np.lcm(self.groups, 2) if self.swap_halves else self.groups
        if channels is None or channels % divisor:
            raise ValueError(
                f"Layer '{self.name}': input channels must be divisible by "
                f"{divisor}. Received input_shape={input_shape}"
            )

    def call(self, inputs, training=None):
        # Reshapes and a transpose, not a gather: the gather's gradient is a
        # scatter (UnsortedSegmentSum), much slower on CPU. Training graphs
        # may interleave the halves as complex numbers instead
        # (`layers.ops.interleave_channels`); inference graphs, which
        # converters read, keep the transpose.
        return channel_shuffle(
            inputs, self.groups, self.swap_halves, self.data_format, training=bool(training)
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "groups": self.groups,
                "swap_halves": self.swap_halves,
                "data_format": self.data_format,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Files saved before the layer took a data_format were channels last.
        return super().from_config({"data_format": "channels_last", **config})

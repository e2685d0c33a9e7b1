"""Argument checks and input/output plumbing shared by every application.

Everything here follows `keras.applications`: the same keywords
(`include_top, weights, input_tensor, input_shape, pooling,
classifier_activation`), the same handling of `input_tensor`, and
ValueErrors that quote the value received. The image data format follows
keras.applications and keras-hub's backbones: `data_format=None` is
`keras.config.image_data_format()`, `input_shape` is read in the format
chosen, and the weights are the same in both formats.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import keras

from keras_reuse import startup
from keras_reuse.utils.backends import check_data_format_runs
from keras_reuse.utils.checks import (
    channel_axis,
    check_bool,
    check_data_format,
    check_positive_int,
    check_rate,
)

__all__ = [
    "LayerTypes",
    "channel_axis",
    "check_bool",
    "check_positive_int",
    "check_rate",
    "check_runs",
    "check_top_arguments",
    "resolve_data_format",
    "resolve_layer_types",
]

_POOLING = (None, "avg", "max")


@dataclasses.dataclass(frozen=True)
class LayerTypes:
    """The layer classes a network is built from, passed down its builder.

    A constructor's `layer_types` keyword builds the same network from other
    layers (`keras.layers.BatchNormalization`, `Conv2D(groups=...)`): the
    stock-Keras baselines of the benchmarks and tests.

    Attributes:
        norm: BatchNormalization-like class (`momentum`, `epsilon`, `axis`,
            `name`).
        pointwise: Grouped 1x1 convolution (`filters`, `groups`,
            `data_format`, `name`).
        shuffle: Channel shuffle (`groups`, `swap_halves`, `data_format`,
            `name`).
        depthwise: DepthwiseConv2D-like class (Keras's keywords); Keras's
            own unless a network names another.
    """

    norm: Callable[..., Any]
    pointwise: Callable[..., Any]
    shuffle: Callable[..., Any]
    depthwise: Callable[..., Any] = keras.layers.DepthwiseConv2D


def check_top_arguments(
    include_top: Any, pooling: Any, weights: Any, classifier_activation: Any
) -> None:
    """Validates the keyword set common to all applications.

    Raises:
        ValueError: naming the offending argument and its value.
    """
    check_bool("include_top", include_top)
    if pooling not in _POOLING:
        raise ValueError(
            f"`pooling` must be one of None, 'avg' or 'max'. Received: pooling={pooling!r}"
        )
    if include_top and pooling is not None:
        raise ValueError(
            "`pooling` only applies when `include_top=False`. "
            f"Received: include_top=True, pooling={pooling!r}"
        )
    if weights is not None and not (
        isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights)
    ):
        raise ValueError(
            "The `weights` argument should be either `None` (random "
            "initialization) or the path to a weights file to be loaded. "
            f"Received: weights={weights!r}"
        )
    try:
        keras.activations.get(classifier_activation)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "`classifier_activation` must be None, a Keras activation name or "
            f"a callable. Received: classifier_activation={classifier_activation!r}"
        ) from error


def resolve_data_format(data_format: Any) -> str:
    """The image data format a model is built in.

    Args:
        data_format: "channels_last", "channels_first" or None
            (`keras.config.image_data_format()`).

    Returns:
        "channels_last" or "channels_first".

    Raises:
        ValueError: quoting an unknown value.
    """
    return check_data_format(data_format)


def check_runs(data_format: str) -> None:
    """Refuses a format this backend cannot run on this machine's devices.

    Called by every constructor once its arguments are checked, before a
    layer is built.

    Raises:
        ValueError: naming the format and the backend
            (`keras_reuse.utils.backends.check_data_format_runs`).
    """
    check_data_format_runs(data_format)


def image_shape(shape: tuple, data_format: str) -> tuple:
    """A `(height, width, channels)` shape in `data_format`'s order."""
    height, width, channels = shape
    return (channels, height, width) if data_format == "channels_first" else tuple(shape)


def _shape_order(data_format: str) -> str:
    if data_format == "channels_first":
        return "(channels, height, width) with data_format='channels_first'"
    return "(height, width, channels) with data_format='channels_last'"


def resolve_input_shape(
    input_shape: Any,
    input_tensor: Any,
    default_shape: tuple[int, int, int],
    min_size: int,
    data_format: str = "channels_last",
) -> tuple:
    """Returns the input shape in `data_format`'s order, validated.

    Args:
        input_shape: The user's `input_shape` (in `data_format`'s order), or
            None.
        input_tensor: The user's `input_tensor`, or None; its shape is used
            when `input_shape` is None.
        default_shape: `(height, width, channels)` to use when neither is
            given.
        min_size: Smallest height and width the architecture supports.
        data_format: "channels_last" or "channels_first" (resolved).

    Returns:
        A tuple `(height, width, channels)`, or `(channels, height, width)`
        channels first; height and width may be None.

    Raises:
        ValueError: for a wrong rank, unknown channels or a size below
            `min_size`; the message says which order `input_shape` is read in.
    """
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    if input_shape is None:
        return image_shape(default_shape, data_format)
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    order = _shape_order(data_format)
    if shape is None or len(shape) != 3:
        raise ValueError(
            f"`input_shape` must be a tuple {order}. Received: input_shape={input_shape!r}"
        )
    if data_format == "channels_first":
        channels, height, width = shape
    else:
        height, width, channels = shape
    if channels is None or channels < 1:
        raise ValueError(
            f"`input_shape` must have a known, positive number of channels; it is read as "
            f"{order}. Received: input_shape={input_shape!r}"
        )
    for size in (height, width):
        if size is not None and size < min_size:
            raise ValueError(
                f"Input size must be at least {min_size}x{min_size}; `input_shape` is read as "
                f"{order}. Received: input_shape={input_shape!r}"
            )
    return shape


def model_inputs(input_shape: tuple, input_tensor: Any) -> tuple[Any, Any]:
    """Returns `(image_input, model_inputs)` the way keras.applications does."""
    if input_tensor is None:
        img_input = keras.Input(shape=input_shape)
        return img_input, img_input
    if not keras.backend.is_keras_tensor(input_tensor):
        img_input = keras.Input(tensor=input_tensor, shape=input_shape)
        return img_input, img_input
    return input_tensor, keras.utils.get_source_inputs(input_tensor)


def pool_features(x: Any, pooling: str | None, data_format: str = "channels_last") -> Any:
    """Applies the `pooling` option of `include_top=False` models."""
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(data_format=data_format, name="max_pool")(x)
    return x


def classifier_output(x: Any, classifier_activation: Any) -> Any:
    """The final activation, kept in float32 under mixed precision."""
    return keras.layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)


def finish_model(inputs: Any, outputs: Any, name: str, weights: Any) -> keras.Model:
    """Builds the functional model and loads `weights` if a path was given."""
    startup.warn_if_onednn_off()
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


def resolve_layer_types(layer_types: LayerTypes | None, default: LayerTypes) -> LayerTypes:
    """A constructor's `layer_types` keyword: None is the family's own layers.

    Args:
        layer_types: What the caller passed.
        default: The family's layer classes.

    Returns:
        The layer classes to build from.

    Raises:
        ValueError: `layer_types` is neither None nor a `LayerTypes`.
    """
    if layer_types is None:
        return default
    if not isinstance(layer_types, LayerTypes):
        raise ValueError(
            "`layer_types` must be None or a keras_reuse.applications.common.LayerTypes. "
            f"Received: layer_types={layer_types!r}"
        )
    return layer_types

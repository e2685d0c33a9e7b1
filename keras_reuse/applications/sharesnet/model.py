"""ShaResNet: residual networks sharing their 3x3 convolutions within a stage.

Boulch's ShaResNet shares one 3x3 convolution between the residual blocks of
a stage while every block keeps its own BatchNorms. Here a shared
convolution is one Keras layer called by several blocks; `share=False`
builds the ordinary network with the same layout, names and computation.

* `ShaResNet18/34/50/101/152`: ImageNet ResNets (torchvision layout: stride
  in the 3x3 conv of bottleneck blocks, no conv biases). Basic blocks share
  their second 3x3 conv across the stage; bottleneck blocks share the 3x3
  conv of every stride-1 block of the stage.
* `ShaResNet164`: pre-activation bottleneck ResNet-164 for CIFAR; blocks 2..18
  of each stage share one 3x3 conv.
* `WideShaResNet`: pre-activation Wide ResNet (depth 6n+4); blocks 2..n of
  each stage share their second 3x3 conv.

Reference:
  Alexandre Boulch. "ShaResNet: reducing residual network parameter number
  by sharing weights". arXiv:1702.08782, 2017.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras
from keras import layers

from keras_reuse.applications import common
from keras_reuse.applications.registry import register_model
from keras_reuse.layers import FusedBatchNormalization

_IMAGENET_SHAPE = (224, 224, 3)
_CIFAR_SHAPE = (32, 32, 3)


# The image data format of the network being built: every layer that has
# one is built in it. A module global would leak between builds; this is
# passed down instead, with the layer types.
@dataclasses.dataclass(frozen=True)
class _Build:
    types: common.LayerTypes
    data_format: str = "channels_last"

    @property
    def axis(self) -> int:
        return common.channel_axis(self.data_format)

    def channels(self, x: Any) -> int:
        return x.shape[self.axis]

    def conv(self, filters: int, kernel_size: int, name: str, strides: int = 1) -> layers.Conv2D:
        return layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same" if strides == 1 else "valid",
            use_bias=False,
            kernel_initializer="he_normal",
            data_format=self.data_format,
            name=name,
        )

    def apply_conv(self, x: Any, conv: layers.Conv2D) -> Any:
        """Applies `conv`, padding explicitly (PyTorch style) when it strides."""
        if conv.strides[0] > 1 and conv.kernel_size[0] > 1:
            pad = conv.kernel_size[0] // 2
            x = layers.ZeroPadding2D(pad, data_format=self.data_format, name=f"{conv.name}_pad")(x)
        return conv(x)

    def bn(self, name: str) -> layers.BatchNormalization:
        return self.types.norm(axis=self.axis, epsilon=1e-5, name=name)


# Fused for training speed on CPU; same weights and inference as Keras's.
# ShaResNets use only the norm of the three.
_LAYER_TYPES = common.LayerTypes(FusedBatchNormalization, None, None)


class _SharedConv:
    """Hands out a stage's 3x3 convolution: one shared layer or a fresh one.

    One instance per stage, so each stage shares its own layer.
    """

    def __init__(self, share: bool, filters: int, stage_name: str, build: _Build):
        self._build = build
        self._share = share
        self._filters = filters
        self._stage = stage_name
        self._layer = None

    def __call__(self, block_name: str, suffix: str) -> layers.Conv2D:
        if not self._share:
            return self._build.conv(self._filters, 3, f"{block_name}_{suffix}_conv")
        if self._layer is None:
            self._layer = self._build.conv(self._filters, 3, f"{self._stage}_shared_{suffix}_conv")
        return self._layer


# --------------------------------------------------------------- ImageNet ---


def _basic_block(x, filters, stride, name, shared: _SharedConv, b: _Build):
    if stride != 1 or b.channels(x) != filters:
        shortcut = b.conv(filters, 1, f"{name}_0_conv", strides=stride)(x)
        shortcut = b.bn(f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = b.apply_conv(x, b.conv(filters, 3, f"{name}_1_conv", strides=stride))
    x = b.bn(f"{name}_1_bn")(x)
    x = layers.ReLU(name=f"{name}_1_relu")(x)
    x = shared(name, "2")(x)
    x = b.bn(f"{name}_2_bn")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.ReLU(name=f"{name}_out")(x)


def _bottleneck_block(x, filters, stride, name, shared: _SharedConv, b: _Build):
    out_filters = 4 * filters
    if stride != 1 or b.channels(x) != out_filters:
        shortcut = b.conv(out_filters, 1, f"{name}_0_conv", strides=stride)(x)
        shortcut = b.bn(f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = b.conv(filters, 1, f"{name}_1_conv")(x)
    x = b.bn(f"{name}_1_bn")(x)
    x = layers.ReLU(name=f"{name}_1_relu")(x)
    # Strided blocks keep their own 3x3 conv: its stride differs.
    conv = shared(name, "2") if stride == 1 else b.conv(filters, 3, f"{name}_2_conv", stride)
    x = b.apply_conv(x, conv)
    x = b.bn(f"{name}_2_bn")(x)
    x = layers.ReLU(name=f"{name}_2_relu")(x)
    x = b.conv(out_filters, 1, f"{name}_3_conv")(x)
    x = b.bn(f"{name}_3_bn")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.ReLU(name=f"{name}_out")(x)


# depth -> (block, blocks per stage): torchvision's (and Boulch's) table.
_IMAGENET_STAGES = {
    18: (_basic_block, (2, 2, 2, 2)),
    34: (_basic_block, (3, 4, 6, 3)),
    50: (_bottleneck_block, (3, 4, 6, 3)),
    101: (_bottleneck_block, (3, 4, 23, 3)),
    152: (_bottleneck_block, (3, 8, 36, 3)),
}


def _build_imagenet(
    depth: int,
    num_classes: int = 1000,
    share: bool = True,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classifier_activation: Any = "softmax",
    name: str | None = None,
    *,
    data_format: str | None = None,
    layer_types: common.LayerTypes | None = None,
) -> keras.Model:
    """ShaResNet-`depth` in the torchvision layout (see `ShaResNet50`)."""
    block_fn, blocks = _IMAGENET_STAGES[depth]
    data_format = common.resolve_data_format(data_format)
    layer_types = common.resolve_layer_types(layer_types, _LAYER_TYPES)
    common.check_positive_int("num_classes", num_classes)
    common.check_bool("share", share)
    common.check_top_arguments(include_top, pooling, weights, classifier_activation)
    input_shape = common.resolve_input_shape(
        input_shape, input_tensor, _IMAGENET_SHAPE, 32, data_format
    )
    common.check_runs(data_format)
    img_input, inputs = common.model_inputs(input_shape, input_tensor)
    build = _Build(layer_types, data_format)
    fmt = data_format

    x = layers.ZeroPadding2D(3, data_format=fmt, name="conv1_pad")(img_input)
    x = build.conv(64, 7, "conv1_conv", strides=2)(x)
    x = build.bn("conv1_bn")(x)
    x = layers.ReLU(name="conv1_relu")(x)
    # Zero padding equals -inf padding here: the input is post-ReLU.
    x = layers.ZeroPadding2D(1, data_format=fmt, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, data_format=fmt, name="pool1_pool")(x)

    for stage, num_blocks in enumerate(blocks):
        filters = 64 * 2**stage
        stage_name = f"conv{stage + 2}"
        shared = _SharedConv(share, filters, stage_name, build)
        for b in range(num_blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            x = block_fn(x, filters, stride, f"{stage_name}_block{b + 1}", shared, build)

    if include_top:
        x = layers.GlobalAveragePooling2D(data_format=fmt, name="avg_pool")(x)
        x = layers.Dense(num_classes, name="fc")(x)
        x = common.classifier_output(x, classifier_activation)
    else:
        x = common.pool_features(x, pooling, fmt)
    return common.finish_model(inputs, x, name or f"sharesnet{depth}", weights)


@register_model("sharesnet18")
def ShaResNet18(
    num_classes: int = 1000,
    share: bool = True,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classifier_activation: Any = "softmax",
    name: str | None = None,
    *,
    data_format: str | None = None,
    layer_types: common.LayerTypes | None = None,
) -> keras.Model:
    """Instantiates ShaResNet-18 (ImageNet layout, basic blocks).

    With `share=True` the second 3x3 conv of every block in a stage is one
    shared layer; `share=False` gives the plain ResNet-18.

    Args:
        num_classes: Number of classes for the classifier.
        share: Share the stage's 3x3 convolutions (ShaResNet) or not (ResNet).
        include_top: Whether to include the global pooling and classifier.
        weights: None (random initialization) or the path to a weights file.
        input_tensor: Optional Keras tensor to use as image input.
        input_shape: `(height, width, channels)` (channels first:
            `(channels, height, width)`), at least 32x32. Defaults to
            `(224, 224, 3)`.
        pooling: Feature pooling when `include_top=False`: None, "avg", "max".
        classifier_activation: Activation of the output; None gives logits.
        name: Model name; defaults to "sharesnet{depth}".
        data_format: "channels_last", "channels_first" or None (default):
            `keras.config.image_data_format()`. The weights are the same in
            both. Refused where the backend cannot run it.
        layer_types: The classes of the BatchNorm layers to build from
            (`keras_reuse.applications.common.LayerTypes`); None (default):
            the package's. Stock Keras layers here build the same network
            from Keras's own layers, e.g. to compare speed.

    Returns:
        A `keras.Model`.
    """
    return _build_imagenet(
        18,
        num_classes,
        share,
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classifier_activation,
        name,
        data_format=data_format,
        layer_types=layer_types,
    )


@register_model("sharesnet34")
def ShaResNet34(
    num_classes: int = 1000,
    share: bool = True,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classifier_activation: Any = "softmax",
    name: str | None = None,
    *,
    data_format: str | None = None,
    layer_types: common.LayerTypes | None = None,
) -> keras.Model:
    """Instantiates ShaResNet-34 (ImageNet layout, basic blocks).

    ShaResNet-18's sharing over stages of 3, 4, 6 and 3 blocks;
    `share=False` gives the plain ResNet-34.

    Args:
        num_classes: Number of classes for the classifier.
        share: Share the stage's 3x3 convolutions (ShaResNet) or not (ResNet).
        include_top: Whether to include the global pooling and classifier.
        weights: None (random initialization) or the path to a weights file.
        input_tensor: Optional Keras tensor to use as image input.
        input_shape: `(height, width, channels)` (channels first:
            `(channels, height, width)`), at least 32x32. Defaults to
            `(224, 224, 3)`.
        pooling: Feature pooling when `include_top=False`: None, "avg", "max".
        classifier_activation: Activation of the output; None gives logits.
        name: Model name; defaults to "sharesnet{depth}".
        data_format: "channels_last", "channels_first" or None (default):
            `keras.config.image_data_format()`. The weights are the same in
            both. Refused where the backend cannot run it.
        layer_types: The classes of the BatchNorm layers to build from
            (`keras_reuse.applications.common.LayerTypes`); None (default):
            the package's. Stock Keras layers here build the same network
            from Keras's own layers, e.g. to compare speed.

    Returns:
        A `keras.Model`.
    """
    return _build_imagenet(
        34,
        num_classes,
        share,
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classifier_activation,
        name,
        data_format=data_format,
        layer_types=layer_types,
    )


@register_model("sharesnet50")
def ShaResNet50(
    num_classes: int = 1000,
    share: bool = True,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classifier_activation: Any = "softmax",
    name: str | None = None,
    *,
    data_format: str | None = None,
    layer_types: common.LayerTypes | None = None,
) -> keras.Model:
    """Instantiates ShaResNet-50 (ImageNet layout, bottleneck blocks).

    With `share=True` the 3x3 conv of every stride-1 block in a stage is one
    shared layer (the paper's ShaResNet); `share=False` gives the plain
    ResNet-50.

    Args:
        num_classes: Number of classes for the classifier.
        share: Share the stage's 3x3 convolutions (ShaResNet) or not (ResNet).
        include_top: Whether to include the global pooling and classifier.
        weights: None (random initialization) or the path to a weights file.
        input_tensor: Optional Keras tensor to use as image input.
        input_shape: `(height, width, channels)` (channels first:
            `(channels, height, width)`), at least 32x32. Defaults to
            `(224, 224, 3)`.
        pooling: Feature pooling when `include_top=False`: None, "avg", "max".
        classifier_activation: Activation of the output; None gives logits.
        name: Model name; defaults to "sharesnet{depth}".
        data_format: "channels_last", "channels_first" or None (default):
            `keras.config.image_data_format()`. The weights are the same in
            both. Refused where the backend cannot run it.
        layer_types: The classes of the BatchNorm layers to build from
            (`keras_reuse.applications.common.LayerTypes`); None (default):
            the package's. Stock Keras layers here build the same network
            from Keras's own layers, e.g. to compare speed.

    Returns:
        A `keras.Model`.
    """
    return _build_imagenet(
        50,
        num_classes,
        share,
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classifier_activation,
        name,
        data_format=data_format,
        layer_types=layer_types,
    )


@register_model("sharesnet101")
def ShaResNet101(
    num_classes: int = 1000,
    share: bool = True,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classifier_activation: Any = "softmax",
    name: str | None = None,
    *,
    data_format: str | None = None,
    layer_types: common.LayerTypes | None = None,
) -> keras.Model:
    """Instantiates ShaResNet-101 (ImageNet layout, bottleneck blocks).

    ShaResNet-50's sharing over stages of 3, 4, 23 and 3 blocks;
    `share=False` gives the plain ResNet-101.

    Args:
        num_classes: Number of classes for the classifier.
        share: Share the stage's 3x3 convolutions (ShaResNet) or not (ResNet).
        include_top: Whether to include the global pooling and classifier.
        weights: None (random initialization) or the path to a weights file.
        input_tensor: Optional Keras tensor to use as image input.
        input_shape: `(height, width, channels)` (channels first:
            `(channels, height, width)`), at least 32x32. Defaults to
            `(224, 224, 3)`.
        pooling: Feature pooling when `include_top=False`: None, "avg", "max".
        classifier_activation: Activation of the output; None gives logits.
        name: Model name; defaults to "sharesnet{depth}".
        data_format: "channels_last", "channels_first" or None (default):
            `keras.config.image_data_format()`. The weights are the same in
            both. Refused where the backend cannot run it.
        layer_types: The classes of the BatchNorm layers to build from
            (`keras_reuse.applications.common.LayerTypes`); None (default):
            the package's. Stock Keras layers here build the same network
            from Keras's own layers, e.g. to compare speed.

    Returns:
        A `keras.Model`.
    """
    return _build_imagenet(
        101,
        num_classes,
        share,
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classifier_activation,
        name,
        data_format=data_format,
        layer_types=layer_types,
    )


@register_model("sharesnet152")
def ShaResNet152(
    num_classes: int = 1000,
    share: bool = True,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classifier_activation: Any = "softmax",
    name: str | None = None,
    *,
    data_format: str | None = None,
    layer_types: common.LayerTypes | None = None,
) -> keras.Model:
    """Instantiates ShaResNet-152 (ImageNet layout, bottleneck blocks).

    ShaResNet-50's sharing over stages of 3, 8, 36 and 3 blocks, the
    paper's headline network; `share=False` gives the plain ResNet-152.

    Args:
        num_classes: Number of classes for the classifier.
        share: Share the stage's 3x3 convolutions (ShaResNet) or not (ResNet).
        include_top: Whether to include the global pooling and classifier.
        weights: None (random initialization) or the path to a weights file.
        input_tensor: Optional Keras tensor to use as image input.
        input_shape: `(height, width, channels)` (channels first:
            `(channels, height, width)`), at least 32x32. Defaults to
            `(224, 224, 3)`.
        pooling: Feature pooling when `include_top=False`: None, "avg", "max".
        classifier_activation: Activation of the output; None gives logits.
        name: Model name; defaults to "sharesnet{depth}".
        data_format: "channels_last", "channels_first" or None (default):
            `keras.config.image_data_format()`. The weights are the same in
            both. Refused where the backend cannot run it.
        layer_types: The classes of the BatchNorm layers to build from
            (`keras_reuse.applications.common.LayerTypes`); None (default):
            the package's. Stock Keras layers here build the same network
            from Keras's own layers, e.g. to compare speed.

    Returns:
        A `keras.Model`.
    """
    return _build_imagenet(
        152,
        num_classes,
        share,
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classifier_activation,
        name,
        data_format=data_format,
        layer_types=layer_types,
    )


# ------------------------------------------------------------------ CIFAR ---


def _preact(x, name, b: _Build):
    x = b.bn(f"{name}_preact_bn")(x)
    return layers.ReLU(name=f"{name}_preact_relu")(x)


def _preact_bottleneck_block(x, filters, stride, name, conv3x3, b: _Build):
    out_filters = 4 * filters
    preact = _preact(x, name, b)
    if stride != 1 or b.channels(x) != out_filters:
        shortcut = b.conv(out_filters, 1, f"{name}_0_conv", strides=stride)(preact)
    else:
        shortcut = x
    x = b.conv(filters, 1, f"{name}_1_conv")(preact)
    x = b.bn(f"{name}_1_bn")(x)
    x = layers.ReLU(name=f"{name}_1_relu")(x)
    x = b.apply_conv(x, conv3x3)
    x = b.bn(f"{name}_2_bn")(x)
    x = layers.ReLU(name=f"{name}_2_relu")(x)
    x = b.conv(out_filters, 1, f"{name}_3_conv")(x)
    return layers.Add(name=f"{name}_add")([shortcut, x])


def _wide_block(x, filters, stride, name, conv3x3, b: _Build, dropout):
    preact = _preact(x, name, b)
    if stride != 1 or b.channels(x) != filters:
        shortcut = b.conv(filters, 1, f"{name}_0_conv", strides=stride)(preact)
    else:
        shortcut = x
    x = b.apply_conv(preact, b.conv(filters, 3, f"{name}_1_conv", strides=stride))
    x = b.bn(f"{name}_1_bn")(x)
    x = layers.ReLU(name=f"{name}_1_relu")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = b.apply_conv(x, conv3x3)
    return layers.Add(name=f"{name}_add")([shortcut, x])


def _build_cifar(
    block_fn: Callable,
    conv3x3_strides: bool,
    widths: tuple[int, int, int],
    num_blocks: int,
    share: bool,
    num_classes: int,
    include_top: bool,
    weights: Any,
    input_tensor: Any,
    input_shape: Any,
    pooling: Any,
    classifier_activation: Any,
    name: str,
    layer_types: common.LayerTypes | None,
    data_format: str | None,
) -> keras.Model:
    """Pre-activation CIFAR ResNet; block 1 of each stage owns its 3x3 conv.

    `conv3x3_strides` says whether the conv that the other blocks share is
    the one that strides in block 1 (bottleneck) or not (wide basic block).
    """
    data_format = common.resolve_data_format(data_format)
    layer_types = common.resolve_layer_types(layer_types, _LAYER_TYPES)
    common.check_positive_int("num_classes", num_classes)
    common.check_bool("share", share)
    common.check_top_arguments(include_top, pooling, weights, classifier_activation)
    input_shape = common.resolve_input_shape(
        input_shape, input_tensor, _CIFAR_SHAPE, 8, data_format
    )
    common.check_runs(data_format)
    img_input, inputs = common.model_inputs(input_shape, input_tensor)
    build = _Build(layer_types, data_format)

    x = build.conv(16, 3, "conv1_conv")(img_input)
    for stage, filters in enumerate(widths):
        stage_name = f"conv{stage + 2}"
        shared = _SharedConv(share, filters, stage_name, build)
        for b in range(num_blocks):
            block_name = f"{stage_name}_block{b + 1}"
            stride = 2 if stage > 0 and b == 0 else 1
            if b == 0:
                own_stride = stride if conv3x3_strides else 1
                conv3x3 = build.conv(filters, 3, f"{block_name}_2_conv", strides=own_stride)
            else:
                conv3x3 = shared(block_name, "2")
            x = block_fn(x, filters, stride, block_name, conv3x3, build)
    x = build.bn("post_bn")(x)
    x = layers.ReLU(name="post_relu")(x)

    if include_top:
        x = layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
        x = layers.Dense(num_classes, name="fc")(x)
        x = common.classifier_output(x, classifier_activation)
    else:
        x = common.pool_features(x, pooling, data_format)
    return common.finish_model(inputs, x, name, weights)


@register_model("sharesnet164")
def ShaResNet164(
    num_classes: int = 10,
    share: bool = True,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classifier_activation: Any = "softmax",
    name: str = "sharesnet164",
    *,
    data_format: str | None = None,
    layer_types: common.LayerTypes | None = None,
) -> keras.Model:
    """Instantiates the pre-activation bottleneck ShaResNet-164 for CIFAR.

    Three stages of 18 bottleneck blocks (16 -> 64, 128, 256 channels). With
    `share=True` blocks 2..18 of a stage share one 3x3 conv (1.70M -> 0.93M
    parameters for 10 classes).

    Args:
        num_classes: Number of classes for the classifier.
        share: Share the stage's 3x3 convolutions (ShaResNet) or not (ResNet).
        include_top: Whether to include the global pooling and classifier.
        weights: None (random initialization) or the path to a weights file.
        input_tensor: Optional Keras tensor to use as image input.
        input_shape: `(height, width, channels)` (channels first:
            `(channels, height, width)`), at least 8x8. Defaults to
            `(32, 32, 3)`.
        pooling: Feature pooling when `include_top=False`: None, "avg", "max".
        classifier_activation: Activation of the output; None gives logits.
        name: Model name.
        data_format: "channels_last", "channels_first" or None (default):
            `keras.config.image_data_format()`. The weights are the same in
            both. Refused where the backend cannot run it.
        layer_types: The classes of the BatchNorm layers to build from
            (`keras_reuse.applications.common.LayerTypes`); None (default):
            the package's. Stock Keras layers here build the same network
            from Keras's own layers, e.g. to compare speed.

    Returns:
        A `keras.Model`.
    """
    return _build_cifar(
        _preact_bottleneck_block,
        True,
        (16, 32, 64),
        18,
        share,
        num_classes,
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classifier_activation,
        name,
        layer_types,
        data_format,
    )


@register_model("wide_sharesnet")
def WideShaResNet(
    depth: int = 28,
    width: int = 10,
    num_classes: int = 100,
    dropout: float = 0.0,
    share: bool = True,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classifier_activation: Any = "softmax",
    name: str | None = None,
    *,
    data_format: str | None = None,
    layer_types: common.LayerTypes | None = None,
) -> keras.Model:
    """Instantiates a pre-activation Wide ShaResNet (WRN-depth-width).

    Three stages of `(depth - 4) / 6` basic blocks with `16 * width`,
    `32 * width` and `64 * width` channels. With `share=True` blocks 2..n of
    a stage share their second 3x3 conv.

    Args:
        depth: Network depth, of the form 6n + 4 (e.g. 16, 22, 28, 40).
        width: Width factor k.
        num_classes: Number of classes for the classifier.
        dropout: Dropout rate between the two convs of each block.
        share: Share the stage's second 3x3 convolutions or not.
        include_top: Whether to include the global pooling and classifier.
        weights: None (random initialization) or the path to a weights file.
        input_tensor: Optional Keras tensor to use as image input.
        input_shape: `(height, width, channels)` (channels first:
            `(channels, height, width)`), at least 8x8. Defaults to
            `(32, 32, 3)`.
        pooling: Feature pooling when `include_top=False`: None, "avg", "max".
        classifier_activation: Activation of the output; None gives logits.
        name: Model name; defaults to "wide_sharesnet{depth}_{width}".
        data_format: "channels_last", "channels_first" or None (default):
            `keras.config.image_data_format()`. The weights are the same in
            both. Refused where the backend cannot run it.
        layer_types: The classes of the BatchNorm layers to build from
            (`keras_reuse.applications.common.LayerTypes`); None (default):
            the package's. Stock Keras layers here build the same network
            from Keras's own layers, e.g. to compare speed.

    Returns:
        A `keras.Model`.
    """
    common.check_positive_int("depth", depth)
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(
            f"`depth` must be of the form 6n + 4 with n >= 1 (10, 16, 22, 28, ...). "
            f"Received: depth={depth!r}"
        )
    common.check_positive_int("width", width)
    common.check_rate("dropout", dropout)

    def block(x, filters, stride, block_name, conv3x3, build):
        return _wide_block(x, filters, stride, block_name, conv3x3, build, dropout)

    return _build_cifar(
        block,
        False,
        (16 * width, 32 * width, 64 * width),
        (depth - 4) // 6,
        share,
        num_classes,
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classifier_activation,
        name or f"wide_sharesnet{depth}_{width}",
        layer_types,
        data_format,
    )

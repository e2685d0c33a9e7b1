"""LruNet: "Convolutional Neural Networks with Layer Reuse" (Köpüklü et al., 2019).

Each of the four stages owns one depthwise 3x3 convolution and one grouped
1x1 convolution and applies them `layer_reuse` times in a row; in Keras that
is simply calling the same layer objects repeatedly. BatchNorms are per
iteration. The network is the authors' PyTorch `LruNet` operation for
operation, so their published checkpoints load into it
(`keras_reuse.applications.lrunet.checkpoint`).

Reference:
  Okan Köpüklü, Maryam Babaee, Stefan Hörmann, Gerhard Rigoll.
  "Convolutional Neural Networks with Layer Reuse". ICIP 2019,
  arXiv:1901.09615.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np
from keras import layers

from keras_reuse.applications import common
from keras_reuse.applications.lrunet import presets as lrunet_presets
from keras_reuse.applications.lrunet.stage import BN_WEIGHTS, LruStage, resolve_reuse_loop
from keras_reuse.applications.registry import register_model, register_preset
from keras_reuse.layers import (
    ChannelShuffle,
    DepthwiseConv2D,
    FusedBatchNormalization,
    GroupedPointwiseConv,
)
from keras_reuse.layers.ops import conv_kernel_initializer

PLANES = (64, 128, 256, 512)
_HEAD_PLANES = 256
_STEM_FILTERS = 64
_GROUPS = 8
_MIN_SIZE = 28


# The fused BatchNorm and the oneDNN-friendly depthwise subclasses: same
# weights and semantics as Keras's, much faster training.
_LAYER_TYPES = common.LayerTypes(
    FusedBatchNormalization, GroupedPointwiseConv, ChannelShuffle, DepthwiseConv2D
)


def _batch_norm(
    name: str, types: common.LayerTypes, data_format: str = "channels_last"
) -> layers.BatchNormalization:
    # PyTorch's BatchNorm2d defaults (eps 1e-5, momentum 0.1 == Keras 0.9).
    axis = common.channel_axis(data_format)
    return types.norm(axis=axis, momentum=0.9, epsilon=1e-5, name=name)


def _max_pool(x: Any, name: str, data_format: str = "channels_last") -> Any:
    # PyTorch's MaxPool2d(3, stride=2, padding=1) pads one pixel on every
    # side; Keras 'same' pads only after, which shifts every window. The
    # input is post-ReLU (>= 0), so zero padding is exactly -inf padding.
    x = layers.ZeroPadding2D(1, data_format=data_format, name=f"{name}_pad")(x)
    return layers.MaxPooling2D(3, strides=2, data_format=data_format, name=name)(x)


def _concat_self(x: Any, copies: int, name: str, data_format: str = "channels_last") -> Any:
    return layers.Concatenate(axis=common.channel_axis(data_format), name=name)([x] * copies)


def _lru_stage(
    x: Any,
    planes: int,
    layer_reuse: int,
    prefix: str,
    types: common.LayerTypes,
    data_format: str = "channels_last",
) -> Any:
    """One LruNet stage (layers named `{prefix}_*`): a dw+pw pair applied `layer_reuse` times."""
    depthwise = types.depthwise(
        3,
        padding="same",
        depth_multiplier=2,
        use_bias=False,
        depthwise_initializer=conv_kernel_initializer(),
        data_format=data_format,
        name=f"{prefix}_dw",
    )
    pointwise = types.pointwise(
        planes, groups=_GROUPS, data_format=data_format, name=f"{prefix}_pw"
    )
    for i in range(1, layer_reuse + 1):
        it = f"{prefix}_reuse{i}"
        residual = x
        x = depthwise(x)
        x = _batch_norm(f"{it}_dw_bn", types, data_format)(x)
        x = pointwise(x)
        x = _batch_norm(f"{it}_pw_bn", types, data_format)(x)
        x = layers.Add(name=f"{it}_add")([x, residual])
        x = layers.ReLU(name=f"{it}_relu")(x)
        if i < layer_reuse:
            x = types.shuffle(2, swap_halves=True, data_format=data_format, name=f"{it}_shuffle")(x)
    return x


def _lru_stage_loop(
    x: Any,
    planes: int,
    layer_reuse: int,
    stage: int,
    recompute: bool = False,
    data_format: str = "channels_last",
) -> Any:
    """The same stage as one `LruStage` layer (named `stage{k}`): a traced loop.

    At N=1 `LruStage`'s default traces the one iteration without a loop,
    except under JAX (see its `unroll` argument).
    """
    return LruStage(
        planes,
        layer_reuse,
        groups=_GROUPS,
        momentum=0.9,
        epsilon=1e-5,
        recompute=recompute,
        data_format=data_format,
        name=f"stage{stage}",
    )(x)


def _stage_weights(model: keras.Model) -> dict[str, list]:
    """Every weighted layer's weights by unrolled layer name (looped stages split)."""
    out: dict[str, list] = {}
    for layer in model.layers:
        if isinstance(layer, LruStage):
            k = layer.name
            out[f"{k}_dw"] = [keras.ops.convert_to_numpy(layer.depthwise_kernel)]
            out[f"{k}_pw"] = [keras.ops.convert_to_numpy(layer.pointwise_kernel)]
            for kind in ("dw_bn", "pw_bn"):
                stacks = [
                    keras.ops.convert_to_numpy(getattr(layer, f"{kind}_{w}")) for w in BN_WEIGHTS
                ]
                for i in range(layer.layer_reuse):
                    out[f"{k}_reuse{i + 1}_{kind}"] = [s[i] for s in stacks]
        elif layer.weights:
            out[layer.name] = layer.get_weights()
    return out


def convert_reuse_weights(source: keras.Model, target: keras.Model) -> keras.Model:
    """Copies every weight of `source` into `target`, unrolled <-> looped.

    The two are LruNets of the same configuration; either may be built with
    `reuse_loop=True`. A looped stage `stage{k}` takes `stage{k}_dw`'s and
    `stage{k}_pw`'s kernels and stacks row `i-1` of each BatchNorm weight
    from `stage{k}_reuse{i}_dw_bn` / `_pw_bn`; the other direction slices.

    Returns:
        `target`.

    Raises:
        ValueError: if a layer of `target` has no counterpart in `source`.
    """
    weights = _stage_weights(source)
    for layer in target.layers:
        if isinstance(layer, LruStage):
            k = layer.name
            names = [f"{k}_dw", f"{k}_pw"] + [
                f"{k}_reuse{i + 1}_{kind}"
                for kind in ("dw_bn", "pw_bn")
                for i in range(layer.layer_reuse)
            ]
            missing = [n for n in names if n not in weights]
            if missing:
                raise ValueError(f"Layer {k!r}: source model {source.name!r} has no {missing[0]!r}")
            layer.depthwise_kernel.assign(weights[f"{k}_dw"][0])
            layer.pointwise_kernel.assign(weights[f"{k}_pw"][0])
            for kind in ("dw_bn", "pw_bn"):
                rows = [weights[f"{k}_reuse{i + 1}_{kind}"] for i in range(layer.layer_reuse)]
                for j, w in enumerate(BN_WEIGHTS):
                    getattr(layer, f"{kind}_{w}").assign(np.stack([r[j] for r in rows]))
        elif layer.weights:
            if layer.name not in weights:
                raise ValueError(
                    f"Layer {layer.name!r}: source model {source.name!r} has no such layer"
                )
            layer.set_weights(weights[layer.name])
    return target


def unroll_reuse_loops(model: keras.Model) -> keras.Model:
    """The same network with every looped stage unrolled, weights copied.

    Each `LruStage` (from `LruNet(reuse_loop=True)`) becomes the published
    layout's layers (`stage{k}_dw`, `stage{k}_pw`, `stage{k}_reuse{i}_*`);
    every other layer is cloned as it is (`keras.models.clone_model`). The
    result computes the same function with the same weights, for tools that
    want one layer per call (TFLite export keeps the shared kernels single
    only in that form). A model without looped stages is returned as is.

    Args:
        model: A functional Keras model, e.g. `LruNet(..., reuse_loop=True)`.

    Returns:
        The unrolled model (a new one), or `model` if it has no `LruStage`.

    Raises:
        ValueError: for a looped stage whose configuration the unrolled
            LruNet stage cannot express (groups, depth multiplier,
            momentum, epsilon other than LruNet's).
    """
    stages = [layer for layer in model.layers if isinstance(layer, LruStage)]
    if not stages:
        return model
    for layer in stages:
        config = (layer.groups, layer.depth_multiplier, layer.momentum, layer.epsilon)
        if config != (_GROUPS, 2, 0.9, 1e-5):
            raise ValueError(
                f"Layer {layer.name!r}: only LruNet's stages (groups={_GROUPS}, "
                "depth_multiplier=2, momentum=0.9, epsilon=1e-5) can be unrolled. Received: "
                f"groups={layer.groups}, depth_multiplier={layer.depth_multiplier}, "
                f"momentum={layer.momentum}, epsilon={layer.epsilon}"
            )

    def call(layer: keras.layers.Layer, *args: Any, **kwargs: Any) -> Any:
        if isinstance(layer, LruStage):
            return _lru_stage(
                args[0],
                layer.filters,
                layer.layer_reuse,
                layer.name,
                _LAYER_TYPES,
                layer.data_format,
            )
        return layer(*args, **kwargs)

    unrolled = keras.models.clone_model(model, call_function=call)
    return convert_reuse_weights(model, unrolled)


def check_width(width_multiplier: Any) -> tuple[int, ...]:
    if isinstance(width_multiplier, bool) or not isinstance(width_multiplier, (int, float)):
        raise ValueError(
            "`width_multiplier` must be a positive number. "
            f"Received: width_multiplier={width_multiplier!r}"
        )
    scaled = PLANES[0] * width_multiplier
    # Every stage width and the head must split into 8 groups of whole
    # channels; the head (256w) and later stages are multiples of stage 1.
    if width_multiplier <= 0 or scaled != int(scaled) or int(scaled) % _GROUPS:
        raise ValueError(
            "`width_multiplier` must make 64 * width_multiplier a positive "
            f"multiple of {_GROUPS} (the group count), e.g. 0.5, 1.0, 1.5, 2.0. "
            f"Received: width_multiplier={width_multiplier!r}"
        )
    return tuple(int(p * width_multiplier) for p in PLANES)


@register_model("lrunet")
def LruNet(
    num_classes: int | None = None,
    layer_reuse: int = 14,
    width_multiplier: float = 1.0,
    dropout: float = 0.5,
    input_shape: tuple | None = None,
    input_tensor: Any = None,
    include_top: bool = True,
    pooling: str | None = None,
    weights: str | None = None,
    classifier_activation: Any = "softmax",
    name: str = "lrunet",
    *,
    data_format: str | None = None,
    reuse_loop: bool | None = None,
    recompute: bool = False,
    layer_types: common.LayerTypes | None = None,
) -> keras.Model:
    """Instantiates the LruNet architecture (N-LruNet-kx in the paper).

    Args:
        num_classes: Number of classes for the classifier head. Defaults
            to the published model's with pretrained `weights`, else 10.
        layer_reuse: How many times each stage applies its convolutions (N).
        width_multiplier: Width factor k; stage widths are
            `[64, 128, 256, 512] * k`. The published models use 1 and 2.
        dropout: Dropout rate before the classifier convolution.
        input_shape: `(height, width, channels)`, or `(channels, height,
            width)` channels first; at least 28x28. Defaults to
            `(32, 32, 3)` (`(3, 32, 32)`); Fashion-MNIST models use
            `(28, 28, 1)` (`(1, 28, 28)`).
        input_tensor: Optional Keras tensor to use as image input.
        include_top: Whether to include the classifier head. Without it the
            model ends after the last stage's max pool.
        pooling: Feature pooling when `include_top=False`: None (4D
            output), "avg" or "max".
        weights: None (random initialization); "cifar10", "cifar100" or
            "fashion_mnist", the authors' published model of that dataset
            at this `layer_reuse` and `width_multiplier` (shipped with the
            package, see `lrunet_presets.PRESETS`; the input shape defaults
            to the dataset's, and `include_top=False` loads the backbone);
            or the path to a weights file saved from a model of the same
            configuration.
        classifier_activation: Activation of the output. `None` returns the
            logits of the reference network.
        name: Model name.
        data_format: "channels_last", "channels_first" or None (default):
            `keras.config.image_data_format()`, as keras.applications and
            keras-hub's backbones. The weights (published ones included)
            are the same in both formats; the outputs too, for inputs
            transposed. Refused, before anything is built, where the
            backend cannot run it (TensorFlow's CPU without oneDNN cannot
            run channels-first convolutions).
        reuse_loop: Build each stage as one `LruStage` layer that runs its
            iterations in a traced loop (`keras.ops.fori_loop`) instead of
            unrolling them in the graph: same arithmetic and weights (stacked
            per stage, see `keras_reuse.applications.lrunet.stage`), a trace and an XLA
            compile that do not grow with `layer_reuse`. None (default):
            `keras_reuse.applications.lrunet.stage.default_reuse_loop()`, looped under JAX
            and under TensorFlow with a GPU (where XLA compiles), unrolled
            otherwise. Published weights and weights files of either layout
            load into both (through `convert_reuse_weights`).
        recompute: Trade training time for memory on TensorFlow: the looped
            stages keep 2C instead of about 8C activations per position
            for the backward pass and recompute the rest there
            (`keras_reuse.applications.lrunet.recompute`; slower, in a
            fraction of the live memory: docs/reports/memory.md). Implies
            `reuse_loop=True`; refused with `reuse_loop=False`.
        layer_types: The classes of the BatchNorm, grouped 1x1 convolution
            and channel shuffle layers to build from
            (`keras_reuse.applications.common.LayerTypes`); None (default):
            the package's. Stock Keras layers here build the same network
            from Keras's own layers, e.g. to compare speed.

    Returns:
        A `keras.Model`.
    """
    data_format = common.resolve_data_format(data_format)
    layer_types = common.resolve_layer_types(layer_types, _LAYER_TYPES)
    common.check_positive_int("layer_reuse", layer_reuse)
    if not isinstance(recompute, bool):
        raise ValueError(f"`recompute` must be True or False. Received: recompute={recompute!r}")
    if recompute and reuse_loop is False:
        raise ValueError(
            "`recompute=True` recomputes inside the looped stages: pass reuse_loop=True "
            "or None. Received: reuse_loop=False"
        )
    reuse_loop = True if recompute else resolve_reuse_loop(reuse_loop)
    if lrunet_presets.is_preset_name(weights):
        saved_looped = False  # the published files are unrolled
    elif isinstance(weights, str) and os.path.isfile(weights):
        saved_looped = _saved_looped(weights)
    else:
        saved_looped = reuse_loop
    if saved_looped != reuse_loop:
        # Load the weights into the layout they were saved from, convert.
        source = LruNet(
            num_classes,
            layer_reuse,
            width_multiplier,
            dropout,
            input_shape,
            input_tensor,
            include_top,
            pooling,
            weights,
            classifier_activation,
            name,
            data_format=data_format,
            reuse_loop=saved_looped,
        )
        target = LruNet(
            source.output_shape[-1] if include_top else num_classes,
            layer_reuse,
            width_multiplier,
            dropout,
            tuple(source.input_shape[1:]),
            input_tensor,
            include_top,
            pooling,
            None,
            classifier_activation,
            name,
            data_format=data_format,
            reuse_loop=reuse_loop,
            recompute=recompute,
        )
        return convert_reuse_weights(source, target)
    planes = check_width(width_multiplier)
    preset = None
    if lrunet_presets.is_preset_name(weights):
        preset = lrunet_presets.find_preset(weights, layer_reuse, width_multiplier)
        num_classes = _preset_classes(preset, num_classes, include_top)
        weights = None
    elif isinstance(weights, str) and not os.path.isfile(weights):
        raise ValueError(
            "`weights` must be None, a published dataset ("
            + ", ".join(repr(d) for d in lrunet_presets.DATASETS)
            + f") or the path to a weights file. Received: weights={weights!r}"
        )
    num_classes = 10 if num_classes is None else num_classes
    common.check_positive_int("num_classes", num_classes)
    common.check_rate("dropout", dropout)
    common.check_top_arguments(include_top, pooling, weights, classifier_activation)
    default_shape = preset.input_shape if preset else (32, 32, 3)
    input_shape = common.resolve_input_shape(
        input_shape, input_tensor, default_shape, _MIN_SIZE, data_format
    )
    common.check_runs(data_format)
    channels = input_shape[0] if data_format == "channels_first" else input_shape[-1]
    preset_path = None
    if preset is not None:
        if channels != preset.input_shape[-1]:
            raise ValueError(
                f"weights={preset.dataset!r} was trained on {preset.input_shape[-1]}-channel "
                f"images {preset.input_shape}. Received: input_shape={input_shape!r}"
            )
        preset_path = lrunet_presets.verified_weights_path(preset)
    img_input, inputs = common.model_inputs(input_shape, input_tensor)

    # The authors' stem always has 64 filters and is duplicated for the 2x
    # model; widths that are not a multiple of 64 get a stem of their own.
    stem_filters = _STEM_FILTERS if planes[0] % _STEM_FILTERS == 0 else planes[0]
    fmt = data_format
    x = layers.ZeroPadding2D(1, data_format=fmt, name="stem_pad")(img_input)
    x = layers.Conv2D(
        stem_filters,
        3,
        strides=2,
        use_bias=False,
        kernel_initializer=conv_kernel_initializer(),
        data_format=fmt,
        name="stem_conv",
    )(x)
    x = _batch_norm("stem_bn", layer_types, fmt)(x)
    x = layers.ReLU(name="stem_relu")(x)
    if planes[0] != stem_filters:
        x = _concat_self(x, planes[0] // stem_filters, "stem_concat", fmt)

    def stage(x: Any, planes: int, reuse: int, k: int) -> Any:
        if reuse_loop:
            return _lru_stage_loop(x, planes, reuse, k, recompute, fmt)
        return _lru_stage(x, planes, reuse, f"stage{k}", layer_types, fmt)

    x = stage(x, planes[0], layer_reuse, 1)
    x = _max_pool(x, "stage1_pool", fmt)
    x = _concat_self(x, 2, "stage1_concat", fmt)
    x = stage(x, planes[1], layer_reuse, 2)
    x = _max_pool(x, "stage2_pool", fmt)
    x = _concat_self(x, 2, "stage2_concat", fmt)
    x = stage(x, planes[2], layer_reuse, 3)
    x = _concat_self(x, 2, "stage3_concat", fmt)
    x = stage(x, planes[3], layer_reuse, 4)
    x = _max_pool(x, "stage4_pool", fmt)

    if include_top:
        head = int(_HEAD_PLANES * width_multiplier)
        x = layer_types.pointwise(head, groups=_GROUPS, data_format=fmt, name="head_pw")(x)
        x = _batch_norm("head_bn", layer_types, fmt)(x)
        x = layers.ReLU(name="head_relu")(x)
        x = layers.Dropout(dropout, name="head_dropout")(x)
        x = layers.Conv2D(
            num_classes,
            1,
            kernel_initializer=conv_kernel_initializer(),
            data_format=fmt,
            name="head_logits_conv",
        )(x)
        x = layers.ReLU(name="head_logits_relu")(x)
        x = layers.GlobalAveragePooling2D(data_format=fmt, name="avg_pool")(x)
        x = common.classifier_output(x, classifier_activation)
    else:
        x = common.pool_features(x, pooling, fmt)
    model = common.finish_model(inputs, x, name, weights)
    if preset is not None:
        _load_preset(model, preset, preset_path, include_top, data_format)
    return model


def _saved_looped(path: str) -> bool:
    """Whether a Keras weights file was saved from a looped LruNet.

    `.weights.h5` files name their layers' groups by class (`lru_stage`,
    `lru_stage_1`, ...); any other file is taken as unrolled.
    """
    if not path.endswith(".weights.h5"):
        return False
    # Lazy: only to check a weights file.
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return any(key.startswith("lru_stage") for key in f.get("layers", {}))
    except OSError:  # not an HDF5 file: Keras's load reports it
        return False


def _preset_classes(preset: lrunet_presets.LruNetPreset, num_classes: Any, include_top: Any) -> int:
    """The classifier size with published weights: the checkpoint's."""
    if num_classes is None or not include_top:
        return preset.num_classes if num_classes is None else num_classes
    if num_classes != preset.num_classes:
        raise ValueError(
            f"weights={preset.dataset!r} has a {preset.num_classes}-class classifier "
            f"(preset {preset.name!r}); with include_top=True num_classes must be "
            f"{preset.num_classes} (or use include_top=False and a head of your own). "
            f"Received: num_classes={num_classes!r}"
        )
    return num_classes


def _load_preset(
    model: keras.Model,
    preset: lrunet_presets.LruNetPreset,
    path: str,
    include_top: bool,
    data_format: str,
) -> None:
    """Loads a verified preset file into `model` (whole, or its backbone).

    The published files hold weights of either data format (Keras's kernels
    do not depend on it), so `model` may be channels first.
    """
    published_shape = common.image_shape(preset.input_shape, data_format)
    if include_top and tuple(model.input_shape[1:]) == published_shape:
        model.load_weights(path)
        return
    # Another input size or no classifier: load the published network, then
    # copy every layer `model` has (names are positions, so they match).
    reference = LruNet(
        num_classes=preset.num_classes,
        layer_reuse=preset.layer_reuse,
        width_multiplier=preset.width_multiplier,
        input_shape=published_shape,
        classifier_activation=None,
        data_format=data_format,
        reuse_loop=False,  # the published files' layout
    )
    reference.load_weights(path)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(reference.get_layer(layer.name).get_weights())


for _preset in lrunet_presets.PRESETS.values():
    register_preset(
        _preset.name,
        "lrunet",
        weights=_preset.dataset,
        layer_reuse=_preset.layer_reuse,
        width_multiplier=_preset.width_multiplier,
    )

"""TFLite (LiteRT) export that keeps shared weights stored once, verified with LiteRT.

Owns `to_tflite`: the inference graph handed to the TFLite converter, the
conversion (float32, float16, dynamic-range and full-integer quantization
with 8- or 16-bit activations),
the check of the written file with the LiteRT interpreter against Keras,
and the atomic write.

Why the graph is rewritten first. The converter folds a BatchNormalization
into the convolution in front of it (its `FuseMulOrDivWithConv2d...` and
`FuseBinaryOpWithConv...` patterns turn `conv -> mul(const) -> add(const)`
into one conv with a scaled kernel). When that convolution is called several
times, each call followed by its own BatchNorm (LruNet's layer reuse), every
fold scales the shared kernel differently and the file stores one kernel per
call, several times the weights' size. The default
export therefore replaces each BatchNorm that follows a shared layer by the
same per-channel affine map written as a 1x1 depthwise convolution. The
converter has patterns that fuse a `mul`/`add` with a constant into a
convolution but none that fuses a convolution into another, so the shared
kernel stays a single constant that every call reads. Where such an affine
feeds a 1x1 convolution followed by another one, its offset is moved past
the convolution, which saves a vector per call.
`fold_batchnorm=True` keeps the BatchNorms and lets the converter fold them:
a few percent faster at batch 1, several times bigger.

In an int8 file each of those affines carries a float32 scale and an int64
zero point per channel for its weights and again for its bias, and each
call of a shared kernel a zero bias with the same vectors: most of the
file. `int8_layout="compact"` rewrites the converted file without them,
and without the intermediate tensors' names (`keras_reuse.export.rewrite`).

`quantizer="ai_edge_quantizer"` quantizes the same float32 file with Google's
AI Edge Quantizer instead of the converter (`keras_reuse.export.edge_quantizer`),
`int16_layers` gives the layers it names 16-bit activations and
`float_layers` leaves those it names in float32. What "int8" does when
these are left at "auto" is `keras_reuse.export.options.resolve_recipe`'s
choice: the AI Edge Quantizer, an LruNet's first stage in float32 and the
compact layout.

`GroupedPointwiseConv` needs nothing: at inference it is one grouped
`tf.nn.conv2d`, which becomes one grouped `CONV_2D` reading the shared kernel.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np

from keras_reuse.applications.lrunet.model import unroll_reuse_loops
from keras_reuse.export import edge_quantizer, options
from keras_reuse.export import rewrite as litert_rewrite
from keras_reuse.export.options import check_combinations
from keras_reuse.layers import DepthwiseConv2D, GroupedPointwiseConv
from keras_reuse.reuse.graph import graph_nodes
from keras_reuse.utils import atomic
from keras_reuse.utils.backends import require_installed, require_tensorflow
from keras_reuse.utils.checks import check_bool

try:
    import tensorflow as tf
except ImportError:  # Optional: TensorFlow, for the converter; say so clearly
    require_installed("TFLite export (keras_reuse.export.to_tflite)")
    raise

_RANDOM_SAMPLES = 32
_VERIFY_BATCH = 64


class VerificationError(RuntimeError):
    """The exported file does not reproduce the Keras model within tolerance."""


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What `to_tflite` wrote and how well it matches Keras.

    Attributes:
        path: The written `.tflite` file.
        size_bytes: Its size in bytes.
        quantization: None (float32), "float16", "dynamic", "int8" or "int16x8".
        fold_batchnorm: Whether BatchNorms were folded into (shared) kernels.
        int8_layout: "converter", or "compact" when the int8 file was
            rewritten by `keras_reuse.export.rewrite.compact_int8`.
        quantizer: "converter" (the TFLite converter) or "ai_edge_quantizer".
        int16_layers: The regex of layers given 16-bit activations, or None.
        float_layers: The regex of layers left in float32, or None.
        verified: Whether the file was run with LiteRT and compared with Keras.
        num_samples: Inputs the comparison used (0 when not verified).
        samples: Where they came from: "verification_data", "held-out
            representative_data" (the images that did not calibrate),
            "random" or "" (not verified).
        max_abs_error: Largest |LiteRT - Keras| over all outputs.
        output_scale: Largest |Keras output|, the scale `max_abs_error` is
            relative to.
        top1_agreement: Share of samples on which LiteRT and Keras pick the
            same class (argmax of the last axis).
        criterion: The check that was applied, e.g. "relative error <= 1e-05".
        keras_accuracy: Top-1 accuracy of Keras on the samples, when the
            verification dataset yields `(images, labels)`; else NaN.
        tflite_accuracy: The same for the LiteRT run of the file.
    """

    path: str
    size_bytes: int
    quantization: str | None
    fold_batchnorm: bool
    verified: bool
    int8_layout: str = "converter"
    quantizer: str = "converter"
    int16_layers: str | None = None
    float_layers: str | None = None
    num_samples: int = 0
    samples: str = ""
    max_abs_error: float = math.nan
    output_scale: float = math.nan
    top1_agreement: float = math.nan
    criterion: str = ""
    keras_accuracy: float = math.nan
    tflite_accuracy: float = math.nan

    @property
    def relative_error(self) -> float:
        """`max_abs_error / output_scale`."""
        return self.max_abs_error / self.output_scale if self.output_scale else math.nan

    def __str__(self) -> str:
        mode = self.quantization or "float32"
        fold = ", BatchNorm folded" if self.fold_batchnorm else ""
        if self.int8_layout != "converter":
            fold += f", {self.int8_layout} layout"
        if self.quantizer != "converter":
            fold += f", {self.quantizer}"
        if self.int16_layers is not None:
            fold += f", int16 activations in layers matching {self.int16_layers!r}"
        if self.float_layers is not None:
            fold += f", float32 in layers matching {self.float_layers!r}"
        head = f"{self.path}: {self.size_bytes:,} bytes ({mode}{fold})"
        if not self.verified:
            return f"{head}; not verified"
        accuracy = ""
        if not math.isnan(self.tflite_accuracy):
            accuracy = f", accuracy {self.tflite_accuracy:.2%} (Keras {self.keras_accuracy:.2%})"
        return (
            f"{head}; LiteRT vs Keras on {self.num_samples} {self.samples} samples: "
            f"top-1 agreement {self.top1_agreement:.2%}, max |error| "
            f"{self.max_abs_error:.3g} ({self.relative_error:.3g} of output scale "
            f"{self.output_scale:.3g}){accuracy}; passed {self.criterion}"
        )


class _ChannelAffine(keras.layers.Layer):
    """`x * scale (+ offset)` per channel, as a 1x1 depthwise convolution.

    Export-only stand-in for an inference BatchNorm after a shared layer: the
    TFLite converter fuses constant `mul`/`add` ops into the convolution
    before them, but not a convolution, so the shared kernel stays shared.
    """

    def __init__(self, channels: int, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.use_bias = use_bias

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(1, 1, self.channels, 1))
        self.bias = self.add_weight(name="bias", shape=(self.channels,)) if self.use_bias else None

    def call(self, inputs, training=None, mask=None):
        # The BatchNorm node being replaced passes training/mask; both are moot here.
        y = tf.nn.depthwise_conv2d(inputs, self.kernel, (1, 1, 1, 1), "VALID")
        return y if self.bias is None else y + self.bias


def _numpy(variable: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float64)


def _scale_offset(bn: keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """The inference BatchNorm as `x * scale + offset`, in float64."""
    mean, var = _numpy(bn.moving_mean), _numpy(bn.moving_variance)
    gamma = _numpy(bn.gamma) if bn.scale else np.ones_like(mean)
    beta = _numpy(bn.beta) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale, beta - mean * scale


def _is_pointwise_linear(layer: Any) -> bool:
    """Whether `layer` maps each pixel's channels linearly, alone (a 1x1 conv)."""
    if isinstance(layer, GroupedPointwiseConv):
        # `_linear_part` probes channels-last pixels.
        return layer.data_format == "channels_last"
    return (
        type(layer) is keras.layers.Conv2D
        and layer.data_format == "channels_last"
        and tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.strides) == (1, 1)
        and layer.activation is keras.activations.linear
    )


def _linear_part(layer: keras.layers.Layer, vector: np.ndarray) -> np.ndarray:
    """`layer(vector) - layer(0)`: the kernel applied to a per-channel vector."""
    probe = np.stack([vector, np.zeros_like(vector)]).reshape(2, 1, 1, -1)
    out = _numpy(layer(probe.astype(np.float32)))
    return (out[0] - out[1]).reshape(-1)


def _only_child(children: dict[int, list], node: Any) -> Any:
    found = children.get(id(node), [])
    return found[0] if len(found) == 1 else None


def _export_graph(model: keras.Model, fold_batchnorm: bool) -> keras.Model:
    """The inference graph to convert: `model` with export-only stand-in layers.

    Without `fold_batchnorm`, every BatchNorm whose input comes from a layer
    the model calls more than once becomes a `_ChannelAffine`; where such a
    BatchNorm feeds a 1x1 convolution whose output goes to another of them
    (LruNet's dw -> bn -> pw -> bn), its offset moves past the convolution
    into the next one (`W(s*x + t) = W(s*x) + W t`): the same function with
    one vector fewer to store per call. `keras_reuse.layers.DepthwiseConv2D`
    becomes Keras's. Returns `model` itself when it has no graph or nothing
    to replace.
    """
    nodes = graph_nodes(model)
    if nodes is None:
        return model
    calls: dict[int, int] = {}
    children: dict[int, list] = {}
    for node in nodes:
        calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
        for parent in node.parent_nodes:
            children.setdefault(id(parent), []).append(node)

    affine: dict[int, list] = {}  # id(BatchNorm node) -> [scale, offset or None]
    if not fold_batchnorm:
        for node in nodes:
            layer = node.operation
            if (
                isinstance(layer, keras.layers.BatchNormalization)
                and calls[id(layer)] == 1
                and len(node.outputs[0].shape) == 4
                and layer.axis in (-1, 3)
                and len(node.parent_nodes) == 1
                and calls[id(node.parent_nodes[0].operation)] > 1
            ):
                affine[id(node)] = list(_scale_offset(layer))

    # Topological order, so an offset pushed into a BatchNorm moves on with it.
    for node in nodes:
        if id(node) not in affine:
            continue
        conv = _only_child(children, node)
        if conv is None or not _is_pointwise_linear(conv.operation):
            continue
        after = _only_child(children, conv)
        if after is None or id(after) not in affine:
            continue
        offset = affine[id(node)][1]
        next_scale, next_offset = affine[id(after)]
        affine[id(after)][1] = next_offset + next_scale * _linear_part(conv.operation, offset)
        affine[id(node)][1] = None

    stand_ins: dict[str, tuple[keras.layers.Layer, list[np.ndarray]]] = {}
    for node in nodes:
        if id(node) in affine:
            layer = node.operation
            scale, offset = affine[id(node)]
            stand_in = _ChannelAffine(
                len(scale), offset is not None, name=layer.name, dtype=layer.dtype_policy
            )
            values = [scale.reshape(1, 1, -1, 1)] + ([] if offset is None else [offset])
            stand_ins[layer.name] = (stand_in, [v.astype(np.float32) for v in values])
    # Our oneDNN-friendly depthwise subclass traces a channel repeat and a
    # multiplier-1 convolution; the file gets Keras's op (one TFLite
    # depthwise convolution with the multiplier), the same function.
    stock = any(type(layer) is DepthwiseConv2D for layer in model.layers)
    if not stand_ins and not stock:
        return model

    def clone(layer):
        if layer.name in stand_ins:
            return stand_ins[layer.name][0]
        if type(layer) is DepthwiseConv2D:
            return keras.layers.DepthwiseConv2D.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    graph = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if not layer.weights:
            continue
        values = stand_ins[layer.name][1] if layer.name in stand_ins else layer.get_weights()
        graph.get_layer(layer.name).set_weights(values)
    return graph


def _layer_pattern(argument: str, value: Any, model: Any) -> re.Pattern:
    """`int16_layers` or `float_layers` compiled and matched; raises ValueError naming it."""
    try:
        pattern = re.compile(value)
    except (re.error, TypeError) as error:
        raise ValueError(
            f"`{argument}` must be a regular expression over layer names. "
            f"Received: {argument}={value!r} ({error})"
        ) from error
    if not any(pattern.search(layer.name) for layer in model.layers):
        raise ValueError(
            f"`{argument}` matches no layer name of the model (e.g. "
            f"{[layer.name for layer in model.layers[1:4]]}). Received: {argument}={value!r}"
        )
    return pattern


def _input_shape(model: Any) -> tuple[int, ...]:
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model={model!r}")
    inputs = getattr(model, "inputs", None)
    outputs = getattr(model, "outputs", None)
    if not inputs or len(inputs) != 1 or not outputs or len(outputs) != 1:
        raise ValueError(
            "`model` must be a built model with one input and one output. "
            f"Received: model={model.name!r} with inputs={inputs!r}, outputs={outputs!r}"
        )
    shape = tuple(inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(
            "`model` must have a fixed input shape apart from the batch size. "
            f"Received: model={model.name!r} with input shape {tuple(inputs[0].shape)}"
        )
    return shape


def _check_path(path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"`path` must be a file path. Received: path={path!r}")
    path = os.path.abspath(os.fspath(path))
    if not path.endswith(".tflite"):
        raise ValueError(f"`path` must end with '.tflite'. Received: path={path!r}")
    if os.path.isdir(path):
        raise ValueError(f"`path` is a directory. Received: path={path!r}")
    if not os.path.isdir(os.path.dirname(path)):
        raise ValueError(
            f"The directory of `path` does not exist: {os.path.dirname(path)!r}. "
            f"Received: path={path!r}"
        )
    return path


def _check_images(name: str, data: Any, input_shape: tuple[int, ...]) -> None:
    """Checks type and shape of image data without reading a dataset."""
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if isinstance(spec, tuple) and spec:
            spec = spec[0]
        elif isinstance(spec, dict):
            spec = None
        if not isinstance(spec, tf.TensorSpec):
            raise ValueError(
                f"`{name}` must yield images or (images, labels) tuples. "
                f"Received: {name} with element_spec={data.element_spec}"
            )
        if data.cardinality() == tf.data.INFINITE_CARDINALITY:
            raise ValueError(f"`{name}` must be a finite dataset. Received: an infinite one")
        shape = None if spec.shape.rank is None else tuple(spec.shape.as_list())
        # Decoded JPEGs may leave height and width unknown (None) until read.
        if (
            shape is None
            or len(shape) not in (len(input_shape), len(input_shape) + 1)
            or any(
                d is not None and d != e
                for d, e in zip(shape[-len(input_shape) :], input_shape, strict=True)
            )
        ):
            raise ValueError(
                f"`{name}` must yield images of shape {input_shape} (optionally batched). "
                f"Received: {name} with element shape {shape}"
            )
        return
    if isinstance(data, (str, bytes, dict)) or not hasattr(data, "__len__"):
        raise ValueError(
            f"`{name}` must be an array of images or a tf.data.Dataset. "
            f"Received: {name}={data!r:.200}"
        )
    array = np.asarray(data)
    if array.ndim != len(input_shape) + 1 or array.shape[1:] != input_shape or not len(array):
        raise ValueError(
            f"`{name}` must be a non-empty array of shape (N, {', '.join(map(str, input_shape))}). "
            f"Received: {name} with shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"`{name}` must hold numbers. Received: {name} with dtype {array.dtype}")


def _images(
    name: str, data: Any, input_shape: tuple[int, ...], limit: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The first `limit` images of an array or dataset, and labels if it has them."""
    if not isinstance(data, tf.data.Dataset):
        return np.asarray(data, dtype=np.float32)[:limit], None
    images, labels, count = [], [], 0
    # Read to the end even past `limit`: an iterator left half-way through a
    # `cache()` can leave the cache truncated for every later pass.
    for element in data.as_numpy_iterator():
        if limit is not None and count >= limit:
            continue
        batch = np.asarray(element[0] if isinstance(element, tuple) else element, np.float32)
        if batch.shape[-len(input_shape) :] != input_shape:
            raise ValueError(
                f"`{name}` must yield images of shape {input_shape}. "
                f"Received: {name} yielding a batch of shape {batch.shape}"
            )
        batch = batch.reshape((-1, *input_shape))
        images.append(batch)
        if isinstance(element, tuple) and len(element) > 1:
            labels.append(np.asarray(element[1]).reshape(len(batch), -1)[:, 0])
        count += len(batch)
    if not images:
        raise ValueError(f"`{name}` yielded no images. Received: an empty dataset")
    all_labels = np.concatenate(labels)[:limit] if len(labels) == len(images) else None
    return np.concatenate(images)[:limit], all_labels


def _converter(
    graph: keras.Model,
    input_shape: tuple[int, ...],
    quantization: str | None,
    calibration: np.ndarray | None,
) -> tf.lite.TFLiteConverter:
    @tf.function(input_signature=[tf.TensorSpec((None, *input_shape), tf.float32)])
    def serve(images):
        return graph(images, training=False)

    function = serve.get_concrete_function()
    # The concrete function as its own trackable object selects the
    # converter's freezing path: variables become constants (which is where
    # identical constants are deduplicated and BatchNorms folded). Handing it
    # the Keras model instead goes through a SavedModel, three times slower.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], function)
    if quantization is None:
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization in options.CALIBRATED:

        def representative_dataset() -> Iterable[list[np.ndarray]]:
            for image in calibration:
                yield [image[None]]

        converter.representative_dataset = representative_dataset
        # Every op integer (or the conversion fails); float32 input and output
        # keep the file a drop-in for the float one.
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            if quantization == "int8"
            else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    return converter


def _run_litert(path: str, images: np.ndarray) -> np.ndarray:
    # Lazy: the LiteRT interpreter loads only to verify a file.
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=os.cpu_count() or 1)
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    outputs, batch = [], None
    for start in range(0, len(images), _VERIFY_BATCH):
        chunk = images[start : start + _VERIFY_BATCH]
        if len(chunk) != batch:
            batch = len(chunk)
            interpreter.resize_tensor_input(inp["index"], (batch, *images.shape[1:]))
            interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], chunk)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"]).copy())
    return np.concatenate(outputs)


def _verify(
    file: str,
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray | None,
    quantization: str | None,
    minimum: float | None,
    path: str,
) -> dict[str, Any]:
    """Compares the LiteRT run of `file` with Keras; raises past tolerance."""
    # One trace for all batches; model.predict would build a heavier function.
    keras_fn = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None, *images.shape[1:]), tf.float32)],
    )
    expected = np.concatenate(
        [
            np.asarray(keras_fn(images[i : i + _VERIFY_BATCH]))
            for i in range(0, len(images), _VERIFY_BATCH)
        ]
    )
    actual = _run_litert(file, images).reshape(expected.shape)
    max_abs_error = float(np.max(np.abs(actual - expected)))
    output_scale = float(np.max(np.abs(expected)))
    keras_top1, litert_top1 = np.argmax(expected, -1), np.argmax(actual, -1)
    agreement = float(np.mean(keras_top1 == litert_top1))
    figures = {
        "num_samples": len(images),
        "max_abs_error": max_abs_error,
        "output_scale": output_scale,
        "top1_agreement": agreement,
    }
    if labels is not None and keras_top1.shape == labels.shape:
        figures["keras_accuracy"] = float(np.mean(keras_top1 == labels))
        figures["tflite_accuracy"] = float(np.mean(litert_top1 == labels))
    if quantization is None:
        figures["criterion"] = f"relative error <= {options.FLOAT32_RTOL:g}"
        if not max_abs_error <= options.FLOAT32_RTOL * output_scale:
            raise VerificationError(
                f"The float32 TFLite model differs from Keras by up to {max_abs_error:.3g} "
                f"on {len(images)} samples, more than {options.FLOAT32_RTOL:g} x the output scale "
                f"{output_scale:.3g}; nothing was written to {path!r}."
            )
    else:
        minimum = options.MIN_TOP1_AGREEMENT[quantization] if minimum is None else minimum
        figures["criterion"] = f"top-1 agreement >= {minimum:.1%}"
        if not agreement >= minimum:
            raise VerificationError(
                f"The {quantization} TFLite model agrees with Keras on the top-1 class for "
                f"{agreement:.2%} of {len(images)} samples, below {minimum:.1%}; nothing "
                f"was written to {path!r}. Pass a lower `min_top1_agreement` to accept "
                "this file, or quantize less (int16x8 keeps activations in 16 bits)."
            )
    return figures


def _check_values(
    quantization: Any,
    fold_batchnorm: Any,
    int8_layout: Any,
    quantizer: Any,
    verify: Any,
    max_verification_samples: Any,
    min_top1_agreement: Any,
) -> None:
    """Each option's value on its own (`options.check_combinations` checks them together)."""
    if quantization not in options.QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {options.QUANTIZATIONS}. "
            f"Received: quantization={quantization!r}"
        )
    check_bool("fold_batchnorm", fold_batchnorm)
    if int8_layout not in (options.AUTO, *options.INT8_LAYOUTS):
        raise ValueError(
            f"`int8_layout` must be one of {(options.AUTO, *options.INT8_LAYOUTS)}. "
            f"Received: int8_layout={int8_layout!r}"
        )
    if quantizer not in (options.AUTO, *options.QUANTIZERS):
        raise ValueError(
            f"`quantizer` must be one of {(options.AUTO, *options.QUANTIZERS)}. "
            f"Received: quantizer={quantizer!r}"
        )
    check_bool("verify", verify)
    if max_verification_samples is not None and (
        isinstance(max_verification_samples, bool)
        or not isinstance(max_verification_samples, int)
        or max_verification_samples < 1
    ):
        raise ValueError(
            "`max_verification_samples` must be None or an integer >= 1. "
            f"Received: max_verification_samples={max_verification_samples!r}"
        )
    if min_top1_agreement is not None and (
        isinstance(min_top1_agreement, bool)
        or not isinstance(min_top1_agreement, (int, float))
        or not 0.0 < min_top1_agreement <= 1.0
    ):
        raise ValueError(
            "`min_top1_agreement` must be None or a number in (0, 1]. "
            f"Received: min_top1_agreement={min_top1_agreement!r}"
        )


def _calibration_and_verification(
    quantization: str | None,
    representative_data: Any,
    verify: bool,
    verification_data: Any,
    input_shape: tuple[int, ...],
    max_samples: int | None,
) -> tuple[np.ndarray | None, str, np.ndarray | None, np.ndarray | None]:
    """The calibration images and the images a file is verified on.

    Returns:
        `(calibration or None, source, images or None, labels or None)`:
        without `verification_data`, the representative images split
        (`options.hold_out`) into calibration and held-out verification.

    Raises:
        ValueError: for fewer than 2 representative images to split.
    """
    limit = options.MAX_CALIBRATION_SAMPLES
    calibration = held_out = None
    if quantization in options.CALIBRATED:
        if verify and verification_data is None:
            everything, labels = _images(
                "representative_data", representative_data, input_shape, None
            )
            if len(everything) < 2:
                raise ValueError(
                    "`representative_data` is also what the file is verified on when no "
                    "`verification_data` is given, and its images are then split: the first "
                    "half calibrates, the rest is held out to verify. That needs at least 2 "
                    "images; pass more, or `verification_data`. Received: representative_data "
                    f"with {len(everything)} image"
                )
            split = options.hold_out(len(everything))
            calibration = everything[:split][:limit]
            held_out = (
                everything[split:][:max_samples],
                None if labels is None else labels[split:][:max_samples],
            )
        else:
            calibration, _ = _images("representative_data", representative_data, input_shape, limit)
    if not verify:
        return calibration, "", None, None
    if verification_data is not None:
        images, labels = _images("verification_data", verification_data, input_shape, max_samples)
        return calibration, "verification_data", images, labels
    if held_out is not None:
        return calibration, "held-out representative_data", *held_out
    images = np.random.default_rng(0).uniform(0.0, 1.0, (_RANDOM_SAMPLES, *input_shape))
    return calibration, "random", images[:max_samples].astype(np.float32), None


def _edge_quantize(
    graph: keras.Model,
    input_shape: tuple[int, ...],
    quantization: str,
    calibration: np.ndarray,
    patterns: dict[str, re.Pattern],
) -> bytes:
    """The float32 conversion of `graph`, quantized by the AI Edge Quantizer."""
    scopes = {}
    for argument, pattern in patterns.items():
        names = [layer.name for layer in graph.layers if pattern.search(layer.name)]
        if not names:
            # A looped LruNet is unrolled for export under other layer
            # names; an empty scope would match every op.
            raise ValueError(
                f"`{argument}` matches no layer of the exported graph (the model as "
                f"converted, e.g. {[layer.name for layer in graph.layers[1:4]]}). "
                f"Received: {argument}={pattern.pattern!r}"
            )
        scopes[argument] = edge_quantizer.layer_scope(names)
    float32 = _converter(graph, input_shape, None, None).convert()
    bits = 8 if quantization == "int8" else 16
    flatbuffer = edge_quantizer.quantize(
        float32, calibration, bits, scopes.get("int16_layers"), scopes.get("float_layers")
    )
    for argument, type_name in (("int16_layers", "INT16"), ("float_layers", "FLOAT32")):
        if argument in scopes and not edge_quantizer.outputs_of_type(
            flatbuffer, scopes[argument], type_name
        ):
            raise ValueError(
                f"`{argument}` matches layers of the model, but none of their ops has a "
                f"{type_name.lower()} output in the file. Received: "
                f"{argument}={patterns[argument].pattern!r}"
            )
    return flatbuffer


def to_tflite(
    model: keras.Model,
    path: str | os.PathLike,
    quantization: str | None = None,
    representative_data: Any = None,
    fold_batchnorm: bool = False,
    int8_layout: str = "auto",
    quantizer: str = "auto",
    int16_layers: str | None = None,
    float_layers: str | None = "auto",
    verify: bool = True,
    verification_data: Any = None,
    max_verification_samples: int | None = None,
    min_top1_agreement: float | None = None,
) -> ExportReport:
    """Exports a Keras model to a `.tflite` file that stores each shared kernel once.

    The file takes float32 images and returns the model's float32 outputs in
    every quantization mode (int8 and int16x8 quantize and dequantize inside), with a
    dynamic batch size: resize its input with
    `interpreter.resize_tensor_input` before `allocate_tensors`.

    Before the file appears at `path` it is run with the LiteRT interpreter
    (`ai_edge_litert`) and compared with `model`: float32 must match within
    `FLOAT32_RTOL` of the largest |output|, quantized files must agree on
    the top-1 class for `MIN_TOP1_AGREEMENT[quantization]` of the samples.
    The file is written next to `path` under a temporary name and renamed
    into place only when it passed, so a failed export leaves no file behind
    (and an existing file at `path` untouched).

    Args:
        model: A Keras model with one input of fixed shape (apart from the
            batch) and one output. Functional models, like all
            `keras_reuse.applications`, are rewritten so that shared kernels
            stay single (a looped LruNet, `reuse_loop=True`, is unrolled
            first); other models are converted as they are.
        path: Destination, ending in `.tflite`, in an existing directory.
        quantization: None (float32), "float16" (float16 weights),
            "dynamic" (int8 weights, float activations), "int8" (full
            integer, calibrated on `representative_data`) or "int16x8"
            (full integer with int16 activations and int8 weights, calibrated
            the same way: about as small as "int8" and far closer to float,
            but CPUs run it with slower reference kernels).
        representative_data: Calibration images for "int8" and "int16x8"
            (and only for them): an array `(N, *input_shape)` or a `tf.data.Dataset` of
            images or `(images, labels)`, batched or not; a few hundred
            training images, preprocessed as the model expects. At most
            `MAX_CALIBRATION_SAMPLES` of them are used; without
            `verification_data`, half of them are held out to verify.
        fold_batchnorm: Let the converter fold every BatchNorm into the
            kernel before it, as it does by default. Shared kernels are then
            stored once per call (bigger file); docs/reports/int8-bytes.md has the latency.
        int8_layout: "auto" (the default: "compact" for "int8" without
            `fold_batchnorm`, else "converter"), "converter" (the file as the
            quantizer writes it) or "compact" ("int8" only): each BatchNorm
            affine after a shared layer requantized with one scale per
            tensor, the calls of a shared kernel reading one zero bias, and
            no names on the intermediate tensors (the input, the output and
            the signature keep theirs); for the published LruNet-10 under
            a third of the size
            (docs/guides/export.md). LiteRT's CPU kernels and XNNPACK run it;
            delegates that check each bias's scale against its input's
            (NNAPI) may decline the shared biases.
        quantizer: Who quantizes "int8" and "int16x8": "auto" (the default:
            "ai_edge_quantizer" for "int8" without `fold_batchnorm`, else
            "converter"), "converter" (the TFLite converter) or
            "ai_edge_quantizer" (Google's AI Edge Quantizer,
            `pip install "keras-reuse[quantizer]"`; without it the default
            "int8" export raises an ImportError that says so), which
            quantizes the same float32 graph (docs/guides/export.md
            compares the two).
        int16_layers: With quantizer="ai_edge_quantizer" and
            quantization="int8": a regular expression; the ops of every
            layer whose name it matches (`re.search`) get 16-bit
            activations, the rest 8-bit. More agreement for some speed:
            LiteRT runs 16-bit ops with reference kernels. For the
            published LruNet-10, `"stage1_"` (the reuses on the largest
            feature maps) agrees on over 98%. A shared layer's ops are
            matched in every call.
        float_layers: Like `int16_layers`, for layers left in float32
            (QUANTIZE and DEQUANTIZE ops around them): as close as int16
            and run by XNNPACK's float kernels. Over `int16_layers` where
            both match. "auto" (the default): for "int8" with the AI Edge
            Quantizer and no `int16_layers`, `FIRST_STAGE` ("stage1_", an
            LruNet's first stage) where the exported graph has such layers,
            else none; None: every layer int8.
        verify: Run the file with LiteRT and compare it with Keras.
        verification_data: Images to compare on, in the same forms as
            `representative_data`. Without it, quantized exports are
            verified on held-out representative images: the first half of
            `representative_data` (rounded up, at most
            `MAX_CALIBRATION_SAMPLES`) calibrates and the rest verifies, so
            at least 2 images are needed; float32 exports use 32 uniform
            random images in [0, 1]; other quantized exports require it
            (top-1 agreement on noise proves nothing).
        max_verification_samples: Use at most this many verification
            images (None: all).
        min_top1_agreement: Required top-1 agreement of a quantized export;
            None uses `MIN_TOP1_AGREEMENT[quantization]` (99%; int8 98%).

    Returns:
        An `ExportReport` with the path, the size and the verification figures.

    Raises:
        ValueError: for an invalid argument or combination of arguments,
            before anything is converted or written.
        VerificationError: if the file does not reproduce the model within
            tolerance; nothing is written.
        keras_reuse.utils.atomic.AtomicWriteError: (an OSError) naming `path` if
            the OS refuses the write (full disk, read-only directory); a
            previous file at `path` is left as it was.
    """
    require_tensorflow("TFLite export (to_tflite)", options.TFLITE_INSTEAD)
    input_shape = _input_shape(model)
    path = _check_path(path)
    _check_values(
        quantization,
        fold_batchnorm,
        int8_layout,
        quantizer,
        verify,
        max_verification_samples,
        min_top1_agreement,
    )
    if int16_layers == options.AUTO:
        raise ValueError(
            "`int16_layers` has no 'auto': None or a regular expression of layer names. "
            f"Received: int16_layers={int16_layers!r}"
        )
    patterns = {
        argument: _layer_pattern(argument, value, model)
        for argument, value in (("int16_layers", int16_layers), ("float_layers", float_layers))
        if value is not None and not (argument == "float_layers" and value == options.AUTO)
    }
    check_combinations(
        quantization=quantization,
        fold_batchnorm=fold_batchnorm,
        int8_layout=int8_layout,
        quantizer=quantizer,
        int16_layers=int16_layers,
        float_layers=float_layers,
        verify=verify,
        min_top1_agreement=min_top1_agreement,
        representative_data=representative_data is not None,
        verification_data=verification_data is not None,
    )
    requested_quantizer = quantizer
    int8_layout, quantizer, float_layers = options.resolve_recipe(
        quantization, fold_batchnorm, int8_layout, quantizer, int16_layers, float_layers
    )
    if quantizer == "ai_edge_quantizer":
        try:
            edge_quantizer.require()
        except ImportError as error:
            if requested_quantizer != options.AUTO:
                raise
            raise ImportError(
                f"quantization={quantization!r} quantizes with the AI Edge Quantizer by "
                "default (stage 1 in float32, compact layout: the recipe whose files pass "
                f"the default verification), which is not installed: {edge_quantizer.INSTALL}. "
                "Or pass quantizer='converter' (--quantizer=converter) for the TFLite "
                "converter's int8 file, which agrees with Keras less often."
            ) from error
    for name, data in (
        ("representative_data", representative_data),
        ("verification_data", verification_data),
    ):
        if data is not None:
            _check_images(name, data, input_shape)
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "to_tflite converts with TensorFlow's TFLite converter and needs the TensorFlow "
            f"backend. Current backend: {keras.backend.backend()!r}"
        )

    # Read the images first: a dataset of the wrong shape fails before conversion.
    calibration, source, images, labels = _calibration_and_verification(
        quantization,
        representative_data,
        verify,
        verification_data,
        input_shape,
        max_verification_samples,
    )
    # A looped LruNet (`reuse_loop=True`) converts to a WHILE op that stores
    # every iteration's BatchNorm and runs slower; unrolled, its shared
    # kernels stay single as in the published layout. Verified against
    # `model` itself below.
    graph = _export_graph(unroll_reuse_loops(model), fold_batchnorm)
    if float_layers == options.FIRST_STAGE and "float_layers" not in patterns:
        # The default: an LruNet's first stage, where the graph has one.
        first_stage = re.compile(options.FIRST_STAGE)
        if any(first_stage.search(layer.name) for layer in graph.layers):
            patterns["float_layers"] = first_stage
        else:
            float_layers = None
    if quantizer == "converter":
        flatbuffer = _converter(graph, input_shape, quantization, calibration).convert()
    else:
        flatbuffer = _edge_quantize(graph, input_shape, quantization, calibration, patterns)
    if int8_layout == "compact":
        flatbuffer, _ = litert_rewrite.compact_int8(flatbuffer)

    figures: dict[str, Any] = {}

    def write_and_verify(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(flatbuffer)
        if verify:
            # The file itself is run: a file that fails is never put in place.
            figures.update(
                _verify(tmp, model, images, labels, quantization, min_top1_agreement, path)
            )
            figures["samples"] = source

    atomic.write_file(path, write_and_verify)
    return ExportReport(
        path=path,
        size_bytes=len(flatbuffer),
        quantization=quantization,
        fold_batchnorm=fold_batchnorm,
        verified=verify,
        int8_layout=int8_layout,
        quantizer=quantizer,
        int16_layers=int16_layers,
        float_layers=float_layers,
        **figures,
    )

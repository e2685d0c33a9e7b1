"""Fake-quantized activations during fine-tuning (QAT), then int8 export: does agreement reach 98%?

Importable without flags: `benchmarks.int8_qat` is the command. See
`fake_quant_graph` and `finetune_for_int8`.

Why activations only: int16x8 files (int8 weights, 16-bit activations)
agree with Keras on 99.6% of the Fashion-MNIST test images, int8 files on
97.3-97.5% (README export table), so it is the 8-bit activations that flip
decisions. The fine-tuning runs on the graph `to_tflite` converts (each
BatchNorm after a shared layer already the per-channel affine that becomes
its own op), with a fake quantizer after every op, as LiteRT quantizes every
op's output per tensor with its own range. BatchNorms stay frozen, so
fine-tuning changes only the convolution kernels (shared ones once).

With `weights=True` the kernels are fake-quantized too (`QuantizedKernel`):
each convolution runs with its kernel rounded per output channel to
symmetric int8, as LiteRT stores it, and the gradient passes straight through
to the float kernel, so fine-tuning sees the int8 file's weights as well as
its activations.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_reuse.layers import GroupedPointwiseConv, grouped_pointwise

# What fine-tuning trains: the convolutions' kernels. The export's BatchNorm
# stand-ins (`_ChannelAffine`) and the stem's BatchNorm stay as they are.
_KERNELS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, GroupedPointwiseConv)


class FakeQuant(keras.layers.Layer):
    """Per-tensor asymmetric 8-bit fake quantization with a moving min/max range.

    The range starts at `initial` (calibrated min/max) and follows each
    training batch's min/max with `momentum`, the way TensorFlow's QAT
    tracks activation ranges; the gradient passes straight through inside
    the range.
    """

    def __init__(self, initial: tuple[float, float], momentum: float = 0.99, **kwargs):
        super().__init__(**kwargs)
        self.initial, self.momentum = initial, momentum

    def build(self, input_shape):
        low, high = min(self.initial[0], 0.0), max(self.initial[1], 0.0)
        self.low = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(low), trainable=False, name="low"
        )
        self.high = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(high), trainable=False, name="high"
        )

    def call(self, x, training=None):
        if training:
            m = self.momentum
            # The range always holds 0, as LiteRT's zero point requires.
            self.low.assign(m * self.low + (1 - m) * keras.ops.minimum(keras.ops.min(x), 0.0))
            self.high.assign(m * self.high + (1 - m) * keras.ops.maximum(keras.ops.max(x), 0.0))
        return keras.quantizers.fake_quant_with_min_max_vars(x, self.low, self.high, num_bits=8)


def fake_quant_kernel(kernel: Any, axes: tuple[int, ...]) -> Any:
    """`kernel` rounded to symmetric int8 per output channel; straight-through gradient.

    Args:
        kernel: A kernel tensor.
        axes: The axes reduced for each channel's scale (all but the output
            channel's).

    Returns:
        The fake-quantized kernel: `round(kernel / s) * s` with
        `s = max|kernel| / 127` per channel, clipped to [-127, 127], as
        TFLite's int8 weights; its gradient is the identity.
    """
    ops = keras.ops
    scale = ops.max(ops.abs(kernel), axis=axes, keepdims=True) / 127.0
    scale = ops.where(scale > 0, scale, ops.ones_like(scale))  # all-zero channels stay 0
    quantized = ops.clip(ops.round(kernel / scale), -127.0, 127.0) * scale
    return kernel + ops.stop_gradient(quantized - kernel)


class QuantizedKernel(keras.layers.Layer):
    """Calls a convolution layer of the export graph with its kernel fake-quantized to int8.

    The wrapped layer keeps its (float) kernel, which training updates; the
    call computes the layer's op with `fake_quant_kernel` of it. Per output
    channel, as LiteRT quantizes them: `Conv2D` kernels `(kh, kw, cin, cout)`
    per `cout`, `DepthwiseConv2D` `(kh, kw, C, M)` per `(C, M)`,
    `GroupedPointwiseConv` `(groups, cin_g, cout_g)` per `(groups, cout_g)`.

    Args:
        layer: A `Conv2D` (ungrouped), `DepthwiseConv2D` or
            `GroupedPointwiseConv`.
        **kwargs: Base layer keyword arguments.
    """

    def __init__(self, layer: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        if isinstance(layer, keras.layers.Conv2D) and getattr(layer, "groups", 1) != 1:
            raise ValueError(f"Layer {layer.name!r}: groups={layer.groups} is not supported.")
        self.layer = layer

    def call(self, x):
        layer, ops = self.layer, keras.ops
        kernel = ops.convert_to_tensor(layer.kernel)
        if isinstance(layer, GroupedPointwiseConv):
            # training=True: a form with a gradient on every backend and CPU (the
            # per-group matmuls, or oneDNN's grouped convolution where it runs).
            y = grouped_pointwise(x, fake_quant_kernel(kernel, (1,)), training=True)
        else:
            conv = (
                ops.depthwise_conv if isinstance(layer, keras.layers.DepthwiseConv2D) else ops.conv
            )
            axes = (0, 1) if conv is ops.depthwise_conv else (0, 1, 2)
            y = conv(
                x,
                fake_quant_kernel(kernel, axes),
                strides=layer.strides,
                padding=layer.padding,
                dilation_rate=layer.dilation_rate,
            )
        if getattr(layer, "bias", None) is not None:
            y = y + layer.bias
        activation = getattr(layer, "activation", None)
        return activation(y) if activation is not None else y


def _graph_outputs(graph: keras.Model, images: np.ndarray) -> dict[int, tuple[float, float]]:
    """min/max of every node output over `images` (the converter's calibration)."""
    from keras_reuse._graph import graph_nodes

    nodes = [n for n in graph_nodes(graph) if not isinstance(n.operation, keras.layers.InputLayer)]
    probe = keras.Model(graph.inputs[0], [n.outputs[0] for n in nodes])
    ranges: dict[int, list[float]] = {}
    for start in range(0, len(images), 250):
        outputs = probe(images[start : start + 250], training=False)
        for node, out in zip(nodes, outputs, strict=True):
            out = keras.ops.convert_to_numpy(out)
            low, high = ranges.get(id(node), [np.inf, -np.inf])
            ranges[id(node)] = [min(low, float(out.min())), max(high, float(out.max()))]
    return {key: tuple(value) for key, value in ranges.items()}


def fake_quant_graph(
    model: keras.Model, calibration: np.ndarray, weights: bool = False
) -> tuple[keras.Model, keras.Model]:
    """`to_tflite`'s inference graph of `model`, and the same layers with a FakeQuant after each op.

    Args:
        model: A functional Keras model.
        calibration: Images whose min/max start each quantizer's range.
        weights: Also fake-quantize every convolution kernel to int8
            (`QuantizedKernel`).

    Returns:
        (graph, qat): the export graph, and a model over the same layer
        objects (so training `qat` trains `graph`) with every op's output
        fake-quantized, ranges calibrated on `calibration`.
    """
    from keras_reuse._graph import graph_nodes
    from keras_reuse.applications.lrunet import unroll_reuse_loops
    from keras_reuse.export import _export_graph

    graph = _export_graph(unroll_reuse_loops(model), fold_batchnorm=False)
    for layer in graph.layers:
        # Frozen: the affines are the per-reuse BatchNorms, and Keras runs a
        # non-trainable BatchNormalization (the stem's) in inference mode.
        if not isinstance(layer, _KERNELS):
            layer.trainable = False
    ranges = _graph_outputs(graph, calibration)
    inputs = keras.Input(graph.inputs[0].shape[1:])
    tensors = {id(graph.inputs[0]): inputs}
    wrappers: dict[int, QuantizedKernel] = {}  # one per layer: a shared kernel is one
    for number, node in enumerate(graph_nodes(graph)):
        if isinstance(node.operation, keras.layers.InputLayer):
            continue
        args, kwargs = node.arguments.fill_in(tensors)
        operation = node.operation
        if weights and isinstance(operation, _KERNELS):
            key = id(operation)
            if key not in wrappers:
                wrappers[key] = QuantizedKernel(operation, name=f"wq_{operation.name}")
            operation = wrappers[key]
        out = operation(*args, **kwargs)
        tensors[id(node.outputs[0])] = FakeQuant(
            ranges[id(node)], name=f"fq{number}_{node.operation.name}"
        )(out)
    return graph, keras.Model(inputs, tensors[id(graph.outputs[0])])


def copy_kernels(graph: keras.Model, model: keras.Model) -> None:
    """Writes the fine-tuned graph's trainable weights back into `model` (by layer name)."""
    for layer in graph.layers:
        if layer.trainable and layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())


def finetune_for_int8(
    model: keras.Model,
    train: Any,
    calibration: np.ndarray,
    epochs: int,
    learning_rate: float,
    steps: int | None = None,
    weights: bool = False,
) -> keras.Model:
    """A copy of `model` whose kernels were fine-tuned with fake-quantized activations.

    Args:
        model: A functional Keras model with logits out (`model` is not changed).
        train: Training data for `fit`, `(images, labels)` batches.
        calibration: Images whose min/max start each quantizer's range.
        epochs: Epochs of fine-tuning.
        learning_rate: SGD learning rate (momentum 0.9).
        steps: Steps per epoch; None for the whole of `train`.
        weights: Fake-quantize the kernels too (`QuantizedKernel`).

    Returns:
        The fine-tuned copy, ready for `to_tflite`.
    """
    tuned = keras.models.clone_model(model)
    tuned.set_weights(model.get_weights())
    graph, qat = fake_quant_graph(tuned, calibration, weights=weights)
    qat.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    qat.fit(train, epochs=epochs, steps_per_epoch=steps, verbose=2)
    copy_kernels(graph, tuned)
    return tuned

"""Reuse introspection: which layers a functional model calls more than once.

`reuse_summary(model)` walks the graph of any Keras functional model and
reports, per layer, how often it is called, its parameters and its
multiply-accumulates, plus what the same graph would cost if every call had
a fresh layer (`unrolled_params`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import keras

from keras_reuse.layers import GroupedPointwiseConv
from keras_reuse.reuse.graph import graph_nodes, layer_calls


@dataclasses.dataclass(frozen=True)
class LayerReuse:
    """One layer's row in a `ReuseSummary`.

    Attributes:
        name: Layer name.
        class_name: Layer class name.
        calls: How many times the model's graph calls the layer.
        params: Trainable parameters of the layer (counted once).
        macs: Multiply-accumulates per example, summed over all calls.
    """

    name: str
    class_name: str
    calls: int
    params: int
    macs: int


@dataclasses.dataclass(frozen=True)
class ReuseSummary:
    """What `reuse_summary` returns; `print()` it for a table.

    Attributes:
        model_name: The model's name.
        layers: One `LayerReuse` per layer with weights or MACs, graph order.
        unique_params: Trainable parameters as stored (shared ones once).
        unrolled_params: Trainable parameters if every call had its own layer.
        non_trainable_params: Non-trainable parameters (e.g. BN statistics).
        macs: Multiply-accumulates per example for one forward pass.
    """

    model_name: str
    layers: tuple[LayerReuse, ...]
    unique_params: int
    unrolled_params: int
    non_trainable_params: int
    macs: int

    @property
    def reused(self) -> tuple[LayerReuse, ...]:
        """The rows of layers called more than once."""
        return tuple(row for row in self.layers if row.calls > 1)

    @property
    def calls(self) -> dict[str, int]:
        """Layer name -> number of calls, for every layer listed."""
        return {row.name: row.calls for row in self.layers}

    def __str__(self) -> str:
        header = ("Layer (reused)", "Class", "Calls", "Params", "MACs/example")
        rows = [
            (r.name, r.class_name, str(r.calls), f"{r.params:,}", f"{r.macs:,}")
            for r in self.reused
        ]
        widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

        def line(cells):
            return "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        rule = "-" * len(line(header))
        reuse = self.unrolled_params / max(self.unique_params, 1)
        out = [f'Reuse summary: "{self.model_name}"', rule, line(header), rule]
        out += [line(r) for r in rows] or ["(no layer is called more than once)"]
        out += [
            rule,
            f"Trainable params (unique):   {self.unique_params:,}",
            f"Trainable params (unrolled): {self.unrolled_params:,} ({reuse:.2f}x)",
            f"Non-trainable params:        {self.non_trainable_params:,}",
            f"Multiply-accumulates/example: {self.macs:,}",
        ]
        return "\n".join(out)


def _count(weights) -> int:
    return sum(math.prod(w.shape) for w in weights)


def _node_macs(layer: keras.layers.Layer, node) -> int:
    """MACs per example of one call; 0 for layers without a matmul/conv."""
    out_shape = node.outputs[0].shape
    in_shape = node.arguments.keras_tensors[0].shape
    if any(d is None for d in out_shape[1:]) or not layer.weights:
        return 0
    if getattr(layer, "data_format", None) == "channels_first" and len(out_shape) > 2:
        # The same count as channels last: channels moved to the end.
        out_shape = (out_shape[0], *out_shape[2:], out_shape[1])
        in_shape = (in_shape[0], *in_shape[2:], in_shape[1])
    positions = math.prod(out_shape[1:-1])
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return positions * out_shape[-1] * kh * kw
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        return positions * out_shape[-1] * kh * kw * in_shape[-1] // layer.groups
    if isinstance(layer, GroupedPointwiseConv):
        return positions * out_shape[-1] * in_shape[-1] // layer.groups
    if isinstance(layer, keras.layers.Dense):
        return positions * out_shape[-1] * in_shape[-1]
    return 0


def _layer_rows(layer: keras.layers.Layer, calls: int, macs: int, out_shape) -> list[LayerReuse]:
    """A layer's rows: one, or those it reports itself for a loop inside it.

    A layer that calls its weights several times inside its own `call`
    (`keras_reuse.applications.lrunet.stage.LruStage`) defines `reuse_rows(output_shape)`,
    which lists its weights as the layers they would be in the unrolled
    graph, so that a looped and an unrolled network summarize alike.
    """
    if hasattr(layer, "reuse_rows"):
        return [
            dataclasses.replace(row, calls=row.calls * calls, macs=row.macs * calls)
            for row in layer.reuse_rows(out_shape)
        ]
    if not (layer.weights or macs):
        return []
    params = _count(layer.trainable_weights)
    return [LayerReuse(layer.name, type(layer).__name__, calls, params, macs)]


def reuse_summary(model: keras.Model) -> ReuseSummary:
    """Reports how a functional model reuses its layers.

    A layer called k times by the model's graph contributes its trainable
    parameters once to `unique_params` and k times to `unrolled_params`.
    MACs are counted for convolutions (including depthwise and grouped) and
    dense layers, per example, at the model's input size; they are 0 where
    the model's spatial size is not fixed.

    Args:
        model: A built Keras functional model (e.g. any
            `keras_reuse.applications` model). Nested models count as one
            layer each.

    Returns:
        A `ReuseSummary`; `print()` it for a table of the reused layers.

    Raises:
        ValueError: if `model` is not a functional model with a graph.
    """
    nodes = graph_nodes(model)
    if nodes is None:
        raise ValueError(
            "`reuse_summary` needs a Keras functional (or Sequential) model "
            f"with a graph. Received: model={model!r}"
        )
    calls = layer_calls(nodes)
    macs: Counter = Counter()
    out_shapes = {}
    for node in nodes:
        if node.operation in calls:
            macs[node.operation] += _node_macs(node.operation, node)
            out_shapes.setdefault(node.operation, node.outputs[0].shape)
    order = list(calls)  # Counter keeps first-call (graph) order.

    rows = tuple(
        row
        for layer in order
        for row in _layer_rows(layer, calls[layer], macs[layer], out_shapes.get(layer))
    )
    return ReuseSummary(
        model_name=model.name,
        layers=rows,
        unique_params=_count(model.trainable_weights),
        unrolled_params=sum(r.params * r.calls for r in rows),
        non_trainable_params=_count(model.non_trainable_weights),
        macs=sum(r.macs for r in rows),
    )

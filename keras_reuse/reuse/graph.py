"""Reading a functional model's graph: its call nodes and how often each layer is called.

Private helpers shared by `summary`, `sharing` and `export`, which all walk
the same graph.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import keras


def graph_nodes(model: Any) -> list | None:
    """The model's call nodes in input-to-output order; None without a graph.

    A built Sequential model keeps its graph in a private Functional, which
    is read instead.
    """
    graph = getattr(model, "_functional", None) or model
    by_depth = getattr(graph, "_nodes_by_depth", None)
    if not isinstance(model, keras.Model) or by_depth is None:
        return None
    # Deepest first is input-to-output order.
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def layer_calls(nodes: list) -> Counter:
    """Layer -> how many of `nodes` call it (input layers left out)."""
    return Counter(
        node.operation
        for node in nodes
        if node.operation is not None and not isinstance(node.operation, keras.layers.InputLayer)
    )

"""Weight sharing as a graph rewrite for any functional Keras model.

`share(model, groups)` rebuilds a model so that each group of layers becomes
one layer called at every place its members were (ShaResNet's idea, applied
to any network); `unshare(model)` gives every call of a reused layer its own
copy (the "unrolled" network that `reuse_summary` counts). Both return new
models through `keras.models.clone_model`: the input model is never changed
and the result shares no variable with it.

`resnet_stage_rule` picks Boulch's groups in ResNets named the
keras.applications way (`conv4_block3_2_conv`): `keras.applications.ResNet50`
and the like, and our own `ShaResNet*(share=False)`.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from keras_reuse.reuse.graph import graph_nodes, layer_calls

INITS = ("first", "mean", "random")

_Named = Sequence[Sequence[str]] | Mapping[str, Sequence[str]]
Groups = _Named | Callable[[keras.Model], _Named]


def _functional(model: Any, caller: str) -> keras.Model:
    """`model` as a functional model whose graph can be rebuilt, or ValueError."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"`{caller}` needs a Keras functional model. Received: model={model!r}")
    if graph_nodes(model) is None:
        raise ValueError(
            f"`{caller}` needs a functional (or built Sequential) Keras model, whose graph "
            f"it can rebuild; model {model.name!r} is a {type(model).__name__} without one "
            "(a subclassed model, or a Sequential model that is not built yet)."
        )
    nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    if nested:
        raise ValueError(
            f"`{caller}` rebuilds one flat graph, but model {model.name!r} contains nested "
            f"model(s) {nested}: apply `{caller}` to the inner model(s) first, or build the "
            "model flat."
        )
    if isinstance(model, keras.Sequential):
        # The same layers, seen as the functional graph clone_model rebuilds.
        (inputs,), (outputs,) = model.inputs, model.outputs
        model = keras.Model(inputs, outputs, name=model.name)
    return model


def _clone(graph: keras.Model, **kwargs: Any) -> keras.Model:
    """`keras.models.clone_model` on inputs named like the model's input layers.

    (clone_model's own inputs take the tensors' names, e.g. "keras_tensor".)
    """

    def like(x: Any) -> Any:
        name = x._keras_history.operation.name
        return keras.Input(batch_shape=x.shape, dtype=x.dtype, name=name)

    inputs = keras.tree.map_structure(like, graph.input)
    return keras.models.clone_model(graph, input_tensors=inputs, **kwargs)


def _difference(a: keras.layers.Layer, b: keras.layers.Layer) -> str | None:
    """What keeps `a` and `b` from being one layer; None if nothing."""
    if type(a) is not type(b):
        return f"class: {type(a).__name__} vs {type(b).__name__}"
    config_a, config_b = a.get_config(), b.get_config()
    for key in sorted(set(config_a) | set(config_b)):
        if key != "name" and config_a.get(key) != config_b.get(key):
            return f"configuration: {key}={config_a.get(key)!r} vs {key}={config_b.get(key)!r}"
    shapes_a = [tuple(w.shape) for w in a.weights]
    shapes_b = [tuple(w.shape) for w in b.weights]
    if shapes_a != shapes_b:
        return f"weight shapes: {shapes_a} vs {shapes_b}"
    return None


def _named_groups(model: keras.Model, groups: Any) -> dict[str, list[str]]:
    """`groups` (or what the rule picks) as {shared-layer name: member names}."""
    picked = groups
    if callable(groups) and not isinstance(groups, (Mapping, list, tuple)):
        picked = groups(model)
        rule = getattr(groups, "__name__", repr(groups))
        if not picked:
            raise ValueError(f"The rule {rule} found no layers to share in model {model.name!r}.")
    if isinstance(picked, Mapping):
        items = list(picked.items())
    elif isinstance(picked, (list, tuple)) and not isinstance(picked, str):
        items = [(None, members) for members in picked]
    else:
        raise ValueError(
            "`groups` must be a list of lists of layer names, a dict from a shared "
            "layer's name to a list of layer names, or a callable that returns one of "
            f"those for the model. Received: groups={groups!r}"
        )
    if not items:
        raise ValueError("`groups` is empty: name at least one group of two layers to share.")

    named: dict[str, list[str]] = {}
    for name, members in items:
        if isinstance(members, str) or not isinstance(members, (list, tuple)):
            raise ValueError(
                f"Each group must be a list of layer names. Received: {members!r}"
                + ("" if name is None else f" for group {name!r}")
            )
        if not all(isinstance(m, str) for m in members):
            raise ValueError(f"Layer names must be strings. Received group: {list(members)!r}")
        repeated = sorted(m for m, n in Counter(members).items() if n > 1)
        if repeated:
            raise ValueError(f"Group {list(members)!r} names layer(s) {repeated} more than once.")
        if len(members) < 2:
            raise ValueError(
                f"Group {list(members)!r} has one layer: a group shares one layer's "
                "weights between two or more layers."
            )
        name = f"{members[0]}_shared" if name is None else name
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"A shared layer's name must be a non-empty string. Received: {name!r}"
            )
        if name in named:
            raise ValueError(f"Two groups are named {name!r}: shared layers need unique names.")
        named[name] = list(members)
    return named


def _check_groups(model: keras.Model, named: dict[str, list[str]]) -> None:
    """Every member exists, is in one group and matches its group; names are free."""
    layers = {layer.name: layer for layer in model.layers}
    owner: dict[str, str] = {}
    for name, members in named.items():
        for member in members:
            if member not in layers:
                close = difflib.get_close_matches(member, list(layers), n=3)
                hint = f" Close names: {close}." if close else ""
                raise ValueError(
                    f"Model {model.name!r} has no layer named {member!r} (group {name!r}).{hint}"
                )
            if isinstance(layers[member], keras.layers.InputLayer):
                raise ValueError(
                    f"Layer {member!r} (group {name!r}) is an input: it has no call to share."
                )
            if member in owner:
                raise ValueError(
                    f"Layer {member!r} is in two groups, {owner[member]!r} and {name!r}: "
                    "a layer can share the weights of one group only."
                )
            owner[member] = name
        first = layers[members[0]]
        for member in members[1:]:
            why = _difference(first, layers[member])
            if why is not None:
                raise ValueError(
                    f"Layers {first.name!r} and {member!r} (group {name!r}) cannot share "
                    f"weights: they differ in {why}."
                )
    for name in named:
        if name in layers and owner.get(name) is None:
            raise ValueError(
                f"The shared layer name {name!r} is already the name of layer {name!r}, "
                "which is not in that group; choose another name."
            )


def share(model: keras.Model, groups: Groups, init: str = "first") -> keras.Model:
    """Rebuilds `model` so that each group of layers is one shared layer.

    Each group becomes one layer object called at every place its members
    were; every other layer is copied with its weights. The layers of a
    group must have the same class, configuration (apart from the name) and
    weight shapes. The input model is not changed; the new one shares no
    variable with it. A compiled model's compile configuration is copied
    (its optimizer state is not).

    Example:
        ```python
        resnet = keras.applications.ResNet50(weights=None)
        sharesnet = keras_reuse.share(resnet, keras_reuse.reuse.sharing.resnet_stage_rule)
        ```

    Args:
        model: A functional or built Sequential Keras model without nested
            models: ours, keras.applications', a user's.
        groups: The layers to share: a list of lists of layer names (the
            shared layer is then named `"<first member>_shared"`), a dict from
            the shared layer's name to its members' names, or a callable that
            returns either from the model (e.g. `resnet_stage_rule`).
        init: Where the shared weights start: "first" (the first member's,
            in the order given), "mean" (the element-wise mean of the
            members'), or "random" (a fresh initialisation).

    Returns:
        A new functional `keras.Model` with the model's name.

    Raises:
        ValueError: before any layer is built, for a model that is not
            functional or holds nested models, an unknown `init`, and groups
            with unknown layers, a layer in two groups, a group of one, or
            members that differ (the message names the layers and how).
    """
    if init not in INITS:
        raise ValueError(f"`init` must be one of {INITS}. Received: init={init!r}")
    graph = _functional(model, "share")
    named = _named_groups(graph, groups)
    _check_groups(graph, named)

    group_of = {member: name for name, members in named.items() for member in members}
    shared: dict[str, keras.layers.Layer] = {}

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        group = group_of.get(layer.name)
        if group is None:
            return layer.__class__.from_config(layer.get_config())
        if group not in shared:
            shared[group] = layer.__class__.from_config({**layer.get_config(), "name": group})
        return shared[group]

    result = _clone(graph, clone_function=clone)
    for layer in graph.layers:
        if layer.weights and layer.name not in group_of:
            result.get_layer(layer.name).set_weights(layer.get_weights())
    for name, members in named.items():
        values = [graph.get_layer(member).get_weights() for member in members]
        if init == "first":
            shared[name].set_weights(values[0])
        elif init == "mean":
            shared[name].set_weights([np.mean(ws, axis=0) for ws in zip(*values, strict=True)])
    return result


def unshare(model: keras.Model) -> keras.Model:
    """Gives every call of a reused layer its own layer, with the same weights.

    The result computes exactly what `model` computes; its trainable
    parameters are `reuse_summary(model).unrolled_params`. Call `i` (from 1,
    input to output) of a reused layer `name` becomes layer `name_call{i}`;
    layers called once keep their names. The input model is not changed.

    Args:
        model: A functional or built Sequential Keras model without nested
            models (e.g. `LruNet(layer_reuse=14)`).

    Returns:
        A new functional `keras.Model` with the model's name.

    Raises:
        ValueError: for a model that is not functional or holds nested
            models, a model with a layer that reuses its weights inside one
            call (a looped LruNet stage), or when a new name is already a
            layer's name.
    """
    graph = _functional(model, "unshare")
    looped = [layer.name for layer in graph.layers if hasattr(layer, "reuse_rows")]
    if looped:
        # Such a layer (a looped LruNet stage) reuses its weights inside one
        # call, out of reach of a graph rewrite: unsharing around it would
        # leave it shared.
        raise ValueError(
            f"`unshare` rewrites calls of layers, but layer(s) {looped} of model "
            f"{graph.name!r} reuse their weights inside one call (a looped stage). Unroll "
            "them first: keras_reuse.applications.lrunet.model.unroll_reuse_loops(model), "
            "or build LruNet(..., reuse_loop=False)."
        )
    calls = layer_calls(graph_nodes(graph))
    taken = {layer.name for layer in graph.layers}
    for layer, count in calls.items():
        clash = [f"{layer.name}_call{i}" for i in range(1, count + 1) if count > 1]
        clash = [name for name in clash if name in taken]
        if clash:
            raise ValueError(
                f"`unshare` names the calls of layer {layer.name!r} {layer.name}_call1.."
                f"{count}, but model {graph.name!r} already has layer(s) {clash}."
            )

    seen: Counter = Counter()
    copies: list[tuple[keras.layers.Layer, keras.layers.Layer]] = []

    def call(layer: keras.layers.Layer, *args: Any, **kwargs: Any) -> Any:
        seen[layer] += 1
        config = layer.get_config()
        if calls[layer] > 1:
            config["name"] = f"{layer.name}_call{seen[layer]}"
        copy = layer.__class__.from_config(config)
        copies.append((copy, layer))
        return copy(*args, **kwargs)

    # The graph is walked with the original layers, never called: `call`
    # makes and calls a fresh copy at each node instead.
    result = _clone(graph, clone_function=lambda layer: layer, call_function=call)
    for copy, layer in copies:
        if layer.weights:
            copy.set_weights(layer.get_weights())
    return result


_RESNET_CONV = re.compile(r"^(?P<stage>conv\d+)_block(?P<block>\d+)_(?P<position>\d+)_conv$")


def resnet_stage_rule(model: keras.Model, include_first_block: bool = True) -> dict[str, list[str]]:
    """Boulch's ShaResNet groups for a ResNet named the keras.applications way.

    In each stage `convS`, the 3x3 convolutions `convS_blockB_2_conv` of the
    blocks that keep the resolution (no strided convolution in the block)
    form one group, named `convS_shared_2_conv` like our ShaResNets' shared
    layers. BatchNorms and 1x1 convolutions are never grouped.

    `share(keras.applications.ResNet50(weights=None), resnet_stage_rule)`
    then shares what our `ShaResNet50()` shares (its parameters differ only
    by the conv biases that keras.applications' ResNets have), and
    `share(ShaResNet50(share=False), resnet_stage_rule)` is `ShaResNet50()`,
    with the same layer names. Our ShaResNet18/34 also share the second
    conv of each stage's strided block, which this rule leaves alone.

    Args:
        model: A functional ResNet with keras.applications layer names
            (`ResNet50/101/152`, `ResNet50V2/101V2/152V2`, our ShaResNets
            built with `share=False`).
        include_first_block: Whether block 1 of a stage may join its group
            (when it keeps the resolution). Boulch's CIFAR networks, like
            our `ShaResNet164` and `WideShaResNet`, keep block 1 apart: pass
            `functools.partial(resnet_stage_rule, include_first_block=False)`.

    Returns:
        {shared layer name: member layer names in graph order}, for each
        stage with at least two such convolutions.
    """
    blocks: dict[tuple[str, int], dict[int, keras.layers.Layer]] = {}
    for layer in model.layers:
        match = _RESNET_CONV.match(layer.name)
        if match and isinstance(layer, keras.layers.Conv2D):
            key = (match["stage"], int(match["block"]))
            blocks.setdefault(key, {})[int(match["position"])] = layer
    groups: dict[str, list[str]] = {}
    for (stage, block), convs in blocks.items():
        conv = convs.get(2)
        if conv is None or tuple(conv.kernel_size) != (3, 3):
            continue
        if any(max(c.strides) > 1 for c in convs.values()):
            continue
        if block == 1 and not include_first_block:
            continue
        groups.setdefault(f"{stage}_shared_2_conv", []).append(conv.name)
    return {name: members for name, members in groups.items() if len(members) > 1}

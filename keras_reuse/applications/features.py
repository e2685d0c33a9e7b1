"""Feature extraction: every stage's output of a model, as a dict of named tensors.

Like timm's `features_only` and keras-hub's pyramid outputs: the returned
model shares the original's layers and weights (nothing is copied), so a
pretrained backbone feeds a detector or a new head directly.
"""

from __future__ import annotations

import re

import keras

# The layer that ends each stage, by the naming of our applications:
# LruNet's last reuse ("stage2_reuse14_relu"), a ResNet block's output
# ("conv3_block4_out", pre-activation CIFAR nets: "conv3_block18_add"),
# LruNet(reuse_loop=True)'s looped stage layer ("stage2").
_STAGE_ENDS = (
    re.compile(r"^(stage\d+)_reuse(\d+)_relu$"),
    re.compile(r"^(stage\d+)()$"),
    re.compile(r"^(conv\d+)_block(\d+)_(?:out|add)$"),
)


def feature_extractor(model: keras.Model) -> keras.Model:
    """A model returning the output of each stage of `model` as a dict.

    Args:
        model: A functional model built by `keras_reuse.applications`
            (LruNet: keys "stage1".."stage4"; ShaResNets: "conv2".."conv5",
            or "conv2".."conv4" for the CIFAR ones), with or without its top.

    Returns:
        A `keras.Model` on the same inputs and layers whose output is
        `{stage name: that stage's last output}`, in network order.

    Raises:
        ValueError: if `model` has no layer named like a stage end.
    """
    ends: dict[str, tuple[int, keras.layers.Layer]] = {}
    for layer in getattr(model, "layers", []):
        for pattern in _STAGE_ENDS:
            match = pattern.match(layer.name)
            if match:
                stage, index = match.group(1), int(match.group(2) or 0)
                if stage not in ends or index > ends[stage][0]:
                    ends[stage] = (index, layer)
    if not ends:
        raise ValueError(
            f"Model {getattr(model, 'name', model)!r} has no stage outputs to extract: "
            "feature_extractor takes models of keras_reuse.applications (layers named "
            "like 'stage2_reuse14_relu' or 'conv3_block4_out')."
        )
    order = sorted(ends, key=lambda s: int(re.sub(r"\D", "", s)))
    outputs = {stage: ends[stage][1].output for stage in order}
    return keras.Model(model.inputs, outputs, name=f"{model.name}_features")

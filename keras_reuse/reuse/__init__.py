"""Reuse in any functional Keras model: make layers share weights, undo it, and count it.

`share(model, groups)` makes chosen layers one layer called several times,
`unshare(model)` gives every call of a shared layer its own layer, and
`reuse_summary(model)` tells, layer by layer, how often each is called and
what the sharing saves. They walk the model's graph (`keras_reuse.reuse.graph`).
"""

from keras_reuse.reuse.sharing import resnet_stage_rule, share, unshare
from keras_reuse.reuse.summary import LayerReuse, ReuseSummary, reuse_summary

__all__ = [
    "LayerReuse",
    "ReuseSummary",
    "resnet_stage_rule",
    "reuse_summary",
    "share",
    "unshare",
]

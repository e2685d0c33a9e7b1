"""The LruNet family in one place.

`model` builds the network (`LruNet`), `stage` is the looped form of a
reusing stage, `recompute` its memory-lean gradient, `presets` the
published weights (the one place their figures live), and `checkpoint`
converts the authors' PyTorch checkpoints.
"""

from keras_reuse.applications.lrunet.model import LruNet

__all__ = ["LruNet"]

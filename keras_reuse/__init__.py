"""keras-reuse: Keras 3 convolutional networks that reuse their layers.

Public entry points: `keras_reuse.applications` (LruNet, the ShaResNet
family, the model registry), `keras_reuse.layers` (reuse primitives) and
`reuse_summary` (how any functional model reuses its layers);
`share`/`unshare` make any functional model's layers share weights, or not;
`load_lrunet_checkpoint` converts the LruNet authors' PyTorch checkpoints;
`compile_for_training` compiles with the papers' recipe, ready for `fit`;
`AtomicWriteError` is what every write of the package raises when the OS
refuses it (`keras_reuse.atomic`).
"""

# `optimizers` registers CoupledSGD, so compiled models we train load anywhere.
from keras_reuse import applications, data, layers, optimizers, sharing
from keras_reuse.applications import LruNet, create, feature_extractor, get, list_models
from keras_reuse.atomic import AtomicWriteError
from keras_reuse.compiling import build_optimizer, compile_for_training
from keras_reuse.export import to_tflite
from keras_reuse.layers import ChannelShuffle, GroupedPointwiseConv
from keras_reuse.optimizers import CoupledSGD
from keras_reuse.pretrained import load_lrunet_checkpoint
from keras_reuse.sharing import share, unshare
from keras_reuse.summary import LayerReuse, ReuseSummary, reuse_summary

__version__ = "0.1.0"

__all__ = [
    "AtomicWriteError",
    "ChannelShuffle",
    "CoupledSGD",
    "GroupedPointwiseConv",
    "LayerReuse",
    "LruNet",
    "ReuseSummary",
    "__version__",
    "applications",
    "build_optimizer",
    "compile_for_training",
    "create",
    "feature_extractor",
    "data",
    "get",
    "layers",
    "list_models",
    "optimizers",
    "load_lrunet_checkpoint",
    "reuse_summary",
    "share",
    "sharing",
    "to_tflite",
    "unshare",
]

"""keras-reuse: Keras 3 convolutional networks that reuse their layers.

Public entry points: `keras_reuse.applications` (LruNet, the ShaResNet
family, the model registry), `keras_reuse.layers` (reuse primitives) and
`reuse_summary` (how any functional model reuses its layers);
`share`/`unshare` make any functional model's layers share weights, or not;
`load_lrunet_checkpoint` converts the LruNet authors' PyTorch checkpoints;
`compile_for_training` compiles with the papers' recipe, ready for `fit`;
`to_tflite` exports to LiteRT; `AtomicWriteError` is what every write of the
package raises when the OS refuses it.

The names load on first use (PEP 562), so `import keras_reuse` starts
neither Keras nor TensorFlow: it sets TensorFlow's start-up defaults first
(`keras_reuse.startup`) before anything imports TensorFlow. Where Keras is
imported already, the package's layers and optimizer register for `.keras`
files at once; otherwise they do when the first of the package's names is
used.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from keras_reuse import startup

startup.apply_before_tensorflow()

__version__ = "0.1.0"

# Public name -> the module that defines it.
_NAMES = {
    "AtomicWriteError": "keras_reuse.utils.atomic",
    "ChannelShuffle": "keras_reuse.layers",
    "CoupledSGD": "keras_reuse.training.optimizers",
    "GroupedPointwiseConv": "keras_reuse.layers",
    "LayerReuse": "keras_reuse.reuse",
    "LruNet": "keras_reuse.applications",
    "ReuseSummary": "keras_reuse.reuse",
    "build_optimizer": "keras_reuse.training.optimizers",
    "compile_for_training": "keras_reuse.training.optimizers",
    "create": "keras_reuse.applications",
    "feature_extractor": "keras_reuse.applications",
    "get": "keras_reuse.applications",
    "list_models": "keras_reuse.applications",
    "load_lrunet_checkpoint": "keras_reuse.applications.lrunet.checkpoint",
    "reuse_summary": "keras_reuse.reuse",
    "share": "keras_reuse.reuse",
    "to_tflite": "keras_reuse.export",
    "unshare": "keras_reuse.reuse",
}
# Public module names -> the module.
_MODULES = {
    "applications": "keras_reuse.applications",
    "data": "keras_reuse.data",
    "layers": "keras_reuse.layers",
    "optimizers": "keras_reuse.training.optimizers",
    "sharing": "keras_reuse.reuse.sharing",
}
# Registered with Keras's serialization (`.keras` files name them).
_SERIALIZABLE = (
    "keras_reuse.layers",
    "keras_reuse.training.optimizers",
    "keras_reuse.applications.lrunet.stage",
)

__all__ = sorted([*_NAMES, *_MODULES, "__version__"])


def _register() -> None:
    for module in _SERIALIZABLE:
        importlib.import_module(module)


def __getattr__(name: str) -> Any:
    if name not in _NAMES and name not in _MODULES:
        raise AttributeError(f"module 'keras_reuse' has no attribute {name!r}")
    _register()
    module = importlib.import_module(_NAMES.get(name) or _MODULES[name])
    value = module if name in _MODULES else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if "keras" in sys.modules:
    _register()

"""Keras applications for layer-reusing CNNs, and the model registry.

Every constructor follows `keras.applications` conventions and registers
itself by name: `get("lrunet")` returns `LruNet`, `create("sharesnet50",
num_classes=10)` builds a model, `list_models()` lists them
(`list_models(pretrained=True)` the published weights), and
`feature_extractor(model)` returns every stage's output;
`@register_model("name")` adds a constructor of your own (its keyword
arguments become `keras-reuse train` flags).
"""

from keras_reuse.applications.features import feature_extractor
from keras_reuse.applications.lrunet import LruNet
from keras_reuse.applications.registry import create, get, list_models, register_model
from keras_reuse.applications.sharesnet.model import (
    ShaResNet18,
    ShaResNet34,
    ShaResNet50,
    ShaResNet101,
    ShaResNet152,
    ShaResNet164,
    WideShaResNet,
)

__all__ = [
    "LruNet",
    "ShaResNet18",
    "ShaResNet34",
    "ShaResNet50",
    "ShaResNet101",
    "ShaResNet152",
    "ShaResNet164",
    "WideShaResNet",
    "create",
    "feature_extractor",
    "get",
    "list_models",
    "register_model",
]

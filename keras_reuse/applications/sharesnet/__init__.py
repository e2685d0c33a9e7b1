"""The ShaResNet family: ResNets whose 3x3 convolutions are shared within a stage."""

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
    "ShaResNet18",
    "ShaResNet34",
    "ShaResNet50",
    "ShaResNet101",
    "ShaResNet152",
    "ShaResNet164",
    "WideShaResNet",
]

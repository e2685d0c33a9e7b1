"""The published LruNets: one table, the only place their numbers are written.

Each preset is one of the six checkpoints published with "Convolutional
Neural Networks with Layer Reuse" (Köpüklü et al., 2019, MIT licence),
converted once to a Keras weights file shipped inside this package by
`python -m keras_reuse.applications.lrunet.convert_presets` (which reads
the authors' PyTorch files and rewrites this table's digests).
`LruNet(weights=DATASET, layer_reuse=N, width_multiplier=k)` picks the
preset of that dataset, N and k; tests, docs, notebooks and benchmarks read
the figures from here.

`accuracy` is what the converted weights reproduce on this project's test
split `eval_dataset` (None where no such data is available here);
`paper_accuracy` is the accuracy the authors published with the checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os


@dataclasses.dataclass(frozen=True)
class LruNetPreset:
    """A published LruNet and its shipped weights.

    Attributes:
        name: Preset name, e.g. "lrunet10_fashion_mnist".
        dataset: The `weights=` name: "cifar10", "cifar100" or "fashion_mnist".
        layer_reuse: N of N-LruNet-kx.
        width_multiplier: k of N-LruNet-kx.
        input_shape: The training input shape.
        num_classes: Classes of the classifier.
        trainable_params: Trainable parameters of the network.
        paper_accuracy: Test accuracy (%) the authors published.
        eval_dataset: The TFDS dataset on which `accuracy` is reproduced here.
        accuracy: Test accuracy (%) of the shipped weights on `eval_dataset`.
        checkpoint: The authors' file the weights were converted from.
        file: The weights file inside `keras_reuse/applications/lrunet/weights/`.
        sha256: The file's SHA-256, checked before it is loaded.
    """

    name: str
    dataset: str
    layer_reuse: int
    width_multiplier: float
    input_shape: tuple[int, int, int]
    num_classes: int
    trainable_params: int
    paper_accuracy: float
    eval_dataset: str | None
    accuracy: float | None
    checkpoint: str
    file: str
    sha256: str


_CIFAR = (32, 32, 3)
_FASHION = (28, 28, 1)

PRESETS: dict[str, LruNetPreset] = {
    p.name: p
    for p in (
        LruNetPreset(
            name="lrunet1_cifar10",
            dataset="cifar10",
            layer_reuse=1,
            width_multiplier=1.0,
            input_shape=_CIFAR,
            num_classes=10,
            trainable_params=131_402,
            paper_accuracy=83.91,
            eval_dataset="cifar10_jpeg",
            accuracy=80.17,
            checkpoint="cifar10-lru1-ckpt-08391.t7",
            file="lrunet1_cifar10.weights.h5",
            sha256="bc5ccc9e7d4cb876cd48b0792aab2f207ff4b6686c994c34c7fbaafb94ea40ca",
        ),
        LruNetPreset(
            name="lrunet14_cifar10",
            dataset="cifar10",
            layer_reuse=14,
            width_multiplier=1.0,
            input_shape=_CIFAR,
            num_classes=10,
            trainable_params=206_282,
            paper_accuracy=89.34,
            eval_dataset="cifar10_jpeg",
            accuracy=84.35,
            checkpoint="cifar10-lru14-ckpt-08934.t7",
            file="lrunet14_cifar10.weights.h5",
            sha256="be7f203df7f2828db7dcf867689bd8e1d03b9a7da351bc39bb235b51ffb664c1",
        ),
        LruNetPreset(
            name="lrunet1_2x_cifar100",
            dataset="cifar100",
            layer_reuse=1,
            width_multiplier=2.0,
            input_shape=_CIFAR,
            num_classes=100,
            trainable_params=513_956,
            paper_accuracy=63.22,
            eval_dataset=None,
            accuracy=None,
            checkpoint="cifar100-lru1-2x-ckpt-06322.t7",
            file="lrunet1_2x_cifar100.weights.h5",
            sha256="b7f330dd43bfd041e753749503bf647574a99c11b3e8b1df087b9b7462cf8a2b",
        ),
        LruNetPreset(
            name="lrunet14_2x_cifar100",
            dataset="cifar100",
            layer_reuse=14,
            width_multiplier=2.0,
            input_shape=_CIFAR,
            num_classes=100,
            trainable_params=663_716,
            paper_accuracy=68.84,
            eval_dataset=None,
            accuracy=None,
            checkpoint="cifar100-lru14-2x-ckpt-06884.t7",
            file="lrunet14_2x_cifar100.weights.h5",
            sha256="97fb7559003ab6acb801fb9a7936c3a15fe7f822ab3a40b63b9bbd9f8557fec1",
        ),
        LruNetPreset(
            name="lrunet1_fashion_mnist",
            dataset="fashion_mnist",
            layer_reuse=1,
            width_multiplier=1.0,
            input_shape=_FASHION,
            num_classes=10,
            trainable_params=130_250,
            paper_accuracy=91.17,
            eval_dataset="fashion_mnist",
            accuracy=91.17,
            checkpoint="fashionmnist-lru1-ckpt-09117.t7",
            file="lrunet1_fashion_mnist.weights.h5",
            sha256="8370edd0191056f2b47604fc0287434106fe73b40e711a3ad240cbcb05f4bfb6",
        ),
        LruNetPreset(
            name="lrunet10_fashion_mnist",
            dataset="fashion_mnist",
            layer_reuse=10,
            width_multiplier=1.0,
            input_shape=_FASHION,
            num_classes=10,
            trainable_params=182_090,
            paper_accuracy=93.46,
            eval_dataset="fashion_mnist",
            accuracy=93.46,
            checkpoint="fashionmnist-lru10-ckpt-09346.t7",
            file="lrunet10_fashion_mnist.weights.h5",
            sha256="af53402cd39f8d591a7d13ccf33775f0a99c6223224118527625a25ba125ca77",
        ),
    )
}

DATASETS = tuple(sorted({p.dataset for p in PRESETS.values()}))
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")


def is_preset_name(weights: object) -> bool:
    """Whether `weights` names published weights ("cifar10", ...), not a file."""
    return isinstance(weights, str) and weights in DATASETS


def find_preset(dataset: str, layer_reuse: int, width_multiplier: float) -> LruNetPreset:
    """The preset of `dataset` at that reuse count and width.

    Raises:
        ValueError: listing the published combinations when none matches.
    """
    for preset in PRESETS.values():
        if (preset.dataset, preset.layer_reuse, preset.width_multiplier) == (
            dataset,
            layer_reuse,
            float(width_multiplier),
        ):
            return preset
    published = ", ".join(
        f"(layer_reuse={p.layer_reuse}, width_multiplier={p.width_multiplier})"
        for p in PRESETS.values()
        if p.dataset == dataset
    )
    raise ValueError(
        f"No published LruNet for weights={dataset!r} with layer_reuse={layer_reuse!r}, "
        f"width_multiplier={width_multiplier!r}. Published for {dataset!r}: {published}."
    )


def verified_weights_path(preset: LruNetPreset) -> str:
    """The preset's shipped weights file, after checking its SHA-256.

    Raises:
        ValueError: naming the file, if it is missing or its digest differs
            (a damaged or modified installation).
    """
    path = os.path.join(WEIGHTS_DIR, preset.file)
    if not os.path.isfile(path):
        raise ValueError(
            f"The weights file of preset {preset.name!r} is missing: {path!r}. "
            "Reinstall keras-reuse, or regenerate it with "
            "`python -m keras_reuse.applications.lrunet.convert_presets`."
        )
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != preset.sha256:
        raise ValueError(
            f"The weights file {path!r} of preset {preset.name!r} is damaged: its sha256 is "
            f"{digest.hexdigest()}, expected {preset.sha256}. Reinstall keras-reuse, or "
            "regenerate it with keras_reuse.applications.lrunet.convert_presets."
        )
    return path

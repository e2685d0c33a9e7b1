"""A small PyTorch LruNet: the reference for tests and the speed benchmarks.

Written from the architecture in Köpüklü et al. (arXiv:1901.09615) and the
layout of the authors' published checkpoints, not copied from their code. Its
`state_dict` keys are those of the checkpoints (without DataParallel's
`module.` prefix): `features.0/1`, `stage{s}.dw`, `stage{s}.pw`,
`stage{s}.dw_bn_list.{i}`, `stage{s}.pw_bn_list.{i}`, `classifier.0/1/4`,
so `TorchLruNet.from_checkpoint(path)` runs a published network exactly.
`tests/applications/test_pretrained.py` compares the converted Keras models with it, and
the benchmarks time it against Keras on the same machine.

Needs torch (`pip install "keras-reuse[torch]"`, or `pip install
torch==2.13.0` for the CPU wheel); keras_reuse itself never imports this.
"""

from __future__ import annotations

import os

import torch
from torch import nn

PLANES = (64, 128, 256, 512)
HEAD_PLANES = 256
STEM_FILTERS = 64
GROUPS = 8


def shuffle_between_reuses(x: torch.Tensor) -> torch.Tensor:
    """Exchanges the channel halves, then a 2-group channel shuffle."""
    n, c, h, w = x.shape
    x = torch.cat([x[:, c // 2 :], x[:, : c // 2]], dim=1)
    return x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class LruStage(nn.Module):
    """One depthwise 3x3 + grouped 1x1 pair applied `layer_reuse` times.

    The two convolutions are shared by every iteration; each iteration has
    its own BatchNorms and a residual connection, and a channel shuffle
    separates consecutive iterations.
    """

    def __init__(self, planes: int, layer_reuse: int):
        super().__init__()
        self.dw = nn.Conv2d(planes, 2 * planes, 3, padding=1, groups=planes, bias=False)
        self.pw = nn.Conv2d(2 * planes, planes, 1, groups=GROUPS, bias=False)
        self.dw_bn_list = nn.ModuleList(nn.BatchNorm2d(2 * planes) for _ in range(layer_reuse))
        self.pw_bn_list = nn.ModuleList(nn.BatchNorm2d(planes) for _ in range(layer_reuse))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.dw_bn_list) - 1
        for i, (dw_bn, pw_bn) in enumerate(zip(self.dw_bn_list, self.pw_bn_list, strict=True)):
            out = pw_bn(self.pw(dw_bn(self.dw(x))))
            x = torch.relu(out + x)
            if i < last:
                x = shuffle_between_reuses(x)
        return x


class TorchLruNet(nn.Module):
    """N-LruNet-kx in PyTorch, NCHW, returning logits.

    Args:
        num_classes: Number of classes.
        layer_reuse: Iterations per stage (N).
        width_multiplier: Width factor k (1 or 2 in the published models).
        in_channels: Image channels (3 for CIFAR, 1 for Fashion-MNIST).
        dropout: Dropout rate before the classifier convolution.
    """

    def __init__(
        self,
        num_classes: int = 10,
        layer_reuse: int = 14,
        width_multiplier: int = 1,
        in_channels: int = 3,
        dropout: float = 0.5,
    ):
        super().__init__()
        planes = [int(p * width_multiplier) for p in PLANES]
        self.stem_copies = planes[0] // STEM_FILTERS
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, STEM_FILTERS, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(STEM_FILTERS),
            nn.ReLU(inplace=True),
        )
        self.stage1 = LruStage(planes[0], layer_reuse)
        self.stage2 = LruStage(planes[1], layer_reuse)
        self.stage3 = LruStage(planes[2], layer_reuse)
        self.stage4 = LruStage(planes[3], layer_reuse)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        head = int(HEAD_PLANES * width_multiplier)
        self.classifier = nn.Sequential(
            nn.Conv2d(planes[3], head, 1, groups=GROUPS, bias=False),
            nn.BatchNorm2d(head),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(head, num_classes, 1),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(2),
        )
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.cat([x] * self.stem_copies, dim=1)
        x = self.pool(self.stage1(x))
        x = torch.cat([x, x], dim=1)
        x = self.pool(self.stage2(x))
        x = torch.cat([x, x], dim=1)
        x = torch.cat([self.stage3(x)] * 2, dim=1)
        x = self.pool(self.stage4(x))
        return self.classifier(x).view(x.shape[0], self.num_classes)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> TorchLruNet:
        """Builds the network a published checkpoint describes and loads it.

        Args:
            path: A `{"net": state_dict, ...}` checkpoint of the authors, or
                a bare state_dict; a `module.` prefix is stripped.

        Returns:
            The network in eval mode.
        """
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = checkpoint.get("net", checkpoint)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        stem = state["features.0.weight"]
        net = cls(
            num_classes=state["classifier.4.weight"].shape[0],
            layer_reuse=sum(
                1 for k in state if k.startswith("stage1.dw_bn_list.") and k.endswith(".weight")
            ),
            width_multiplier=state["stage1.pw.weight"].shape[0] // PLANES[0],
            in_channels=stem.shape[1],
        )
        net.load_state_dict(state, strict=False)
        missing, unexpected = _key_mismatch(net.state_dict(), state)
        if missing or unexpected:
            raise ValueError(f"{path}: missing keys {missing}, unexpected keys {unexpected}")
        return net.eval()


def _key_mismatch(expected: dict, state: dict) -> tuple[list[str], list[str]]:
    # Checkpoints from old PyTorch lack BatchNorm's num_batches_tracked,
    # a training counter that inference never reads.
    def weights(keys):
        return {k for k in keys if not k.endswith("num_batches_tracked")}

    return sorted(weights(expected) - weights(state)), sorted(weights(state) - weights(expected))

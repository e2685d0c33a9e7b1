"""A small PyTorch ShaResNet-164 (pre-activation bottleneck), the benchmarks' reference.

The same network as `keras_reuse.applications.ShaResNet164`: three stages of
18 pre-activation bottleneck blocks (16 -> 64, 128, 256 channels), block 1 of
each stage owning its (strided) 3x3 convolution and, with `share=True`,
blocks 2..18 calling one shared 3x3 convolution while keeping their own
BatchNorms (Boulch, arXiv:1702.08782). `share=False` is plain ResNet-164.

Needs torch; keras_reuse never imports this.
"""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = (16, 32, 64)
BLOCKS = 18
EXPANSION = 4


class PreActBottleneck(nn.Module):
    """BN-ReLU, 1x1, BN-ReLU, 3x3 (given), BN-ReLU, 1x1, plus the shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int, conv3x3: nn.Conv2d):
        super().__init__()
        out_planes = EXPANSION * planes
        self.preact_bn = nn.BatchNorm2d(in_planes)
        self.shortcut = None
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = torch.relu(self.preact_bn(x))
        shortcut = x if self.shortcut is None else self.shortcut(preact)
        out = torch.relu(self.bn1(self.conv1(preact)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return self.conv3(out) + shortcut


class TorchShaResNet164(nn.Module):
    """ShaResNet-164 for 32x32 inputs, NCHW, returning logits.

    Args:
        num_classes: Number of classes.
        share: Share one 3x3 convolution between blocks 2..18 of each stage.
    """

    def __init__(self, num_classes: int = 10, share: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        blocks = []
        in_planes = 16
        for stage, planes in enumerate(WIDTHS):
            shared = nn.Conv2d(planes, planes, 3, padding=1, bias=False) if share else None
            for b in range(BLOCKS):
                stride = 2 if stage > 0 and b == 0 else 1
                if b == 0 or shared is None:
                    conv = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
                else:
                    conv = shared
                blocks.append(PreActBottleneck(in_planes, planes, stride, conv))
                in_planes = EXPANSION * planes
        self.blocks = nn.Sequential(*blocks)
        self.post_bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.conv1(x))
        x = torch.relu(self.post_bn(x))
        return self.fc(x.mean(dim=(2, 3)))

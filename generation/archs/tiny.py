"""Two tiny networks for the demo and the tests: trained on the shapes set in seconds on a CPU.

Both take 32 px (or any size) RGB inputs and end with pooled features ->
`flatten` -> `fc`, so their penultimate layer is the `flatten` node.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# the CIFAR ResNet's block, at the tiny net's widths (same layers and state-dict keys)
from generation.archs.cifar import BasicBlock as TinyBlock


class TinyResNet(nn.Module):
    """Stem + three stride-2 residual blocks (16 -> 32 -> 64 channels), ~78k parameters."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = TinyBlock(16, 16, 2)
        self.layer2 = TinyBlock(16, 32, 2)
        self.layer3 = TinyBlock(32, 64, 2)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


class TinyConvNet(nn.Module):
    """Three plain conv-BN-ReLU layers with max-pooling and no skip connections, ~25k parameters."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BatchNorm: without it this net does not learn the shapes in a few epochs
        out = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        out = F.max_pool2d(F.relu(self.bn2(self.conv2(out))), 2)
        out = F.relu(self.bn3(self.conv3(out)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))

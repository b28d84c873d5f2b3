"""CIFAR-style networks for 32 px inputs: a 3×3 stride-1 stem and no max-pool.

ResNet, VGG, DenseNet and Inception-v3 follow the layout and parameter names of
MadryLab's `robustness.cifar_models` (the models the paper inverted), so their
checkpoints load as they are. Every model ends with pooled features -> `flatten` ->
a final Linear, which is the penultimate node `generation.network` truncates at.

`fake_relu` (ReLU forward, identity backward) replaces the last ReLU where the
reference code applies it when inverting: the last block of ResNet's layer4 and
DenseNet's final BN-ReLU. VGG and Inception ignore it there, so they do here too.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def fake_relu(x: torch.Tensor) -> torch.Tensor:
    """relu(x) in the forward pass, the identity in the backward pass (exact: x + (relu(x) - x)
    is relu(x) bit for bit); plain tensor ops, so FX and torch.compile trace it."""
    return x + (x.clamp_min(0) - x).detach()

# ------------------------------------------------------------------ ResNet


class BasicBlock(nn.Module):
    expansion = 1
    fake_relu = False  # set on the last block of layer4 by `use_fake_relu`

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        return fake_relu(out) if self.fake_relu else F.relu(out)


class Bottleneck(nn.Module):
    expansion = 4
    fake_relu = False

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != 4 * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, 4 * planes, 1, stride, bias=False),
                nn.BatchNorm2d(4 * planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out)) + self.shortcut(x)
        return fake_relu(out) if self.fake_relu else F.relu(out)


class CifarResNet(nn.Module):
    def __init__(self, block: type[nn.Module], blocks: list[int], num_classes: int = 10) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._layer(block, 64, blocks[0], 1)
        self.layer2 = self._layer(block, 128, blocks[1], 2)
        self.layer3 = self._layer(block, 256, blocks[2], 2)
        self.layer4 = self._layer(block, 512, blocks[3], 2)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def _layer(self, block: type[nn.Module], planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        # adaptive pooling == MadryLab's avg_pool2d(out, 4) at 32 px, and works at any size
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)


def resnet18(num_classes: int = 10) -> nn.Module:
    return CifarResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def resnet50(num_classes: int = 10) -> nn.Module:
    return CifarResNet(Bottleneck, [3, 4, 6, 3], num_classes)


# --------------------------------------------------------------------- VGG

_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class CifarVGG(nn.Module):
    def __init__(self, cfg: list, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU()]
                channels = item
        layers.append(nn.AvgPool2d(1, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        return self.classifier(out)


def vgg16(num_classes: int = 10) -> nn.Module:
    return CifarVGG(_VGG16, num_classes)


# ---------------------------------------------------------------- DenseNet


class DenseBottleneck(nn.Module):
    def __init__(self, in_planes: int, growth: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class CifarDenseNet(nn.Module):
    fake_relu = False

    def __init__(self, blocks: list[int], growth: int = 32, reduction: float = 0.5,
                 num_classes: int = 10) -> None:
        super().__init__()
        planes = 2 * growth
        self.conv1 = nn.Conv2d(3, planes, 3, padding=1, bias=False)
        for i, n in enumerate(blocks, start=1):
            setattr(self, f"dense{i}", nn.Sequential(
                *[DenseBottleneck(planes + j * growth, growth) for j in range(n)]
            ))
            planes += n * growth
            if i < len(blocks):
                out_planes = int(planes * reduction)
                setattr(self, f"trans{i}", Transition(planes, out_planes))
                planes = out_planes
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.trans1(self.dense1(out))
        out = self.trans2(self.dense2(out))
        out = self.trans3(self.dense3(out))
        out = self.bn(self.dense4(out))
        out = fake_relu(out) if self.fake_relu else F.relu(out)
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)


def densenet121(num_classes: int = 10) -> nn.Module:
    return CifarDenseNet([6, 12, 24, 16], growth=32, num_classes=num_classes)


# ------------------------------------------------------------ Inception-v3
# robustness' CIFAR InceptionV3: a stride-1 stem (32 -> 30 px at Conv2d_4a), Inception
# blocks whose branches are nn.Sequential stacks (hence keys such as
# Mixed_5b.branch3x3.1.conv.weight), no auxiliary head, and a `linear` classifier.


class ConvBN(nn.Module):
    """conv (no bias) -> BatchNorm -> ReLU, keys conv.* and bn.*."""

    def __init__(self, cin: int, cout: int, **conv: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **conv)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _stack(*layers: tuple) -> nn.Sequential:
    """ConvBN layers from (cin, cout, kernel[, padding[, stride]]) tuples."""
    built = []
    for cin, cout, kernel, *rest in layers:
        padding = rest[0] if rest else 0
        stride = rest[1] if len(rest) > 1 else 1
        built.append(ConvBN(cin, cout, kernel_size=kernel, padding=padding, stride=stride))
    return nn.Sequential(*built)


class _Concat(nn.Module):
    """Runs the branches named in `order` on the same input and concatenates them."""

    order: tuple[str, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, name)(x) for name in self.order], 1)


class MixedA(_Concat):  # 35×35-style block, "same" size
    order = ("branch1x1", "branch5x5", "branch3x3", "branchpool")

    def __init__(self, cin: int, pool: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, kernel_size=1)
        self.branch5x5 = _stack((cin, 48, 1), (48, 64, 5, 2))
        self.branch3x3 = _stack((cin, 64, 1), (64, 96, 3, 1), (96, 96, 3, 1))
        self.branchpool = nn.Sequential(nn.AvgPool2d(3, 1, 1), ConvBN(cin, pool, kernel_size=3,
                                                                     padding=1))


class MixedB(_Concat):  # grid reduction
    order = ("branch3x3", "branch3x3stack", "branchpool")

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, kernel_size=3, stride=2)
        self.branch3x3stack = _stack((cin, 64, 1), (64, 96, 3, 1), (96, 96, 3, 0, 2))
        self.branchpool = nn.MaxPool2d(3, 2)


class MixedC(_Concat):  # factorised 7×7
    order = ("branch1x1", "branch7x7", "branch7x7stack", "branch_pool")

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        col, row = ((7, 1), (3, 0)), ((1, 7), (0, 3))
        self.branch1x1 = ConvBN(cin, 192, kernel_size=1)
        self.branch7x7 = _stack((cin, c7, 1), (c7, c7, *col), (c7, 192, *row))
        self.branch7x7stack = _stack((cin, c7, 1), (c7, c7, *col), (c7, c7, *row),
                                     (c7, c7, *col), (c7, 192, *row))
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, 1, 1), ConvBN(cin, 192, kernel_size=1))


class MixedD(_Concat):  # grid reduction
    order = ("branch3x3", "branch7x7", "branchpool")

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _stack((cin, 192, 1), (192, 320, 3, 0, 2))
        self.branch7x7 = _stack((cin, 192, 1), (192, 192, (1, 7), (0, 3)),
                                (192, 192, (7, 1), (3, 0)), (192, 192, 3, 0, 2))
        self.branchpool = nn.AvgPool2d(3, 2)


class MixedE(nn.Module):  # expanded filter bank
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(cin, 320, kernel_size=1)
        self.branch3x3_1 = ConvBN(cin, 384, kernel_size=1)
        self.branch3x3_2a = ConvBN(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3stack_1 = ConvBN(cin, 448, kernel_size=1)
        self.branch3x3stack_2 = ConvBN(448, 384, kernel_size=3, padding=1)
        self.branch3x3stack_3a = ConvBN(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3stack_3b = ConvBN(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, 1, 1), ConvBN(cin, 192, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3stack_2(self.branch3x3stack_1(x))
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3stack_3a(b), self.branch3x3stack_3b(b),
                          self.branch_pool(x)], 1)


class CifarInceptionV3(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, kernel_size=3, padding=1)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, kernel_size=3, padding=1)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, kernel_size=3)
        self.Mixed_5b = MixedA(192, 32)
        self.Mixed_5c = MixedA(256, 64)
        self.Mixed_5d = MixedA(288, 64)
        self.Mixed_6a = MixedB(288)
        self.Mixed_6b = MixedC(768, 128)
        self.Mixed_6c = MixedC(768, 160)
        self.Mixed_6d = MixedC(768, 160)
        self.Mixed_6e = MixedC(768, 192)
        self.Mixed_7a = MixedD(768)
        self.Mixed_7b = MixedE(1280)
        self.Mixed_7c = MixedE(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout2d()
        self.linear = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        x = self.dropout(self.avgpool(x))
        return self.linear(torch.flatten(x, 1))


def inception_v3(num_classes: int = 10) -> nn.Module:
    return CifarInceptionV3(num_classes)


def use_fake_relu(model: nn.Module) -> bool:
    """Switch on fake_relu where the reference code uses it; False when `model` has no such place."""
    if isinstance(model, CifarResNet):
        model.layer4[-1].fake_relu = True
        return True
    if isinstance(model, CifarDenseNet):
        model.fake_relu = True
        return True
    return False

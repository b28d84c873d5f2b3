"""The one factory that turns an architecture name into an untrained `nn.Module`.

Names are torchvision's (built with ``weights=None``: nothing is ever downloaded),
the project's CIFAR-style variants (``cifar_*``), the tiny demo networks, and
``timm:<name>`` when timm happens to be installed (it is optional).
"""

from __future__ import annotations

from collections.abc import Callable
from difflib import get_close_matches

import torch.nn as nn
import torchvision

from generation.archs import cifar, tiny

Factory = Callable[[int], nn.Module]


def _torchvision(name: str, **extra: object) -> Factory:
    def build(num_classes: int) -> nn.Module:
        return getattr(torchvision.models, name)(weights=None, num_classes=num_classes, **extra)

    return build


_REGISTRY: dict[str, Factory] = {
    "resnet18": _torchvision("resnet18"),
    "resnet34": _torchvision("resnet34"),
    "resnet50": _torchvision("resnet50"),
    "resnet101": _torchvision("resnet101"),
    "wide_resnet50_2": _torchvision("wide_resnet50_2"),
    "vgg16": _torchvision("vgg16"),
    "vgg16_bn": _torchvision("vgg16_bn"),
    "densenet121": _torchvision("densenet121"),
    "densenet161": _torchvision("densenet161"),
    # init_weights=False: scipy's truncated-normal init is slow and the weights are
    # replaced by the checkpoint anyway; aux_logits=True keeps torchvision's keys.
    "inception_v3": _torchvision("inception_v3", aux_logits=True, init_weights=False),
    "cifar_resnet18": cifar.resnet18,
    "cifar_resnet50": cifar.resnet50,
    "cifar_vgg16": cifar.vgg16,
    "cifar_densenet121": cifar.densenet121,
    "cifar_inception_v3": cifar.inception_v3,
    "tiny_resnet": tiny.TinyResNet,
    "tiny_convnet": tiny.TinyConvNet,
}

# ImageNet-sized default class counts; CIFAR-style and tiny nets default to 10.
_DEFAULT_CLASSES = {name: 1000 for name in _REGISTRY if not name.startswith(("cifar_", "tiny_"))}


class UnknownArchError(ValueError):
    """An architecture name that no factory knows."""


def arch_names() -> list[str]:
    return sorted(_REGISTRY)


def _timm_factory(name: str) -> Factory:
    try:
        import timm  # optional
    except ImportError:
        raise UnknownArchError(
            f"arch {name!r}: timm names need the optional package timm (pip install timm)"
        ) from None
    model_name = name.removeprefix("timm:")
    if model_name not in timm.list_models():
        raise UnknownArchError(f"arch {name!r}: timm has no model {model_name!r}")
    return lambda num_classes: timm.create_model(
        model_name, pretrained=False, num_classes=num_classes
    )


def create_model(arch: str, num_classes: int | None = None) -> nn.Module:
    """An untrained model of architecture `arch`, in eval mode."""
    if arch.startswith("timm:"):
        factory = _timm_factory(arch)
    elif arch in _REGISTRY:
        factory = _REGISTRY[arch]
    else:
        close = get_close_matches(arch, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownArchError(
            f"unknown arch {arch!r}{hint} (known: {', '.join(arch_names())}, "
            "or timm:<name> with timm installed)"
        )
    classes = num_classes if num_classes is not None else _DEFAULT_CLASSES.get(arch, 10)
    return factory(classes).eval()

"""The network an IRI is made for: normalisation inside, truncated at a layer, frozen, eval.

`IRINetwork` takes images in [0, 1] (N, 3, H, W) and returns the flattened
representation at the chosen layer (N, D). The layer is a torchvision
feature-extraction node name (``torchvision.models.feature_extraction.
get_graph_node_names``); ``penultimate`` means the node just before the final
Linear classifier, i.e. the pooled features the paper inverts.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path

import torch
import torch.nn as nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from generation.archs import create_model
from generation.archs.cifar import use_fake_relu
from generation.checkpoints import CheckpointError, load_weights
from hitkit.study.generation_config import NORMALIZATIONS, CustomNormalization, ModelSpec

PENULTIMATE = "penultimate"


class LayerError(ValueError):
    """A layer name the model does not have."""


def graph_nodes(model: nn.Module) -> tuple[list[str], list[str]]:
    """(train-mode, eval-mode) feature-extraction node names."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's "eval nodes are a subsequence" note
        return get_graph_node_names(model)


def penultimate_node(model: nn.Module, eval_nodes: list[str] | None = None) -> str:
    """The node executed just before the last Linear module: the pooled pre-classifier features."""
    nodes = eval_nodes if eval_nodes is not None else graph_nodes(model)[1]
    modules = dict(model.named_modules())
    for i in range(len(nodes) - 1, 0, -1):
        if isinstance(modules.get(nodes[i]), nn.Linear):
            return nodes[i - 1]
    raise LayerError(
        f"{type(model).__name__} has no final Linear classifier, so 'penultimate' is undefined; "
        "name a layer (e.g. one of: " + ", ".join(nodes[-5:]) + ")"
    )


def resolve_layer(model: nn.Module, layer: str, arch: str = "") -> str:
    train_nodes, eval_nodes = graph_nodes(model)
    if layer == PENULTIMATE:
        return penultimate_node(model, eval_nodes)
    if layer not in eval_nodes:
        close = get_close_matches(layer, eval_nodes, n=4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise LayerError(
            f"layer {layer!r} is not a node of arch {arch or type(model).__name__!r}{hint} "
            f"(it has {len(eval_nodes)} nodes; the last ones: {', '.join(eval_nodes[-6:])}; "
            "list them with torchvision.models.feature_extraction.get_graph_node_names)"
        )
    if layer not in train_nodes:
        raise LayerError(f"layer {layer!r} exists only in eval mode of {arch!r}; choose another")
    return layer


def normalization_values(
    value: str | CustomNormalization,
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    if isinstance(value, CustomNormalization):
        return value.mean, value.std
    return NORMALIZATIONS[value]


class IRINetwork(nn.Module):
    """images in [0, 1] -> normalise -> truncated network -> flattened features."""

    def __init__(self, model: nn.Module, layer: str, mean: tuple[float, ...],
                 std: tuple[float, ...]) -> None:
        super().__init__()
        self.layer = layer
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.body = create_feature_extractor(model, return_nodes=[layer])
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> IRINetwork:
        # always eval: BatchNorm statistics and dropout must not change during an inversion
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.body(x)[self.layer].flatten(1)


@dataclass(frozen=True)
class BuiltNetwork:
    net: IRINetwork
    layer: str  # the resolved node name
    checkpoint_format: str
    fake_relu: bool = False  # whether fake_relu was switched on (paper mode, where it applies)


def build_network(spec: ModelSpec, checkpoint: Path | None, *, trust: bool = False,
                  fake_relu: bool = False) -> BuiltNetwork:
    """Create, load, truncate and freeze the model a [[models]] entry describes.

    `trust` (or the entry's own `trust = true`) unpickles the checkpoint in full;
    `fake_relu` switches it on where the paper's reference code does (CIFAR ResNet, DenseNet).
    """
    model = create_model(spec.arch, spec.num_classes)
    used = "none"
    mean, std = normalization_values(spec.normalization)
    if checkpoint is not None:
        loaded = load_weights(model, checkpoint, spec.checkpoint_format, spec.arch,
                              trust=trust or spec.trust)
        used = loaded.format
        if loaded.normalizer is not None:
            ck_mean, ck_std = loaded.normalizer
            differs = any(abs(a - b) > 1e-4 for a, b in zip(ck_mean + ck_std, mean + std, strict=False))
            if differs:
                raise CheckpointError(
                    f"{checkpoint}: the checkpoint's normalizer (mean {_fmt(ck_mean)}, std "
                    f"{_fmt(ck_std)}) differs from models.normalization={spec.normalization!r} "
                    f"(mean {_fmt(mean)}, std {_fmt(std)}); set normalization to match"
                )
    faked = use_fake_relu(model) if fake_relu else False
    layer = resolve_layer(model, spec.layer, spec.arch)
    return BuiltNetwork(IRINetwork(model, layer, mean, std), layer, used, faked)


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"

"""Seed (starting) images from [seeds]: count draws of each listed kind.

A noise or constant seed is one image shared by every target (as in the paper,
where one seed tensor starts all 100 targets); an `image` seed is a file, or with
path "other-target" another target of the set (target i + j + 1 for draw j).
Seeds are rounded to the 8-bit grid, so the stored seed PNG is exactly the start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from generation.image_tensors import fit
from hitkit.study.generation_config import (
    ConstantSeed,
    GaussianSeed,
    ImageSeed,
    SeedsSection,
    UniformSeed,
)
from hitkit.study.image_io import read_image

SeedKind = GaussianSeed | UniformSeed | ConstantSeed | ImageSeed


@dataclass(frozen=True)
class SeedSpec:
    id: str
    kind: SeedKind
    kind_index: int
    draw: int  # 0 .. count-1

    @property
    def per_target(self) -> bool:
        return isinstance(self.kind, ImageSeed) and self.kind.path == "other-target"


def seed_specs(section: SeedsSection) -> list[SeedSpec]:
    specs = []
    for k, kind in enumerate(section.kinds):
        for j in range(section.count):
            name = kind.kind if not isinstance(kind, ImageSeed) else (
                "other-target" if kind.path == "other-target" else "image")
            specs.append(SeedSpec(f"{name}{k}-{j}", kind, k, j))
    return specs


def seed_image(spec: SeedSpec, section: SeedsSection, size: int,
               resolve: callable = Path) -> torch.Tensor:
    """A target-independent seed (3, size, size) in [0, 1] on the 8-bit grid."""
    kind = spec.kind
    gen = torch.Generator().manual_seed(section.seed * 1_000_003 + spec.kind_index * 1009 + spec.draw)
    if isinstance(kind, GaussianSeed):
        x = kind.mean + kind.scale * torch.randn(3, size, size, generator=gen)
    elif isinstance(kind, UniformSeed):
        x = kind.low + (kind.high - kind.low) * torch.rand(3, size, size, generator=gen)
    elif isinstance(kind, ConstantSeed):
        x = torch.full((3, size, size), kind.value)
    elif isinstance(kind, ImageSeed) and kind.path != "other-target":
        return fit(read_image(resolve(kind.path)), size)
    else:
        raise ValueError("an other-target seed depends on the target: use other_target_index")
    return torch.round(x.clamp(0, 1) * 255) / 255


def other_target_index(spec: SeedSpec, target_index: int, n_targets: int) -> int:
    return (target_index + spec.draw + 1) % n_targets


def fourier_seed(spec: SeedSpec, section: SeedsSection, size: int) -> torch.Tensor | None:
    """The paper's Fourier start: a gaussian seed drawn as an rFFT spectrum (3, size, size//2+1, 2)
    (mean + scale * N(0, 1) per coefficient), not as pixels; None for other kinds."""
    kind = spec.kind
    if not isinstance(kind, GaussianSeed):
        return None
    gen = torch.Generator().manual_seed(section.seed * 1_000_003 + spec.kind_index * 1009 + spec.draw)
    return kind.mean + kind.scale * torch.randn(3, size, size // 2 + 1, 2, generator=gen)

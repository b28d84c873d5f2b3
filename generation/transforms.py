"""Transformation robustness: one random pad/jitter/scale/rotate per step, shared by the batch.

Lucid's recipe (used by the paper) is pad -> jitter -> scale -> rotate -> jitter.
Here the jitters, scale and rotation are composed into one affine warp that
keeps the image size (out-of-frame pixels are mid-grey, like the paper's 0.5
padding), so any layer's representation keeps its shape. Draws come from a CPU
generator: deterministic for a seed, and no device synchronisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hitkit.study.generation_config import TransformSpec


@dataclass(frozen=True)
class Draw:
    shift1: tuple[int, int]
    scale: float
    degrees: float
    shift2: tuple[int, int]


def _shift(gen: torch.Generator, jitter: int) -> tuple[int, int]:
    if jitter <= 1:
        return (0, 0)
    dx, dy = (torch.randint(0, jitter, (2,), generator=gen) - (jitter - 1) // 2).tolist()
    return int(dx), int(dy)


def draw(spec: TransformSpec, gen: torch.Generator) -> Draw:
    """One random transformation (the paper's discrete scale and rotation grids)."""
    low, high = spec.scale
    scales = [low + (high - low) * i / 10 for i in range(11)]
    degrees = [float(d) for d in range(-int(spec.rotate_degrees), int(spec.rotate_degrees) + 1)]
    degrees += [0.0] * 5  # the paper adds five extra zeros: no rotation is the commonest draw
    s = scales[int(torch.randint(0, len(scales), (1,), generator=gen))]
    r = degrees[int(torch.randint(0, len(degrees), (1,), generator=gen))]
    return Draw(_shift(gen, spec.jitter), s, r, _shift(gen, spec.jitter // 2))


def matrix(d: Draw, width: int, height: int) -> torch.Tensor:
    """Output->input sampling matrix in affine_grid's normalised coordinates."""

    def translate(dx: int, dy: int) -> torch.Tensor:
        return torch.tensor([[1, 0, 2 * dx / width], [0, 1, 2 * dy / height], [0, 0, 1]],
                            dtype=torch.float64)

    a = math.radians(d.degrees)
    rotate = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0],
                           [0, 0, 1]], dtype=torch.float64)
    scale = torch.diag(torch.tensor([d.scale, d.scale, 1.0], dtype=torch.float64))
    forward = translate(*d.shift2) @ rotate @ scale @ translate(*d.shift1)
    return torch.linalg.inv(forward)[:2].float()


def apply(x: torch.Tensor, spec: TransformSpec, d: Draw) -> torch.Tensor:
    """Transform a batch (N, 3, H, W) in [0, 1]; the output has the input's size."""
    h, w = x.shape[-2:]
    return apply_matrix(x, spec.pad, matrix(d, w + 2 * spec.pad, h + 2 * spec.pad))


def apply_matrix(x: torch.Tensor, pad: int, theta: torch.Tensor) -> torch.Tensor:
    """Warp by a (2, 3) `matrix` (a tensor, so a compiled loop does not recompile per draw)."""
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), value=0.5)
    n, c, h, w = x.shape
    theta = theta.to(dtype=x.dtype)
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, h, w], align_corners=False)
    out = F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False) + 0.5
    if pad:
        out = out[:, :, pad:h - pad, pad:w - pad]
    return out

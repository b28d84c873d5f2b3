"""Transformation robustness: one random pad/jitter/scale/rotate per step, shared by the batch.

Lucid's recipe (used by the paper) is pad -> jitter -> scale -> rotate -> jitter.
By default the jitters, scale and rotation are composed into one affine warp
that keeps the image size (out-of-frame pixels are mid-grey), so any layer's
representation keeps its shape and a compiled network never sees a new shape.
The paper's own code (`PaperWarps`, paper mode) instead translates by 0..d-1
pixels with a black fill, rescales the image to a new size (bilinear, black
padding when it shrinks) and rotates about the centre with a black fill.
All draws of a run are made up front from a CPU generator (deterministic for a
seed); the loop then only indexes tensors already on the device.
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


def matrices(spec: TransformSpec, gen: torch.Generator, steps: int, width: int, height: int,
             device: torch.device) -> torch.Tensor:
    """(steps, 2, 3) warps for a whole run, drawn up front and copied to `device` once."""
    w, h = width + 2 * spec.pad, height + 2 * spec.pad
    return torch.stack([matrix(draw(spec, gen), w, h) for _ in range(steps)]).to(device)


@dataclass(frozen=True)
class PaperDraw:
    shift1: tuple[int, int]  # jitter(d): 0 .. d-1 pixels right and down
    scale: float
    shift2: tuple[int, int]


class PaperWarps:
    """The paper's transforms for a whole run (pad 0.5 -> jitter -> scale -> rotate -> jitter),
    drawn up front; the rotations are one (steps, 2, 3) tensor on the device."""

    def __init__(self, spec: TransformSpec, gen: torch.Generator, steps: int,
                 device: torch.device) -> None:
        low, high = spec.scale
        scales = [low + (high - low) * i / 10 for i in range(11)]
        degrees = list(range(-int(spec.rotate_degrees), int(spec.rotate_degrees) + 1)) + [0] * 5

        def shift(d: int) -> tuple[int, int]:
            return (0, 0) if d <= 1 else tuple(torch.randint(0, d, (2,), generator=gen).tolist())

        self.spec, self.draws, angles = spec, [], []
        for _ in range(steps):
            first = shift(spec.jitter)
            scale = scales[int(torch.randint(0, len(scales), (1,), generator=gen))]
            angles.append(math.radians(degrees[int(torch.randint(0, len(degrees), (1,),
                                                                 generator=gen))]))
            self.draws.append(PaperDraw(first, scale, shift(spec.jitter // 2)))
        a = torch.tensor(angles, dtype=torch.float64)
        zero = torch.zeros_like(a)
        self.rotations = torch.stack([torch.stack([a.cos(), -a.sin(), zero], 1),
                                      torch.stack([a.sin(), a.cos(), zero], 1)], 1).float().to(device)

    def __getitem__(self, step: int) -> tuple[PaperDraw, torch.Tensor]:
        return self.draws[step], self.rotations[step]


def _translate(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Move the content dx right and dy down; what enters the frame is black."""
    h, w = x.shape[-2:]
    return F.pad(x, (dx, 0, dy, 0))[..., :h, :w] if dx or dy else x


def apply_paper(x: torch.Tensor, spec: TransformSpec, step: tuple[PaperDraw, torch.Tensor]
                ) -> torch.Tensor:
    """One step of the paper's transforms; the output size follows the scale draw."""
    d, rotation = step
    if spec.pad:
        x = F.pad(x, (spec.pad,) * 4, value=0.5)
    x = _translate(x, *d.shift1)
    h, w = x.shape[-2:]
    size = [math.ceil(d.scale * h), math.ceil(d.scale * w)]
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    pad = max(0, math.ceil((h - size[0]) / 2))
    x = F.pad(x, (pad,) * 4) if pad else x
    n, c, h, w = x.shape
    grid = F.affine_grid(rotation.to(x.dtype).expand(n, 2, 3), [n, c, h, w], align_corners=True)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return _translate(x, *d.shift2)


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

"""`shapes`: a procedural image set of coloured shapes on textured backgrounds, any resolution.

Made by the project so that the demo and the tests need no downloaded data.
Image `i` of a set depends only on (seed, i, size): any subset can be drawn
without drawing the rest, and the same index gives the same scene at every size.
The class is the shape; colours, position, size, a small rotation and the
background texture (a grating blended with smooth noise) vary.
"""

from __future__ import annotations

import numpy as np
import torch

SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "ring", "star", "diamond", "ellipse")
SUPERSAMPLE = 2  # anti-aliased edges: draw at 2× and average down


def _mask(kind: str, u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    r = np.hypot(u, v)
    if kind == "circle":
        return r < radius
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) < radius * 0.85
    if kind == "triangle":
        # equilateral, pointing up: three half-planes at 120°
        inside = v > -radius * 0.5
        for angle in (np.pi / 6, 5 * np.pi / 6):
            inside &= (np.cos(angle) * u + np.sin(angle) * v) < radius * 0.5
        return inside
    if kind == "cross":
        arm = radius * 0.3
        return ((np.abs(u) < arm) & (np.abs(v) < radius)) | ((np.abs(v) < arm) & (np.abs(u) < radius))
    if kind == "ring":
        return (r < radius) & (r > radius * 0.55)
    if kind == "star":
        theta = np.arctan2(v, u)
        return r < radius * (0.62 + 0.38 * np.cos(5 * theta))
    if kind == "diamond":
        return np.abs(u) + np.abs(v) < radius
    if kind == "ellipse":
        return (u / radius) ** 2 + (v / (0.45 * radius)) ** 2 < 1
    raise ValueError(f"unknown shape {kind!r}")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled coarse noise in [0, 1]."""
    coarse = rng.random((cells + 1, cells + 1))
    pos = np.linspace(0, cells, size, endpoint=False)
    i = pos.astype(int)
    f = pos - i
    rows = coarse[i] * (1 - f)[:, None] + coarse[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _colour(rng: np.random.Generator, avoid: np.ndarray | None = None) -> np.ndarray:
    for _ in range(20):
        c = rng.random(3)
        if avoid is None or np.abs(c - avoid).sum() > 0.9:
            return c
    return 1.0 - avoid if avoid is not None else rng.random(3)


def shape_image(index: int, size: int = 32, seed: int = 0,
                num_classes: int = len(SHAPE_CLASSES)) -> tuple[np.ndarray, int]:
    """(H, W, 3) float32 image in [0, 1] (on the 8-bit grid) and its class index."""
    if not 1 <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(f"shapes has {len(SHAPE_CLASSES)} classes; asked for {num_classes}")
    rng = np.random.default_rng([seed, index])
    label = int(rng.integers(num_classes))
    big = size * SUPERSAMPLE
    grid = (np.arange(big) + 0.5) / big * 2 - 1  # [-1, 1]
    x, y = np.meshgrid(grid, grid)

    # background: two colours blended by a grating and smooth noise
    bg_a, bg_b = _colour(rng), _colour(rng)
    angle = rng.uniform(0, np.pi)
    freq = rng.uniform(2, 6)
    grating = 0.5 + 0.5 * np.sin(np.pi * freq * (np.cos(angle) * x + np.sin(angle) * y)
                                 + rng.uniform(0, 2 * np.pi))
    noise = _smooth_noise(rng, big, int(rng.integers(3, 7)))
    mix = rng.uniform(0.2, 0.8)
    blend = (mix * grating + (1 - mix) * noise)[..., None]
    image = bg_a * blend + bg_b * (1 - blend)

    # the shape: colour far from the background's mean, random pose
    colour = _colour(rng, avoid=image.mean((0, 1)))
    radius = rng.uniform(0.35, 0.6)
    cx, cy = rng.uniform(-0.3, 0.3, size=2)
    rot = rng.uniform(-0.35, 0.35)  # ±20°: squares must not turn into diamonds
    u = np.cos(rot) * (x - cx) + np.sin(rot) * (y - cy)
    v = -np.sin(rot) * (x - cx) + np.cos(rot) * (y - cy)
    # image rows grow downwards; flip v so "up" means up
    mask = _mask(SHAPE_CLASSES[label], u, -v, radius).astype(np.float64)[..., None]
    shading = 0.85 + 0.15 * (1 - (v - cy + 1) / 2)[..., None]
    image = image * (1 - mask) + np.clip(colour * shading, 0, 1) * mask

    image = image.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean((1, 3))
    image = np.round(np.clip(image, 0, 1) * 255) / 255
    return image.astype(np.float32), label


def shapes_batch(indices: list[int] | range, size: int = 32, seed: int = 0,
                 num_classes: int = len(SHAPE_CLASSES)) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, H, W) float images in [0, 1] and (N,) int64 labels."""
    images, labels = zip(*(shape_image(i, size, seed, num_classes) for i in indices), strict=True)
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return batch, torch.tensor(labels, dtype=torch.int64)

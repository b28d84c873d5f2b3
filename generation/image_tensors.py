"""Pixel arrays <-> image tensors: (H, W, 3) uint8 pictures and (3, H, W) tensors in [0, 1].

Reading and writing picture files is hitkit.study.image_io's (it needs no torch).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def fit(pixels: np.ndarray, size: int) -> torch.Tensor:
    """uint8/float (H, W[, 3]) -> (3, size, size) in [0, 1] on the 8-bit grid.

    Resize the shorter side to `size` (antialiased), then crop the centre.
    """
    array = np.asarray(pixels)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    array = array[..., :3]
    if array.dtype == np.uint8:
        x = torch.from_numpy(np.array(array, copy=True)).float() / 255
    else:
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    x = x.permute(2, 0, 1)[None]
    h, w = x.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        top, left = (nh - size) // 2, (nw - size) // 2
        x = x[:, :, top:top + size, left:left + size]
    return (torch.round(x.clamp(0, 1) * 255) / 255)[0].contiguous()


def to_pixels(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8, rounding to the nearest 8-bit value."""
    return torch.round(image.detach().float().clamp(0, 1) * 255).to(torch.uint8).permute(
        1, 2, 0).cpu().numpy()

"""Image files in and out: read any picture as a [0, 1] tensor, write exact 8-bit PNGs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm"})


class ImageError(ValueError):
    """An image that cannot be read; names the file."""


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB from any image file PIL reads."""
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


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


def png_bytes(pixels: np.ndarray) -> bytes:
    """Lossless PNG of (H, W, 3) uint8 pixels; the bytes depend only on the pixels."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode="RGB").save(buffer, format="PNG",
                                                                     optimize=False,
                                                                     compress_level=6)
    return buffer.getvalue()


def image_files(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively), sorted by relative path."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

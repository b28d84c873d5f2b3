"""Picture files in and out, without torch: any picture to uint8 RGB, exact 8-bit PNG bytes,
image files under a folder, and the SHA-256 that names stored images."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm"})


# Both bases: generation has always raised a ValueError for a file that is not a picture,
# the survey a LookupError for an image ID or URI that leads nowhere.
class ImageError(LookupError, ValueError):
    """An image that cannot be found or read; the message names the file, URI or image ID."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB from any image file PIL reads."""
    # PIL and numpy are imported here: the survey server imports this module for
    # ImageError and never decodes a picture
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


def png_bytes(pixels: np.ndarray) -> bytes:
    """Lossless PNG of (H, W, 3) uint8 pixels; the bytes depend only on the pixels."""
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode="RGB").save(buffer, format="PNG",
                                                                     optimize=False,
                                                                     compress_level=6)
    return buffer.getvalue()


def image_files(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively), sorted by relative path."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

"""Image bytes as a participant receives them: one fresh PNG per slot, all of one size.

A slot is one place an image is shown (a HIT's trial, query or option, position). The
browser must not be able to tell, short of decoding and comparing pixels, which image a
slot shows: otherwise a catch trial (its query is a target image, whose file is smaller
than an IRI's) and the correct option (the image that recurs elsewhere in the HIT) follow
from sizes and hashes alone. So every slot gets its own encoding of the pixels:

- every image of a HIT is drawn on the HIT's canvas (the largest width and height among
  its images; in practice all are the same) as 8-bit RGB, so the PNG header is the same;
- each row's PNG filter is drawn per slot, and the zlib level too, so the compressed
  stream and even the inflated (filtered) bytes differ between slots: only undoing the
  filters, i.e. decoding the pixels, shows two slots to hold the same image;
- a private ancillary chunk of random bytes pads the file to the HIT's fixed size (what
  the canvas takes uncompressed, plus zlib's worst-case overhead), so Content-Length is
  the same for every image of a HIT.

The draws are keyed by a secret and the slot, so fetching a slot twice gives the same
bytes (a diff of two fetches shows nothing). Caches are bounded by bytes (LRU).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import struct
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from hitkit.study.images import BytesLRU, ImageError, ImageStore

MEDIA_TYPE = "image/png"
PAD_CHUNK = b"hkPd"  # ancillary, private, safe to copy: decoders skip it
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# signature + IHDR + the pad chunk's and IDAT's framing + IEND
FIXED_OVERHEAD = len(PNG_SIGNATURE) + (12 + 13) + 12 + 12 + 12


@dataclass(frozen=True)
class Canvas:
    """The geometry every image of one HIT is served at."""

    width: int
    height: int

    @property
    def raw_bytes(self) -> int:
        return self.height * (1 + 3 * self.width)

    @property
    def file_bytes(self) -> int:
        """The size of every served image on this canvas."""
        raw = self.raw_bytes
        # zlib's bound for incompressible data (stored blocks): 5 bytes per 16 KiB block,
        # 2 of header and 4 of checksum, with a margin
        return FIXED_OVERHEAD + raw + 5 * (raw // 16383 + 1) + 6 + 16


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _filtered(pixels: np.ndarray, filters: np.ndarray) -> bytes:
    """PNG scanlines of (H, W, 3) uint8 pixels, row r filtered with filters[r] (0..4)."""
    x = pixels.reshape(pixels.shape[0], -1).astype(np.int16)
    left = np.zeros_like(x)
    left[:, 3:] = x[:, :-3]
    up = np.zeros_like(x)
    up[1:] = x[:-1]
    upleft = np.zeros_like(x)
    upleft[1:, 3:] = x[:-1, :-3]
    p = left + up - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    candidates = np.stack([x, x - left, x - up, x - (left + up) // 2, x - paeth])
    rows = candidates[filters, np.arange(x.shape[0])]
    lines = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.uint8)
    lines[:, 0] = filters
    lines[:, 1:] = (rows % 256).astype(np.uint8)
    return lines.tobytes()


def encode_slot(pixels: np.ndarray, canvas: Canvas, key: bytes, slot: str) -> bytes:
    """One slot's PNG of `pixels` (already on `canvas`), exactly canvas.file_bytes long."""
    digest = hmac.new(key, slot.encode("utf-8"), hashlib.sha256).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "big"))
    filters = rng.integers(0, 5, size=canvas.height, dtype=np.uint8)
    raw = _filtered(pixels, filters)
    idat = zlib.compress(raw, int(rng.integers(1, 7)))
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", canvas.width, canvas.height, 8, 2, 0, 0, 0))
    pad = canvas.file_bytes - FIXED_OVERHEAD - len(idat)
    if pad < 0:  # cannot happen within zlib's bound; stored blocks always fit
        idat = zlib.compress(raw, 0)
        pad = canvas.file_bytes - FIXED_OVERHEAD - len(idat)
    filler = rng.integers(0, 256, size=pad, dtype=np.uint8).tobytes()
    return (PNG_SIGNATURE + header + _chunk(PAD_CHUNK, filler) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def decode(data: bytes, where: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file's bytes."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"image {where}: not a readable image ({type(exc).__name__})") from None


def on_canvas(pixels: np.ndarray, canvas: Canvas) -> np.ndarray:
    """The pixels at the canvas size (resized only when an image of the HIT differs)."""
    if pixels.shape[:2] == (canvas.height, canvas.width):
        return pixels
    from PIL import Image

    resized = Image.fromarray(pixels).resize((canvas.width, canvas.height), Image.LANCZOS)
    return np.asarray(resized)


class SlotImages:
    """Per-slot image bytes for a study's images, with byte-bounded caches."""

    def __init__(self, store: ImageStore, key: bytes, cache_bytes: int = 128 * 2**20):
        self.store = store
        self.key = key
        self._pixels = BytesLRU(cache_bytes)
        self._encoded = BytesLRU(cache_bytes)
        self._canvases: dict[frozenset[str], Canvas] = {}
        self._lock = threading.Lock()

    def pixels(self, image_id: str) -> np.ndarray:
        cached = self._pixels.get(image_id)
        if cached is None:
            cached = decode(self.store.read(image_id), image_id)
            self._pixels.put(image_id, cached, cached.nbytes)
        return cached

    def canvas(self, image_ids: Iterable[str]) -> Canvas:
        """The canvas of a set of images (a HIT's): decodes them all, so that later slots
        cost the same whichever image they show (no timing difference for a repeat)."""
        group = frozenset(image_ids)
        with self._lock:
            known = self._canvases.get(group)
        if known is not None:
            return known
        shapes = [self.pixels(i).shape for i in sorted(group)]
        if not shapes:
            raise ImageError("no images to serve")
        canvas = Canvas(width=max(s[1] for s in shapes), height=max(s[0] for s in shapes))
        with self._lock:
            if len(self._canvases) > 100_000:
                self._canvases.clear()
            self._canvases[group] = canvas
        return canvas

    def cached_slot(self, image_id: str, slot: str) -> bytes | None:
        """The slot's bytes if already encoded (no I/O, no work), else None."""
        return self._encoded.get(f"{slot}\0{image_id}")

    def slot_bytes(self, image_id: str, group: Iterable[str], slot: str) -> bytes:
        """The bytes of `image_id` shown in `slot`, among the images of `group` (its HIT)."""
        cache_key = f"{slot}\0{image_id}"
        cached = self._encoded.get(cache_key)
        if cached is not None:
            return cached
        canvas = self.canvas(group)
        data = encode_slot(on_canvas(self.pixels(image_id), canvas), canvas, self.key,
                           cache_key)
        self._encoded.put(cache_key, data, len(data))
        return data

"""Where the survey finds its images: the manifest's `uri`, `target_uri` and `seed_uri`.

An image ID (an IRI, target or seed ID) maps to the URI the generation stage
wrote for it. A URI is one of
- a path relative to the study folder (the default store, e.g. ``iris/ab12.png``),
- an absolute path or a ``file://`` URL,
- an ``s3://bucket/key`` URL, fetched through boto3 (hitkit.study.s3).
Read bytes are kept in a cache bounded by bytes (least recently used first out), so a
big study does not keep every image it ever served in memory.
The server never exposes IDs or URIs to a browser; it serves bytes by position
(see hitkit.survey.web.app), so a file name cannot give an answer away.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa

from hitkit.study import s3
from hitkit.study.image_io import ImageError
from hitkit.study.manifest import MANIFEST, MANIFEST_FILE
from hitkit.study.tables import read_table

MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".webp": "image/webp", ".gif": "image/gif"}


def image_uris(manifest: pa.Table) -> dict[str, str]:
    """image ID -> URI for every IRI, target and seed named in the manifest."""
    uris: dict[str, str] = {}
    columns = manifest.select(["iri_id", "uri", "target_id", "target_uri", "seed_id", "seed_uri"])
    for row in columns.to_pylist():
        for id_col, uri_col in (("iri_id", "uri"), ("target_id", "target_uri"),
                                ("seed_id", "seed_uri")):
            image_id, uri = row[id_col], row[uri_col]
            if image_id and uri and uris.setdefault(image_id, uri) != uri:
                raise ImageError(
                    f"manifest: image {image_id} has two URIs ({uris[image_id]} and {uri}); "
                    "one image ID must name one image")
    return uris


class BytesLRU:
    """A thread-safe cache holding at most `limit` bytes (by the sizes given to `put`);
    the least recently used entries leave first. An entry larger than the limit is not kept."""

    def __init__(self, limit: int):
        self.limit = limit
        self.size = 0
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: str, value: Any, size: int) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.size -= old[1]
            if size > self.limit:
                return
            self._items[key] = (value, size)
            self.size += size
            while self.size > self.limit:
                _, (_, dropped) = self._items.popitem(last=False)
                self.size -= dropped

    def __len__(self) -> int:
        return len(self._items)


class ImageStore:
    """Reads image bytes by image ID, relative paths taken from the study folder."""

    def __init__(self, root: str | Path, uris: dict[str, str], cache_bytes: int = 128 * 2**20):
        self.root = Path(root)
        self.uris = dict(uris)
        self._cache = BytesLRU(cache_bytes)
        self._lock = threading.Lock()
        self._s3 = None

    def media_type(self, image_id: str) -> str:
        uri = self.uris.get(image_id, "")
        return MEDIA_TYPES.get(Path(urlparse(uri).path).suffix.lower(), "application/octet-stream")

    def path(self, image_id: str) -> Path | None:
        """The local file of an image (None for an s3:// image)."""
        uri = self._uri(image_id)
        if s3.is_url(uri):
            return None
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            return Path(unquote(parsed.path))
        path = Path(uri).expanduser()
        return path if path.is_absolute() else self.root / path

    def cached(self, image_id: str) -> bytes | None:
        """The bytes if already read (no I/O), else None."""
        return self._cache.get(image_id)

    def read(self, image_id: str) -> bytes:
        cached = self._cache.get(image_id)
        if cached is not None:
            return cached
        uri = self._uri(image_id)
        path = self.path(image_id)
        try:
            data = path.read_bytes() if path is not None else self._read_s3(uri)
        except OSError as exc:
            raise ImageError(f"image {image_id}: cannot read {uri}: {exc.strerror or exc}") from None
        self._cache.put(image_id, data, len(data))
        return data

    def _uri(self, image_id: str) -> str:
        try:
            return self.uris[image_id]
        except KeyError:
            raise ImageError(f"image {image_id}: not in the manifest") from None

    def _read_s3(self, uri: str) -> bytes:
        with self._lock:  # boto3's default session is not thread-safe: one client, made once
            if self._s3 is None:
                self._s3 = s3.client()
        try:
            return s3.get(self._s3, uri)
        except s3.S3Error as exc:
            raise ImageError(str(exc)) from None


def load_images(study_root: Path) -> ImageStore:
    """The images of a study's manifest, by image ID."""
    manifest = read_table(Path(study_root) / MANIFEST_FILE, MANIFEST)
    return ImageStore(study_root, image_uris(manifest))

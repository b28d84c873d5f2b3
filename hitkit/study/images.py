"""Where the survey finds its images: the manifest's `uri`, `target_uri` and `seed_uri`.

An image ID (an IRI, target or seed ID) maps to the URI the generation stage
wrote for it. A URI is one of
- a path relative to the study folder (the default store, e.g. ``iris/ab12.png``),
- an absolute path or a ``file://`` URL,
- an ``s3://bucket/key`` URL, fetched once through boto3 (hitkit.study.s3) and kept in
  memory.
The server never exposes IDs or URIs to a browser; it serves bytes by position
(see hitkit.survey.web.app), so a file name cannot give an answer away.
"""

from __future__ import annotations

import threading
from pathlib import Path
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


class ImageStore:
    """Reads image bytes by image ID, relative paths taken from the study folder."""

    def __init__(self, root: str | Path, uris: dict[str, str]):
        self.root = Path(root)
        self.uris = dict(uris)
        self._cache: dict[str, bytes] = {}
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
        with self._lock:
            cached = self._cache.get(image_id)
        if cached is not None:
            return cached
        uri = self._uri(image_id)
        path = self.path(image_id)
        try:
            data = path.read_bytes() if path is not None else self._read_s3(uri)
        except OSError as exc:
            raise ImageError(f"image {image_id}: cannot read {uri}: {exc.strerror or exc}") from None
        with self._lock:
            self._cache[image_id] = data
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

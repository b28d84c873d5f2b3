"""Where IRIs, targets and seeds are kept: a local folder (default) or s3://bucket/prefix.

Local: files under the study's store folder with readable names; the URI is the
path relative to the study folder (or absolute when the store is outside it).
S3 (boto3, through hitkit.study.s3): content-addressed keys `<prefix>/<sha256>.png`;
an object already present with the same hash is not uploaded again. `url()` gives
the survey a public URL or a presigned one with a stated lifetime. The endpoint
comes from boto3's usual settings (AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 for MinIO,
moto, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from hitkit.study import s3
from hitkit.study.files import atomic_write
from hitkit.study.image_io import sha256_hex

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 presigned URLs live at most 7 days


class StoreError(RuntimeError):
    """A store that cannot be reached or written; names the location."""


def write_atomic(path: Path, data: bytes) -> None:
    """A killed run never leaves a partial file."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


@dataclass
class LocalStore:
    root: Path  # the store folder
    study_root: Path

    def put(self, name: str, data: bytes, digest: str) -> str:
        path = self.root / name
        if not (path.is_file() and sha256_hex(path.read_bytes()) == digest):
            write_atomic(path, data)
        try:
            return path.resolve().relative_to(self.study_root.resolve()).as_posix()
        except ValueError:
            return path.resolve().as_posix()

    def url(self, uri: str, expires_s: int | None = None) -> str:
        path = Path(uri)
        return (path if path.is_absolute() else self.study_root / path).resolve().as_uri()


@dataclass
class S3Store:
    bucket: str
    prefix: str
    public: bool = False
    expires_s: int = MAX_PRESIGN_SECONDS

    def __post_init__(self) -> None:
        self.client = s3.client()

    def key(self, digest: str) -> str:
        return f"{self.prefix}/{digest}.png" if self.prefix else f"{digest}.png"

    def put(self, name: str, data: bytes, digest: str) -> str:
        """Upload unless present with the same hash; `name` is only a hint (keys are hashes)."""
        url = f"s3://{self.bucket}/{self.key(digest)}"
        try:
            present = s3.head(self.client, url)
            if present is None or present.get("sha256") != digest:
                s3.put(self.client, url, data, "image/png", {"sha256": digest})
        except s3.S3Error as exc:
            raise StoreError(str(exc)) from None
        return url

    def url(self, uri: str, expires_s: int | None = None) -> str:
        key = s3.split_url(uri)[1]
        if self.public:
            endpoint = self.client.meta.endpoint_url.rstrip("/")
            return f"{endpoint}/{self.bucket}/{quote(key)}"
        lifetime = min(expires_s or self.expires_s, MAX_PRESIGN_SECONDS)
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=lifetime)


def open_store(location: str, study_root: Path, public: bool = False,
               expires_s: int = MAX_PRESIGN_SECONDS) -> LocalStore | S3Store:
    """The store a [study].store value names."""
    if location.startswith("s3://"):
        bucket, prefix = s3.split_url(location)
        if not bucket:
            raise StoreError(f"study.store: {location!r} names no bucket (s3://bucket/prefix)")
        return S3Store(bucket, prefix.strip("/"), public, expires_s)
    if "://" in location:
        raise StoreError(f"study.store: {location!r}: only a folder or s3://bucket/prefix")
    folder = Path(location).expanduser()
    return LocalStore(folder if folder.is_absolute() else study_root / folder, study_root)

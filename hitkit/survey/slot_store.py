"""Per-slot images offloaded to the study's S3 store, so the app does not send every byte.

The stored objects cannot be handed out: an object's URL and bytes are the same in every
slot and would name the image (docs/survey.md, "Threat model"). What can be handed out
is the slot's own encoding (hitkit.survey.served_images): it is uploaded once, under
`<store prefix>/served/<keyed hash of the slot>.png` with `Cache-Control: no-store`, and
the browser is redirected to a presigned URL of it (or a public one, as
`[study].store_urls` says) living URL_SECONDS. A HIT's slot is fetched by each of its
participants and by retries, so the app uploads each slot once instead of sending it
every time. The `served/` objects can be deleted when the study is over.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from hitkit.study import s3
from hitkit.study.images import ImageError
from hitkit.study.store import S3Store

URL_SECONDS = 15 * 60  # each request gets a fresh URL: it only has to outlive the redirect
MEDIA_TYPE = "image/png"


class SlotUploads:
    """Uploads slots' bytes to S3 once and gives the URL a browser fetches them from."""

    def __init__(self, store: str, public: bool, max_seconds: float, key: bytes):
        bucket, prefix = s3.split_url(store)
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = f"{prefix}/served" if prefix else "served"
        self.store = S3Store(bucket, self.prefix, public, int(min(URL_SECONDS, max_seconds)))
        self.key = key
        self._uploaded: set[str] = set()
        self._lock = threading.Lock()

    def _s3_url(self, slot: str) -> str:
        name = hmac.new(self.key, slot.encode("utf-8"), hashlib.sha256).hexdigest()[:40]
        return f"s3://{self.bucket}/{self.store.key(name)}"

    def url(self, slot: str, data: Callable[[], bytes]) -> str:
        """The browser's URL for `slot`, uploading `data()` first if this process has not."""
        target = self._s3_url(slot)
        with self._lock:
            done = target in self._uploaded
        if not done:
            try:
                s3.put(self.store.client, target, data(), MEDIA_TYPE, {}, cache_control="no-store")
            except s3.S3Error as exc:
                raise ImageError(str(exc)) from None
            with self._lock:
                if len(self._uploaded) > 1_000_000:
                    self._uploaded.clear()
                self._uploaded.add(target)
        return self.store.url(target)

    def origin(self) -> str:
        """Where the redirected images come from (for the page's img-src)."""
        from botocore.exceptions import BotoCoreError

        try:
            parts = urlsplit(self.store.url(self._s3_url("origin")))
        except BotoCoreError:  # no credentials yet: the endpoint is the best guess
            parts = urlsplit(self.store.client.meta.endpoint_url)
        return f"{parts.scheme}://{parts.netloc}"


def slot_uploads(store: str, store_urls: str, store_url_hours: float, key: bytes
                 ) -> SlotUploads | None:
    """Uploads for a study whose store is on S3; None for a local store."""
    if not s3.is_url(store):
        return None
    return SlotUploads(store, store_urls == "public", store_url_hours * 3600, key)

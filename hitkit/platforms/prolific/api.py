"""Prolific's REST API (api.prolific.com) over httpx: the token, the client, its errors.

Every failure is either Transient (timeout, dropped connection, 408/429/5xx:
the outcome is unknown, so hitkit.platforms.once reconciles before resending)
or a PlatformError (a definite refusal). The API token comes from the
environment variable named by [platform.prolific].token_env or from a
token_file readable by its owner only; it is sent in the Authorization header
and never printed or logged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from hitkit.platforms.base import PlatformError
from hitkit.platforms.once import Transient, retrying
from hitkit.study.config import Study

API_URL = "https://api.prolific.com/api/v1"
# the longest Retry-After honoured; a throttled command should not look hung
MAX_RETRY_AFTER = 30.0
# the most pages one listing may take: a server that keeps answering `next` is stopped
MAX_PAGES = 500


def load_token(study: Study, environ: dict[str, str] | None = None) -> str:
    """The API token: [platform.prolific].token_file (mode 0600) or the token_env variable."""
    settings = study.config.platform.prolific
    environ = os.environ if environ is None else environ
    if settings.token_file:
        path = Path(settings.token_file).expanduser()
        path = path if path.is_absolute() else study.root / path
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PlatformError(f"[platform.prolific] token_file {path}: {exc.strerror}") from None
        if mode & 0o077:
            raise PlatformError(f"[platform.prolific] token_file {path}: readable by others; "
                                f"run `chmod 600 {path}`")
        if not text:
            raise PlatformError(f"[platform.prolific] token_file {path}: empty")
        return text
    token = environ.get(settings.token_env, "").strip()
    if not token:
        raise PlatformError(f"no Prolific API token: set the environment variable "
                            f"{settings.token_env} ([platform.prolific].token_env) or token_file")
    return token


def retry_after(reply: httpx.Response, now: datetime | None = None) -> float:
    """Seconds a 429 asks us to wait: Retry-After as seconds or as an HTTP date (RFC 9110
    allows both); one when it says neither."""
    value = (reply.headers.get("Retry-After") or "").strip()
    try:
        seconds = float(value) if value else 1.0
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return 1.0
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class ProlificAPI:
    """Thin httpx wrapper: errors classified as transient (retry/reconcile) or definite."""

    def __init__(self, token: str, api_url: str = API_URL, timeout: float = 30.0,
                 read_timeout: float | None = None, transport: httpx.BaseTransport | None = None):
        self.api_url = api_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Token {token}"},
            timeout=httpx.Timeout(timeout, read=read_timeout or timeout), transport=transport)

    def __repr__(self) -> str:  # never show the token
        return f"ProlificAPI({self.api_url!r})"

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        """One request, not retried: the caller decides whether repeating it is safe."""
        where = f"Prolific {method} {path}"
        try:
            reply = self._http.request(method, path, json=body, params=params)
        except httpx.TimeoutException:
            raise Transient(f"{where}: timed out") from None
        except httpx.TransportError as exc:
            raise Transient(f"{where}: {type(exc).__name__}") from None
        if reply.status_code in (408, 429) or reply.status_code >= 500:
            wait = retry_after(reply) if reply.status_code == 429 else 0.0
            raise Transient(f"{where}: HTTP {reply.status_code}", retry_after=wait)
        if reply.status_code == 401:
            raise PlatformError(f"{where}: the API token was refused (401); check it")
        if reply.status_code >= 400:
            try:
                detail = reply.json().get("error", {}).get("detail")
            except (ValueError, AttributeError):
                detail = reply.text[:300]
            raise PlatformError(f"{where}: HTTP {reply.status_code}: {detail}")
        if reply.status_code == 204 or not reply.content:
            return None
        return reply.json()

    def get(self, path: str, params: dict | None = None) -> Any:
        return retrying(lambda: self.call("GET", path, params=params))

    def pages(self, path: str, params: dict | None = None, *, limit: int | None = None,
              max_pages: int = MAX_PAGES) -> Iterator[dict]:
        """Every item of a listing. The first request asks for `limit` items from offset 0
        when given (the limit/offset paging Prolific's CLI uses where the OpenAPI document
        lists no paging parameters); later pages are whatever the answer's `_links.next`
        names, never a page number of our own. A page that repeats items already listed
        (a server ignoring the paging but still answering `next`) or more than `max_pages`
        pages stop the listing with an error instead of looping or silently truncating."""
        query: dict | None = {**(params or {}), **({"limit": limit, "offset": 0} if limit else {})}
        url, seen = path, set()
        for _ in range(max_pages):
            data = self.get(url, query)
            if isinstance(data, list):  # an unpaginated list
                yield from data
                return
            items = data.get("results") or []
            keys = [item.get("id") or json.dumps(item, sort_keys=True) for item in items]
            if keys and seen.issuperset(keys):
                raise PlatformError(f"Prolific GET {path}: the page at {url} only repeats "
                                    f"items already listed ({len(seen)} so far): the server "
                                    "ignored the paging; listing stopped")
            seen.update(keys)
            yield from items
            href = ((data.get("_links") or {}).get("next") or {}).get("href")
            if not href:
                return
            url, query = self._own(href, path), None
        raise PlatformError(f"Prolific GET {path}: more than {max_pages} pages; listing stopped")

    def _own(self, href: str, path: str) -> str:
        """A `next` link as a path under the API; the token is never sent anywhere else."""
        if href.startswith(self.api_url + "/"):
            return href[len(self.api_url):]
        prefix = httpx.URL(self.api_url).raw_path.decode().rstrip("/")
        if href.startswith(prefix + "/"):
            return href[len(prefix):]
        raise PlatformError(f"Prolific GET {path}: the next page {href!r} is not under "
                            f"{self.api_url}; not followed")

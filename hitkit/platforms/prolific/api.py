"""Prolific's REST API (api.prolific.com) over httpx: the token, the client, its errors.

Every failure is either Transient (timeout, dropped connection, 408/429/5xx:
the outcome is unknown, so hitkit.platforms.once reconciles before resending)
or a PlatformError (a definite refusal). The API token comes from the
environment variable named by [platform.prolific].token_env or from a
token_file readable by its owner only; it is sent in the Authorization header
and never printed or logged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from hitkit.platforms.base import PlatformError
from hitkit.platforms.once import Transient, retrying
from hitkit.study.config import Study

API_URL = "https://api.prolific.com/api/v1"
# the longest Retry-After honoured; a throttled command should not look hung
MAX_RETRY_AFTER = 30.0


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


def retry_after(reply: httpx.Response) -> float:
    """Seconds a 429 asks us to wait (one when it does not say, or says it as a date)."""
    try:
        seconds = float(reply.headers.get("Retry-After") or 1)
    except ValueError:
        seconds = 1.0
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

    def pages(self, path: str, params: dict | None = None, page_size: int = 100) -> Iterator[dict]:
        page = 1
        while True:
            data = self.get(path, {**(params or {}), "page": page, "page_size": page_size})
            if isinstance(data, list):  # an unpaginated list
                yield from data
                return
            yield from data.get("results", [])
            nxt = (data.get("_links") or {}).get("next") or {}
            if not nxt.get("href"):
                return
            page += 1

"""Per-client rate limits on the routes a squatter or a guesser hammers.

Two token buckets per client address (after uvicorn's X-Forwarded-For handling, which
trusts 127.0.0.1 only, so a reverse proxy on the same host must set it):

- assignment starts (`POST /api/assignments`): every request takes a token;
- rejected submissions (`POST /api/assignments/{id}/submit` answered 4xx, an unknown
  assignment included): a client with no token left is refused before its body is read.

A refused request gets 429 with Retry-After. `hitkit serve` limits every client, loopback
included (a reverse proxy that does not pass the client's address on makes everyone
loopback). An app made by `create_app` without limits exempts loopback: the in-process
servers of simulated participants, the tests and the load benchmark. The numbers
are in docs/survey.md ("Rate limits").
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass

LOOPBACK = ("127.", "::1", "localhost")


@dataclass
class RateLimits:
    starts_per_minute: float = 10.0
    starts_burst: int = 30
    rejections_per_minute: float = 10.0
    rejections_burst: int = 20
    exempt_loopback: bool = True
    enabled: bool = True  # False: no limit for anyone (`hitkit serve --no-rate-limit`)
    max_clients: int = 100_000  # buckets kept; the least recently seen go first beyond it


class Buckets:
    """Token buckets by client: `take` spends one token if there is one."""

    def __init__(self, per_minute: float, burst: int, max_clients: int):
        self.rate = per_minute / 60.0
        self.burst = burst
        self.max_clients = max_clients
        self._state: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)
        self._lock = threading.Lock()

    def _tokens(self, client: str, now: float) -> float:
        tokens, then = self._state.get(client, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - then) * self.rate)

    def available(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            return self._tokens(client, now) >= 1.0

    def take(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens = self._tokens(client, now)
            ok = tokens >= 1.0
            self._state.pop(client, None)  # re-inserted last: dict order is recency
            self._state[client] = (tokens - 1.0 if ok else tokens, now)
            while len(self._state) > self.max_clients:
                del self._state[next(iter(self._state))]
            return ok

    def retry_after(self) -> int:
        return max(1, math.ceil(1.0 / self.rate)) if self.rate > 0 else 3600


class Guard:
    """The limits and their buckets, shared by every request of one app."""

    def __init__(self, limits: RateLimits | None = None):
        self.configure(limits or RateLimits())

    def configure(self, limits: RateLimits) -> None:
        self.limits = limits
        self.starts = Buckets(limits.starts_per_minute, limits.starts_burst, limits.max_clients)
        self.rejections = Buckets(limits.rejections_per_minute, limits.rejections_burst,
                                  limits.max_clients)

    def exempt(self, client: str) -> bool:
        if not self.limits.enabled:
            return True
        return self.limits.exempt_loopback and client.startswith(LOOPBACK)


class RateLimit:
    """ASGI middleware applying a Guard to the two POST routes."""

    def __init__(self, app, guard: Guard):
        self.app = app
        self.guard = guard

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else ""
        path = scope["path"]
        guard = self.guard
        if guard.exempt(client):
            await self.app(scope, receive, send)
            return
        if path.rstrip("/") == "/api/assignments":
            if not guard.starts.take(client):
                await _too_many(send, "assignment starts", guard.starts.retry_after())
                return
            await self.app(scope, receive, send)
            return
        if not (path.startswith("/api/assignments/") and path.endswith("/submit")):
            await self.app(scope, receive, send)
            return
        if not guard.rejections.available(client):
            await _too_many(send, "rejected submissions", guard.rejections.retry_after())
            return

        async def send_counting(message):
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                guard.rejections.take(client)
            await send(message)

        await self.app(scope, receive, send_counting)


async def _too_many(send, what: str, retry_after: int) -> None:
    body = json.dumps({"error": {"field": "client", "message":
                                 f"too many {what} from this address; retry later"}}).encode()
    await send({"type": "http.response.start", "status": 429, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode())]})
    await send({"type": "http.response.body", "body": body})

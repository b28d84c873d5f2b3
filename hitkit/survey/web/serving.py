"""Running the survey app under uvicorn: in the foreground (`hitkit serve`) or in a
background thread on 127.0.0.1 (simulated participants, tests, the benchmark).

Uvicorn's access log is off: request lines carry query strings, and a query
string can carry a platform's participant ID (PROLIFIC_PID, workerId).

Connections cannot be held for nothing: uvicorn closes an idle keep-alive connection
after TIMEOUT_KEEP_ALIVE_S, but a connection that never completes its request headers
(a silent socket, or headers sent a byte at a time) it keeps forever, and enough of them
fill `limit_concurrency` so that everyone else gets 503. `GuardedH11Protocol` closes a
connection whose request headers are not complete HEADER_TIMEOUT_S after it opened (or
after its previous response); request bodies have their own limit in the app
(hitkit.survey.web.app.read_body). Headers are capped at MAX_HEADER_BYTES.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

TIMEOUT_KEEP_ALIVE_S = 5
HEADER_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 16 * 1024
LIMIT_CONCURRENCY = 1000


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers take too long."""

    header_timeout = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def _waiting_for_request(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        waiting = self._waiting_for_request()
        if waiting:
            self._arm_header_timer()  # bytes of the next request: its headers are on the clock
        super().data_received(data)
        if not self._waiting_for_request():
            self._disarm_header_timer()  # a request got through its headers

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm_header_timer()  # idle now: the keep-alive timeout applies

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._waiting_for_request() and not self.transport.is_closing():
            self.transport.close()


def protocol(header_timeout: float) -> type[GuardedH11Protocol]:
    """The guarded protocol with its own header timeout (tests use a short one)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout": header_timeout})


def config(app: Starlette, host: str, port: int, log_level: str = "warning",
           limit_concurrency: int = LIMIT_CONCURRENCY,
           header_timeout: float = HEADER_TIMEOUT_S) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          http=protocol(header_timeout), limit_concurrency=limit_concurrency,
                          timeout_keep_alive=TIMEOUT_KEEP_ALIVE_S,
                          h11_max_incomplete_event_size=MAX_HEADER_BYTES)


def serve(app: Starlette, host: str, port: int, log_level: str = "warning") -> None:
    uvicorn.Server(config(app, host, port, log_level)).run()


@contextmanager
def background_server(app: Starlette, host: str = "127.0.0.1", port: int = 0,
                      startup_timeout: float = 30.0, **options) -> Iterator[str]:
    """Serve `app` in a daemon thread; yields its base URL, stops it on exit. `options`
    go to :func:`config` (limit_concurrency, header_timeout)."""
    server = uvicorn.Server(config(app, host, port, **options))
    thread = threading.Thread(target=server.run, name="hitkit-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the survey server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)

"""The HTTP plumbing shared by the fake platform servers.

A `FakeServer` is a stdlib `ThreadingHTTPServer` on 127.0.0.1, port 0, run in
a background thread. Subclasses implement `route(request)`, which names the
API operation (or None for pages outside the API) and returns a callable
that applies the request to the fake's state and builds the response. The
split lets this module place faults on either side of "applied": a request
can fail before it changes anything, or change the state and then never
answer (the case idempotency tokens and ledgers exist for).

stdlib rather than uvicorn because a dropped connection must really be a
socket closed without a response, which an ASGI app cannot express.
"""

from __future__ import annotations

import json
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.fakes.faults import FaultKind, Faults


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes

    def json(self) -> object:
        return json.loads(self.body or b"null")

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: object, content_type: str = "application/json") -> Response:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": content_type})

    @classmethod
    def html(cls, status: int, text: str) -> Response:
        return cls(status, text.encode(), {"Content-Type": "text/html; charset=utf-8"})


@dataclass(frozen=True)
class RequestRecord:
    """One API request as the fake saw it (the body as sent, for "was the token re-sent?")."""

    operation: str | None
    method: str
    path: str
    body: bytes
    fault: FaultKind | None


Apply = Callable[[], Response]


class FakeServer:
    """Base class: a real HTTP server with a fault plan and a request log."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.requests: list[RequestRecord] = []
        #: Exceptions raised inside the fake while applying a request (bugs in the fake
        #: or a request it cannot model); tests should assert this stays empty.
        self.internal_errors: list[str] = []
        # One lock for all state: every request is applied atomically, as a real
        # service would serialise writes to one record.
        self.lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- subclass interface -------------------------------------------------
    def route(self, request: Request) -> tuple[str | None, Apply]:
        raise NotImplementedError

    def fault_response(self, kind: FaultKind) -> Response:
        """The response for HTTP_500, HTTP_503 and THROTTLE, in the platform's error format."""
        raise NotImplementedError

    # -- lifecycle ------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake server is not running; use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wakes stalled handlers
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- request handling (called from handler threads) ------------------------
    def _serve(self, handler: _Handler, request: Request) -> None:
        try:
            operation, apply = self.route(request)
        except Exception:  # a bug in route(): report it, answer 500
            self.internal_errors.append(traceback.format_exc())
            handler.send(Response(500, b"fake route error"))
            return
        kind = self.faults.decide(operation) if operation is not None else None
        self.requests.append(
            RequestRecord(operation, request.method, request.path, request.body, kind)
        )
        if kind in (FaultKind.HTTP_500, FaultKind.HTTP_503, FaultKind.THROTTLE):
            handler.send(self.fault_response(kind))
            return
        if kind is FaultKind.DROP_BEFORE_APPLY:
            handler.drop()
            return
        if kind is FaultKind.TIMEOUT_BEFORE_APPLY:
            self._stopping.wait(self.faults.stall_seconds)
            handler.drop()
            return
        response = self._apply(apply)
        if kind is FaultKind.DROP_AFTER_APPLY:
            handler.drop()
        elif kind is FaultKind.TIMEOUT_AFTER_APPLY:
            # The change is made; the client times out waiting and will retry or give up.
            self._stopping.wait(self.faults.stall_seconds)
            handler.drop()
        elif kind is FaultKind.HTTP_500_AFTER_APPLY:
            handler.send(self.fault_response(FaultKind.HTTP_500))
        else:
            handler.send(response)

    def _apply(self, apply: Apply) -> Response:
        try:
            with self.lock:
                return apply()
        except Exception:
            self.internal_errors.append(traceback.format_exc())
            return Response(500, b"fake internal error")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeServer
    protocol_version = "HTTP/1.1"  # keep-alive, as the real services and clients use

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle's algorithm
        # and the client's delayed ACK add ~40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: pytest shows failures, not access logs

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = Request(
            self.command,
            parts.path,
            parse_qs(parts.query, keep_blank_values=True),
            self.headers,
            body,
        )
        self.fake._serve(self, request)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

    def send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
        except OSError:
            self.close_connection = True  # the client went away (e.g. after its own timeout)

    def drop(self) -> None:
        """Close the connection without a response."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

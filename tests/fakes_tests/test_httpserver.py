"""The shared server plumbing: lifecycle, stalls on shutdown, and errors inside a fake."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.fakes.faults import FaultKind
from tests.fakes.httpserver import FakeServer, Request, Response
from tests.fakes.mturk import FakeMTurk
from tests.fakes.prolific import FakeProlific


class Echo(FakeServer):
    """The smallest fake: echoes the body; /boom raises inside apply."""

    def __init__(self) -> None:
        super().__init__()
        self.applied = 0
        self.applied_once = threading.Event()

    def route(self, request: Request):
        def apply() -> Response:
            if request.path == "/boom":
                raise RuntimeError("cannot model this")
            self.applied += 1
            self.applied_once.set()
            return Response(200, request.body)

        return request.path.strip("/") or "root", apply

    def fault_response(self, kind: FaultKind) -> Response:
        return Response(503 if kind is FaultKind.HTTP_503 else 500, kind.value.encode())


def test_url_needs_a_running_server_and_ports_differ():
    fake = FakeMTurk()
    with pytest.raises(RuntimeError):
        _ = fake.url
    with fake, FakeProlific() as other:
        assert fake.url.startswith("http://127.0.0.1:")
        assert fake.url != other.url
    fake.stop()  # stopping twice is harmless


def test_internal_errors_are_recorded_and_answered_500():
    with Echo() as echo:
        assert httpx.post(echo.url + "/x", content=b"hi").content == b"hi"
        assert httpx.get(echo.url + "/boom").status_code == 500
    assert len(echo.internal_errors) == 1 and "cannot model this" in echo.internal_errors[0]
    assert [r.operation for r in echo.requests] == ["x", "boom"]


def test_stop_wakes_a_stalled_request_and_the_change_stays_applied():
    echo = Echo().start()
    echo.faults.stall_seconds = 60  # far longer than the test: stop() must not wait for it
    echo.faults.inject(FaultKind.TIMEOUT_AFTER_APPLY)
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(httpx.post(echo.url + "/slow", content=b"x", timeout=120))
        except httpx.HTTPError as error:
            outcome.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    assert echo.applied_once.wait(30)  # a bound against hanging, not a timing check
    echo.stop()
    caller.join(timeout=30)
    assert not caller.is_alive()
    assert isinstance(outcome[0], httpx.RemoteProtocolError)  # closed without an answer
    assert echo.applied == 1


def test_restart_serves_again():
    echo = Echo()
    with echo:
        first = echo.url
        assert httpx.get(first + "/a").status_code == 200
    with echo:
        assert httpx.get(echo.url + "/b").status_code == 200

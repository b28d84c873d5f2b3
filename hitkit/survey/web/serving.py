"""Running the survey app under uvicorn: in the foreground (`hitkit serve`) or in a
background thread on 127.0.0.1 (simulated participants, tests, the benchmark).

Uvicorn's access log is off: request lines carry query strings, and a query
string can carry a platform's participant ID (PROLIFIC_PID, workerId).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette


def serve(app: Starlette, host: str, port: int, log_level: str = "warning") -> None:
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                limit_concurrency=1000, timeout_keep_alive=30)


@contextmanager
def background_server(app: Starlette, host: str = "127.0.0.1", port: int = 0,
                      startup_timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` in a daemon thread; yields its base URL, stops it on exit."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            limit_concurrency=1000, timeout_keep_alive=30)
    server = uvicorn.Server(config)
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

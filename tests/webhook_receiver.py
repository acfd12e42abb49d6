"""A real local webhook receiver for tests: a threaded HTTP server that answers POSTs from a
script (a status code, or ``("hang", seconds)``: hold the request, then answer 200) and
records every request (when, headers, raw body)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = int | tuple[str, float]


@dataclass
class Received:
    at: float  # time.monotonic() on arrival
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Receiver:
    """``with Receiver([500, 500]) as r:`` answers 500 twice, then ``default`` (200)."""

    def __init__(self, script: list[Answer] | None = None, *, default: Answer = 200) -> None:
        self.script = list(script or [])
        self.default = default
        self.requests: list[Received] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with outer._lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    outer.requests.append(Received(time.monotonic(), headers, body))
                    answer = outer.script.pop(0) if outer.script else outer.default
                    outer.in_flight += 1
                    outer.most_in_flight = max(outer.most_in_flight, outer.in_flight)
                try:
                    code = 200
                    if isinstance(answer, tuple):
                        outer.release.wait(answer[1])
                    else:
                        code = answer
                    data = b'{"ok": true}'
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the sender gave up (timed out) and closed the connection
                finally:
                    with outer._lock:
                        outer.in_flight -= 1

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        """The first ``n`` requests, once they have come (fails after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < n:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {n} requests came"
            time.sleep(0.02)
        return self.requests[:n]

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

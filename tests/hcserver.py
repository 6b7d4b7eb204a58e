"""A real, scriptable Healthchecks ping endpoint on 127.0.0.1 that records every request."""

from __future__ import annotations

import dataclasses
import threading
import time
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclasses.dataclass(frozen=True)
class Reply:
    """How to answer one request: a status, extra headers, or a hang before answering."""

    status: int = 200
    body: bytes = b"OK"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    hang: float = 0.0  # seconds to stall first; ends early when the server stops


@dataclasses.dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    time: float  # time.monotonic() on arrival

    @property
    def rid(self) -> str | None:
        return self.query.get("rid")


class HCServer:
    """Context manager: serve on a free port in a thread; script replies; record requests."""

    def __init__(self, default: Reply | int = 200, body_limit: int | None = None) -> None:
        self.default = _reply(default)
        self.body_limit = body_limit  # sent as Ping-Body-Limit on every reply when set
        self._script: list[Reply] = []
        self._requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        # a short poll interval keeps shutdown (and so each test's teardown) fast
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        """Base URL ending with a slash, like https://hc-ping.com/."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def script(self, *replies: Reply | int) -> None:
        """Queue replies for the next requests, in order; then the default answers."""
        with self._lock:
            self._script.extend(_reply(r) for r in replies)

    def __enter__(self) -> HCServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()  # wakes hanging handlers so no thread outlives the test
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def _next(self, recorded: Recorded) -> Reply:
        with self._lock:
            self._requests.append(recorded)
            return self._script.pop(0) if self._script else self.default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
                headers = dict(self.headers.items())
                reply = server._next(
                    Recorded(self.command, parts.path, query, headers, body, arrived)
                )
                if reply.hang and server._stopping.wait(reply.hang):
                    return  # stopped while hanging: drop the connection unanswered
                try:
                    self.send_response(reply.status)
                    if server.body_limit is not None:
                        self.send_header("Ping-Body-Limit", str(server.body_limit))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (timeout) before we answered

            do_GET = do_POST = do_HEAD = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep pytest output clean

        return Handler


def _reply(reply: Reply | int) -> Reply:
    return reply if isinstance(reply, Reply) else Reply(status=reply)

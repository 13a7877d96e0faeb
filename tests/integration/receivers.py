"""A real HTTP receiver for webhook tests: the standard library's threading server."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    """One POST as the receiver saw it."""

    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.monotonic()


Answer = Callable[[Request, int], tuple[int, dict[str, str], bytes]]


def ok(_request: Request, _n: int) -> tuple[int, dict[str, str], bytes]:
    return 200, {}, b"ok"


class Receiver:
    """A real HTTP server on 127.0.0.1 that records POSTs and answers as told.

    ``answer`` gets each request and its 0-based number; ``delay_s`` holds the answer
    back (a slow receiver). HTTP/1.0, so every answer closes its connection and
    ``stop`` does not wait on idle keep-alive connections.
    """

    def __init__(self, port: int = 0, *, answer: Answer = ok, delay_s: float = 0.0) -> None:
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = Request(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.monotonic(),
                )
                with receiver._lock:
                    number = len(receiver.requests)
                    receiver.requests.append(request)
                receiver._stopping.wait(delay_s)  # a slow answer, cut short by stop()
                status, headers, content = answer(request, number)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(content))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a slow answer to a client that gave up: a broken pipe, expected

        self._server = Server(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        # A short poll so stop() (shutdown waits for the loop to look) takes milliseconds.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ids(self) -> list[str]:
        with self._lock:
            return [r.headers["x-orac-event-id"] for r in self.requests]

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()  # joins the handler threads
        self._thread.join()


@contextlib.contextmanager
def receiving(port: int = 0, *, answer: Answer = ok, delay_s: float = 0.0) -> Iterator[Receiver]:
    receiver = Receiver(port, answer=answer, delay_s=delay_s)
    try:
        yield receiver
    finally:
        receiver.stop()

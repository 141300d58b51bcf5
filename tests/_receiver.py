"""A webhook receiver for tests: a real HTTP server in a thread."""

from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """An http.server in a thread that fails the first ``failures`` requests with 500.

    Args:
        failures: How many first requests get a 500.
        port: The port to listen on (0: a free one).
        status: The answer to the other requests.
        headers: Headers sent with every answer (a redirect's ``Location``...).
        gate: When given, each request is answered only once the test sets it.
        tls: Serve https with this server-side context.
        body: The body of the other requests' answers (default: none); a hook's answer.
    """

    def __init__(self, failures: int = 0, port: int = 0, status: int = 204,
                 headers: dict[str, str] | None = None, gate: threading.Event | None = None,
                 tls: ssl.SSLContext | None = None, body: bytes | None = None) -> None:
        self.failures = failures
        self.requests: list[dict] = []
        self.arrived = threading.Event()  # set on the first request
        self.in_flight = 0
        self.most_in_flight = 0  # requests seen at the same time
        lock = threading.Lock()
        outer = self
        answer = body

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    outer.requests.append({"headers": dict(self.headers), "body": body,
                                           "path": self.path, "at": time.monotonic()})
                    outer.in_flight += 1
                    outer.most_in_flight = max(outer.most_in_flight, outer.in_flight)
                    failing = len(outer.requests) <= outer.failures
                outer.arrived.set()
                if gate is not None:
                    gate.wait(60)  # a bound for a failing test, not a pace
                with lock:
                    outer.in_flight -= 1
                self.send_response(500 if failing else status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if answer is not None and not failing:
                    self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if answer is not None and not failing:
                    self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that gives up (a failed TLS handshake...) is not news here

        self.server = Server(("127.0.0.1", port), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

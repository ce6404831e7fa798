"""A threaded HTTP server on loopback for tests that play a camera or a webhook receiver."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    """Serves `handler` on 127.0.0.1 (a free port) in a daemon thread until `close`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def mjpeg_server(serve: Callable[[object], None]) -> LoopbackServer:
    """A camera's HTTP MJPEG endpoint: each GET answers multipart/x-mixed-replace (boundary `frame`)
    and hands the response body to `serve(wfile)`; a client that leaves ends it quietly."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                serve(self.wfile)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    return LoopbackServer(Handler)

"""A local HTTP server for download tests: serves a folder on 127.0.0.1 from a thread.

It records every requested path (to check that a cached file is not fetched again) and can cut
chosen files short: it announces the full Content-Length, sends half the bytes and closes the
connection, the way a dropped download looks to a client.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Server:
    url: str  # http://127.0.0.1:<port>, no trailing slash
    requests: list[str] = field(default_factory=list)  # URL paths, in the order asked for
    cut: set[str] = field(default_factory=set)  # URL paths to send only half of


class _Handler(SimpleHTTPRequestHandler):
    server_state: Server

    def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        self.server_state.requests.append(self.path)
        if self.path not in self.server_state.cut:
            return super().do_GET()
        data = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@contextmanager
def serve(root: Path) -> Iterator[Server]:
    """Serves `root` at `Server.url` until the block ends."""
    state = Server(url="")
    handler = type("Handler", (_Handler,), {"server_state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()

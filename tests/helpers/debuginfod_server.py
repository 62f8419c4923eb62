"""A debuginfod server for the client tests (no tests here): routes by path prefix, each a
function that answers the request as a well-behaved or a hostile server would."""

from __future__ import annotations

import http.server
import threading
import time

BID = "ab" * 20
BODY = b"\x7fELF" + b"\0" * 60


class Handler(http.server.BaseHTTPRequestHandler):
    hits: list[str]
    routes: dict[str, object]

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.hits.append(self.path)
        route = self.routes.get(self.path.split("/buildid/")[0] or "/")
        if callable(route):
            route(self)
        else:
            self.send_error(404)


def trickle(h: Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "100000")
    h.end_headers()
    try:
        for _ in range(100000):
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(0.2)  # well inside the client's per-read timeout
    except OSError:
        pass  # the client gave up


def endless_chunked(h: Handler) -> None:
    h.send_response(200)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    try:
        chunk = b"y" * 4096
        for _ in range(100000):
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    except OSError:
        pass


def too_long(h: Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", str(1 << 40))
    h.end_headers()


def one_file(h: Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", str(len(BODY)))
    h.end_headers()
    h.wfile.write(BODY)


class Server:
    def __init__(self, routes: dict[str, object]) -> None:
        handler = type("H", (Handler,), {"hits": [], "routes": routes})
        self.hits: list[str] = handler.hits
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

"""Capture the requests of the real Pyroscope Python client (not a test; run by hand).

How tests/receiver/captured/pyroscope-io-1.4.0-push.json was made:

    python3 -m venv /tmp/pyro1 && /tmp/pyro1/bin/pip install pyroscope-io==1.4.0
    /tmp/pyro1/bin/python tests/receiver/captured/capture_pyroscope_io.py /tmp/out
    # then req1.json, with a "captured_with" key added

A local HTTP server on 127.0.0.1 answers 200 to every POST and writes each request (path,
headers, base64 body) to OUT/reqN.json while the client profiles a busy loop for 5 s.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            count[0] += 1
            with open(f"{out}/req{count[0]}.json", "w") as f:
                json.dump({"method": "POST", "path": self.path,
                           "headers": list(self.headers.items()),
                           "body_b64": base64.b64encode(body).decode()}, f, indent=1)
            self.send_response(200)
            self.send_header("Content-Type", "application/proto")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    import pyroscope  # the client under capture, installed in its own venv

    pyroscope.configure(application_name="capture.app",
                        server_address=f"http://127.0.0.1:{srv.server_port}",
                        basic_auth_username="user1", basic_auth_password="pass1",
                        tenant_id="tenant-a", tags={"env": "test", "region": "eu"},
                        upload_interval=2, sample_rate=100)
    t0 = time.time()
    while time.time() - t0 < 5:
        sum(i * i for i in range(200_000))
    pyroscope.shutdown()
    time.sleep(1)
    srv.shutdown()
    print(f"{count[0]} request(s) in {out}")


if __name__ == "__main__":
    main(sys.argv[1])

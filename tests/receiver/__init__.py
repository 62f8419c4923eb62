"""A Pyroscope-compatible `/ingest` and push API receiver for tests (no Pyroscope server is
installable here).

See server.py; it is validated against the real `pyroscope-io==0.8.4` client in
tests/integration/test_upload_receiver.py, and its push API against requests of the real
`pyroscope-io` 1.x client (tests/receiver/captured/, tests/unit/test_upload_push.py).
"""

from .server import Ingest, Receiver

__all__ = ["Ingest", "Receiver"]

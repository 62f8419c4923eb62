"""A Pyroscope-compatible `/ingest` receiver for tests (no Pyroscope server is installable here).

See server.py; it is validated against the real `pyroscope-io==0.8.4` client in
tests/integration/test_upload_receiver.py.
"""

from .server import Ingest, Receiver

__all__ = ["Ingest", "Receiver"]

"""Pyroscope's push API: one window as a `push.v1.PushRequest` (uploader/pb/push_pb2).

What pyroscope-io 1.x sends (tests/receiver/captured/, a request of the real client): POST
{server}/push.v1.PusherService/Push, the Connect protocol's route `/<package>.<service>/
<method>`, Content-Type application/proto, the PushRequest gzipped as a whole with
Content-Encoding gzip, the pprof inside it not compressed again. One series per window, its
labels `__name__=process_cpu` (the profile type Pyroscope names CPU profiles by), the tags,
and `service_name=<app>` (what the application name is on /ingest); one sample with a random
UUID as its ID.
"""

from __future__ import annotations

import gzip
import uuid

from uploader.pb import push_pb2, types_pb2

PUSH_PATH = "/push.v1.PusherService/Push"
CONTENT_TYPE = "application/proto"
PROFILE_TYPE = "process_cpu"


def series_labels(app: str, labels: dict[str, str]) -> list[tuple[str, str]]:
    """`__name__` first, then the labels by name, `service_name` last, as the real client
    orders them (the server sorts them anyway)."""
    rest = sorted((k, v) for k, v in labels.items() if k not in ("__name__", "service_name"))
    return [("__name__", PROFILE_TYPE), *rest, ("service_name", app)]


def push_body(app: str, labels: dict[str, str], pprof: bytes) -> bytes:
    """The gzipped PushRequest of one pprof (not gzipped itself) and its labels."""
    req = push_pb2.PushRequest(series=[push_pb2.RawProfileSeries(
        labels=[types_pb2.LabelPair(name=k, value=v) for k, v in series_labels(app, labels)],
        samples=[push_pb2.RawSample(raw_profile=pprof, ID=str(uuid.uuid4()))])])
    return gzip.compress(req.SerializeToString(), compresslevel=6)

"""A Pyroscope-compatible receiver of `/ingest` and of the push API
(`POST /push.v1.PusherService/Push`): http.server in a thread on 127.0.0.1:<random>.

It validates requests as ../shared/reference/pyroscope.md says the servers do, stores what it
accepts, answers errors on demand, and reads data back (`GET /render?format=collapsed` like the
legacy server, or the Python API `Receiver.stacks()`).

Where servers differ it follows Grafana Pyroscope v1 (the stricter one): the name must end in a
known profile type (`.cpu`), profiles older than 1 hour or more than 10 minutes ahead are 400,
16,000 unique stacks / depth 1,000 / 30 labels / 2,048-byte values / 4 MiB bodies are limits.
Lines over 64 KiB are refused with 422 instead of being silently cut as the legacy server does,
so a client that sends them fails a test instead of losing data unnoticed.

The push API answers errors as the Connect protocol does, a JSON `{"code", "message"}` with
the code's HTTP status (invalid_argument 400 -- `not_in_ingestion_window` for a pprof whose
time_nanos is over 1 h old or 10 min ahead --, unauthenticated 401, permission_denied 403,
resource_exhausted 429, unavailable 503); its requests are checked against what the real
pyroscope-io 1.x client sends (tests/receiver/captured/).
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from google.protobuf.message import DecodeError

from .pprof_decode import ProtoError, decode_pprof, pprof_to_folded

PUSH_PATH = "/push.v1.PusherService/Push"
# Connect codes and the HTTP status each comes with (connectrpc.com/docs/protocol)
CONNECT_STATUS = {"invalid_argument": 400, "unauthenticated": 401, "permission_denied": 403,
                  "not_found": 404, "resource_exhausted": 429, "internal": 500,
                  "unimplemented": 501, "unavailable": 503, "deadline_exceeded": 504}
_CODE_OF_STATUS = {400: "invalid_argument", 401: "unauthenticated",
                   403: "permission_denied", 404: "not_found", 408: "deadline_exceeded",
                   413: "resource_exhausted", 422: "invalid_argument",
                   429: "resource_exhausted", 500: "internal", 501: "unimplemented",
                   502: "unavailable", 503: "unavailable", 504: "deadline_exceeded"}

APP_RE = re.compile(r"^[A-Za-z0-9_.\-/]+$")
LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9_.]+$")
PROFILE_TYPES = {"cpu", "itimer", "wall", "alloc_objects", "alloc_space", "inuse_objects",
                 "inuse_space", "goroutines", "mutex_count", "mutex_duration", "block_count",
                 "block_duration"}
MAX_LINE = 64 * 1024
MAX_STACKS = 16_000
MAX_DEPTH = 1_000
MAX_LABELS = 30
MAX_VALUE = 2_048
MAX_BODY = 4 * 1024 * 1024


class Reject(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODE_OF_STATUS.get(status, "unknown")  # on the push API


@dataclass(frozen=True)
class Ingest:
    """One accepted upload."""

    name: str
    app: str  # without the profile type
    profile_type: str
    labels: dict[str, str]
    from_s: float
    until_s: float
    format: str
    sample_rate: int
    spy_name: str | None
    units: str | None
    aggregation_type: str | None
    tenant: str | None
    headers: dict[str, str]
    stacks: dict[str, int]
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""  # as received (pprof: after multipart unwrapping; push: the raw pprof)
    sample_id: str = ""  # push: RawSample.ID
    series_labels: tuple[tuple[str, str], ...] = ()  # push: as sent, in order

    @property
    def total(self) -> int:
        return sum(self.stacks.values())


def parse_name(name: str) -> tuple[str, str, dict[str, str]]:
    """`app.cpu{k=v,...}` -> (app, profile type, labels), raising Reject(400)."""
    m = re.fullmatch(r"([^{}]*)(?:\{(.*)\})?", name)
    if not m or not m.group(1):
        raise Reject(400, f"invalid name {name!r}")
    full_app, body = m.group(1), m.group(2) or ""
    if not APP_RE.match(full_app):
        raise Reject(400, f"invalid application name {full_app!r}")
    app, dot, ptype = full_app.rpartition(".")
    if not dot or ptype not in PROFILE_TYPES:
        raise Reject(400, f"unknown profile type {ptype!r}")
    labels: dict[str, str] = {}
    for part in filter(None, body.split(",")):
        k, eq, v = part.partition("=")
        if not eq or "=" in v or "}" in v:
            raise Reject(400, f"invalid label {part!r}")
        k = k.strip()
        if not LABEL_NAME_RE.match(k) or k == "__name__":
            raise Reject(400, f"invalid label name {k!r}")
        if len(v.encode()) > MAX_VALUE:
            raise Reject(400, f"label value of {k} longer than {MAX_VALUE} bytes")
        labels[k] = v
    if len(labels) > MAX_LABELS:
        raise Reject(400, f"more than {MAX_LABELS} labels")
    return app, ptype, labels


def parse_time(text: str | None, now: float) -> float:
    """Unix seconds; 13/16/19 digits are ms/us/ns, as the server reads them."""
    if not text:
        return now
    if not text.isdigit():
        raise Reject(400, f"invalid time {text!r}")
    scale = {13: 1e3, 16: 1e6, 19: 1e9}.get(len(text), 1.0)
    return int(text) / scale


def parse_folded(body: bytes) -> dict[str, int]:
    stacks: dict[str, int] = {}
    for raw in body.split(b"\n"):
        if len(raw) > MAX_LINE:
            raise Reject(422, f"line longer than {MAX_LINE} bytes")
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if not line.strip():
            continue
        stack, sp, count = line.rpartition(" ")
        if not sp or not count.isdigit():
            raise Reject(422, f"bad count in line {line[:80]!r}")
        stacks[stack] = stacks.get(stack, 0) + int(count)
    return stacks


class Receiver:
    """Start with `with Receiver() as r:`; `r.url` is the server address to upload to."""

    def __init__(self, *, auth_token: str | None = None,
                 basic_auth: tuple[str, str] | None = None, require_tenant: bool = False,
                 check_age: bool = True) -> None:
        self.auth_token = auth_token
        self.basic_auth = basic_auth
        self.require_tenant = require_tenant
        self.check_age = check_age
        self.ingests: list[Ingest] = []
        self.log: list[tuple[int, str]] = []  # (status, reason) of every /ingest request
        self.abandoned = 0  # slow requests whose client had gone when we got to them
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers), all
        self._lock = threading.Lock()
        self._forced: list[tuple[int, str, dict[str, str], str | None]] = []
        self._delays: list[float] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # lifecycle
    def __enter__(self) -> Receiver:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        """Listen (again, on the same port after down())."""
        receiver = self

        class Handler(_Handler):
            owner = receiver

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop listening: clients get connection refused until up()."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # faults on demand
    def fail(self, status: int, times: int = 1, message: str = "",
             headers: dict[str, str] | None = None, code: str | None = None) -> None:
        """Answer the next `times` uploads with `status` (on the push API as the Connect
        error `code`, by default the status's code)."""
        with self._lock:
            self._forced += [(status, message or f"forced {status}", headers or {},
                              code)] * times

    def fail_connect(self, code: str, times: int = 1, message: str = "",
                     headers: dict[str, str] | None = None) -> None:
        self.fail(CONNECT_STATUS[code], times, message or f"forced {code}", headers, code)

    def slow(self, seconds: float, times: int = 1) -> None:
        with self._lock:
            self._delays += [seconds] * times

    # reading back
    def stacks(self, app: str | None = None, labels: dict[str, str] | None = None
               ) -> dict[str, int]:
        out: dict[str, int] = {}
        for ing in self.matching(app, labels):
            for k, v in ing.stacks.items():
                out[k] = out.get(k, 0) + v
        return out

    def matching(self, app: str | None = None, labels: dict[str, str] | None = None,
                 from_s: float | None = None, until_s: float | None = None) -> list[Ingest]:
        with self._lock:
            items = list(self.ingests)
        return [i for i in items
                if (app is None or i.app == app)
                and all(i.labels.get(k) == v for k, v in (labels or {}).items())
                and (from_s is None or i.until_s > from_s)
                and (until_s is None or i.from_s < until_s)]

    # request handling
    def _take_forced(self) -> tuple[int, str, dict[str, str], str | None] | None:
        with self._lock:
            return self._forced.pop(0) if self._forced else None

    def _take_delay(self) -> float:
        with self._lock:
            return self._delays.pop(0) if self._delays else 0.0

    def _check_auth(self, headers: dict[str, str]) -> str | None:
        """The tenant, after the credentials and tenant checks (Reject 401)."""
        if self.auth_token is not None or self.basic_auth is not None:
            auth = headers.get("authorization", "")
            ok = False
            if self.auth_token is not None:
                ok = auth == f"Bearer {self.auth_token}"
            if not ok and self.basic_auth is not None:
                want = base64.b64encode(":".join(self.basic_auth).encode()).decode()
                ok = auth == f"Basic {want}"
            if not ok:
                raise Reject(401, "invalid credentials")
        tenant = headers.get("x-scope-orgid")
        if self.require_tenant and not tenant:
            raise Reject(401, "no org id")
        return tenant

    def handle_push(self, headers: dict[str, str], body: bytes) -> None:
        """A Connect unary call of PusherService.Push: gzipped (Content-Encoding) or plain
        PushRequest, each series' labels and each sample's pprof checked as Grafana
        Pyroscope's distributor does."""
        from uploader.pb import push_pb2  # the project's generated module: same contract

        tenant = self._check_auth(headers)
        if headers.get("content-type") != "application/proto":
            raise Reject(415, f"content type {headers.get('content-type')!r} is not "
                         "application/proto", "unimplemented")
        if headers.get("content-encoding") == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError) as exc:
                raise Reject(400, f"bad gzip body: {exc}") from None
        if len(body) > MAX_BODY:
            raise Reject(413, "request body too large", "resource_exhausted")
        req = push_pb2.PushRequest()
        try:
            req.ParseFromString(body)
        except DecodeError as exc:
            raise Reject(400, f"cannot parse PushRequest: {exc}") from None
        now = time.time()
        accepted = []
        for series in req.series:
            labels = {lp.name: lp.value for lp in series.labels}
            ptype = labels.pop("__name__", "")
            app = labels.pop("service_name", "")
            if not ptype:
                raise Reject(400, "series without __name__ label")
            if not app:
                raise Reject(400, "series without service_name label")
            for k, v in labels.items():
                if not LABEL_NAME_RE.match(k):
                    raise Reject(400, f"invalid label name {k!r}")
                if len(v.encode()) > MAX_VALUE:
                    raise Reject(400, f"label value of {k} longer than {MAX_VALUE} bytes")
            if len(series.labels) > MAX_LABELS:
                raise Reject(400, f"more than {MAX_LABELS} labels")
            for sample in series.samples:
                try:
                    prof = decode_pprof(sample.raw_profile)
                    stacks = pprof_to_folded(sample.raw_profile)
                except (ProtoError, OSError, EOFError) as exc:
                    raise Reject(400, f"cannot parse pprof: {exc}") from None
                from_s = prof.time_nanos / 1e9
                until_s = (prof.time_nanos + prof.duration_nanos) / 1e9
                if self.check_age and (from_s < now - 3600 or from_s > now + 600):
                    raise Reject(400, "profile is outside the ingestion window "
                                 "(not_in_ingestion_window)")
                if len(stacks) > MAX_STACKS:
                    raise Reject(400, f"{len(stacks)} unique stacks, more than {MAX_STACKS}")
                rate = 1_000_000_000 // prof.period if prof.period else 0
                accepted.append(Ingest(
                    name=app, app=app, profile_type=ptype, labels=labels, from_s=from_s,
                    until_s=until_s, format="push", sample_rate=rate, spy_name=None,
                    units=None, aggregation_type=None, tenant=tenant, headers=headers,
                    stacks=stacks, body=sample.raw_profile, sample_id=sample.ID,
                    series_labels=tuple((lp.name, lp.value) for lp in series.labels)))
        with self._lock:
            self.ingests.extend(accepted)

    def handle_ingest(self, query: dict[str, str], headers: dict[str, str], body: bytes) -> None:
        tenant = self._check_auth(headers)
        if len(body) > MAX_BODY:
            raise Reject(413, "request body too large")
        name = query.get("name")
        if not name:
            raise Reject(400, "name is required")
        app, ptype, labels = parse_name(name)
        now = time.time()
        from_s = parse_time(query.get("from"), now)
        until_s = parse_time(query.get("until"), now)
        if until_s < from_s:
            raise Reject(400, "until is before from")
        if self.check_age and from_s < now - 3600:
            raise Reject(400, "profile is older than 1h (reject-older-than)")
        if self.check_age and until_s > now + 600:
            raise Reject(400, "profile is more than 10m in the future")
        rate_text = query.get("sampleRate", "100")
        if not rate_text.isdigit() or int(rate_text) == 0:
            raise Reject(400, f"invalid sampleRate {rate_text!r}")
        fmt = query.get("format", "folded")
        ctype = headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            body = _multipart_field(ctype, body, "profile")
            fmt = "pprof"
        if fmt == "folded":
            stacks = parse_folded(body)
        elif fmt == "pprof":
            try:
                stacks = pprof_to_folded(body)
            except (ProtoError, OSError, EOFError, UnicodeDecodeError) as exc:
                raise Reject(422, f"cannot parse pprof: {exc}") from None
        else:
            raise Reject(400, f"format {fmt!r} is not supported by this test receiver")
        if len(stacks) > MAX_STACKS:
            raise Reject(400, f"{len(stacks)} unique stacks, more than {MAX_STACKS}")
        deepest = max((s.count(";") + 1 for s in stacks), default=0)
        if deepest > MAX_DEPTH:
            raise Reject(400, f"stack depth {deepest} over {MAX_DEPTH}")
        ing = Ingest(name=name, app=app, profile_type=ptype, labels=labels, from_s=from_s,
                     until_s=until_s, format=fmt, sample_rate=int(rate_text),
                     spy_name=query.get("spyName"), units=query.get("units"),
                     aggregation_type=query.get("aggregationType"), tenant=tenant,
                     headers=headers, stacks=stacks, query=query, body=body)
        with self._lock:
            self.ingests.append(ing)

    def render(self, query: dict[str, str]) -> str:
        q = query.get("query", "")
        m = re.fullmatch(r"([^{]+?)(?:\{(.*)\})?", q)
        if not m:
            raise Reject(400, "bad query")
        app = m.group(1).rsplit(".", 1)[0]
        labels = dict(re.findall(r'([A-Za-z0-9_.]+)\s*=\s*"([^"]*)"', m.group(2) or ""))
        now = time.time()
        from_s = parse_time(query.get("from"), 0.0) if query.get("from") else None
        until_s = parse_time(query.get("until"), now) if query.get("until") else None
        out: dict[str, int] = {}
        for ing in self.matching(app, labels, from_s, until_s):
            for k, v in ing.stacks.items():
                out[k] = out.get(k, 0) + v
        return "".join(f"{k} {v}\n" for k, v in sorted(out.items()))


def _multipart_field(ctype: str, body: bytes, name: str) -> bytes:
    msg = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
    for part in msg.iter_parts():  # type: ignore[attr-defined]
        if part.get_param("name", header="content-disposition") == name:
            return part.get_payload(decode=True)
    raise Reject(400, f"multipart body has no {name!r} field")


def _client_gone(sock: socket.socket) -> bool:
    try:
        sock.setblocking(False)
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        finally:
            sock.setblocking(True)
    except BlockingIOError:
        return False
    except OSError:
        return True


class _Handler(BaseHTTPRequestHandler):
    owner: Receiver

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass

    def _reply(self, status: int, body: bytes, ctype: str = "application/json",
               headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout test)

    def _saw(self) -> None:
        with self.owner._lock:
            self.owner.seen.append((self.command, self.path,
                                    {k.lower(): v for k, v in self.headers.items()}))

    def do_POST(self) -> None:
        self._saw()
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        push = url.path == PUSH_PATH
        if url.path != "/ingest" and not push:
            self._reply(404, b'{"code":"not_found","message":"not found"}')
            return
        owner = self.owner
        delay = owner._take_delay()
        if delay:
            time.sleep(delay)
            if _client_gone(self.connection):
                with owner._lock:
                    owner.abandoned += 1
                    owner.log.append((0, "client gone"))
                return
        forced = owner._take_forced()
        if forced is not None:
            status, message, hdrs, code = forced
            with owner._lock:
                owner.log.append((status, message))
            self._error(push, Reject(status, message, code), hdrs)
            return
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            if push:
                owner.handle_push(headers, body)
            else:
                owner.handle_ingest(query, headers, body)
        except Reject as exc:
            with owner._lock:
                owner.log.append((exc.status, str(exc)))
            self._error(push, exc)
            return
        with owner._lock:
            owner.log.append((200, "ok"))
        if push:  # an empty PushResponse
            self._reply(200, b"", "application/proto")
        else:
            self._reply(200, b"")

    def _error(self, push: bool, exc: Reject, headers: dict[str, str] | None = None) -> None:
        # /ingest: the HTTP status as code (v1's JSON error); push: a Connect error
        code: int | str = exc.code if push else exc.status
        self._reply(exc.status, json.dumps({"code": code, "message": str(exc)}).encode(),
                    headers=headers)

    def do_GET(self) -> None:
        self._saw()
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/render" and query.get("format", "collapsed") == "collapsed":
            try:
                text = self.owner.render(query)
            except Reject as exc:
                self._reply(exc.status, str(exc).encode(), "text/plain")
                return
            self._reply(200, text.encode(), "text/plain")
        elif url.path == "/healthz":
            self._reply(200, b"ok", "text/plain")
        else:
            self._reply(404, b"not found", "text/plain")

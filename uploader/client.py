"""The upload client: one request per call, to `/ingest` or to the push API
(uploader/push.py), classified for the delivery loop.

Requests carry only non-secret parameters (what the spool may store); credentials and extra
headers are added here at send time, so they never sit in a request object, a spool file or
a log line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urljoin, urlsplit

import requests

from uploader import connect
from uploader.credentials import Redactor, basic_auth
from uploader.options import UploadOptions
from uploader.push import PUSH_PATH

USER_AGENT = "ebpf-upload/0.1"


@dataclass(frozen=True)
class IngestRequest:
    """What goes to POST /ingest (or the push API), minus authentication."""

    params: tuple[tuple[str, str], ...]  # name, from, until, format, sampleRate, ...
    body: bytes
    content_type: str = "binary/octet-stream"
    # "push": body is a gzipped PushRequest, params only name it in messages (not sent)
    protocol: str = "ingest"

    def param(self, key: str) -> str:
        return dict(self.params).get(key, "")

    def describe(self) -> str:
        return f"{self.param('name')} [{self.param('from')}, {self.param('until')})"


class Outcome(Enum):
    OK = "ok"
    RETRY = "retry"  # connection error, timeout, 5xx, 429, 408: try again later
    REJECTED = "rejected"  # 4xx about this request (bad name, parse error, too large)
    # 401/403, a refused redirect, an unsendable header: nothing will get through until the
    # configuration changes
    AUTH = "auth"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    message: str = ""
    status: int = 0
    retry_after_s: float | None = None


_ADVICE = {
    400: "the server rejected the profile name or its parameters; check --application-name, "
         "--tag and the labels in the input",
    401: "the server refused the credentials; check PYROSCOPE_AUTH_TOKEN (or basic auth). "
         "Phlare and Grafana Cloud also answer 401 when no tenant is given: set --tenant-id",
    403: "the credentials are valid but may not write here; use a token with write access "
         "for this tenant (--tenant-id)",
    413: "the upload is too large for the server; lower --upload-rate so windows are smaller",
    422: "the server could not parse the profile body; try --format folded, and report it",
}


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urlsplit(url)
    port = p.port or {"http": 80, "https": 443}.get(p.scheme)
    return p.scheme.lower(), (p.hostname or "").lower(), port


def same_origin(a: str, b: str) -> bool:
    """RFC 6454 origin: scheme, host and port (an https -> http downgrade is another one)."""
    return _origin(a) == _origin(b)


class _SameOriginSession(requests.Session):
    """Follows only 307/308 (they keep the POST and its body; 301/302/303 turn it into a GET)
    to the same origin. requests drops Authorization on a redirect to another host but sends
    X-API-Key, X-Scope-OrgID and every other header on, and a redirect from https to plain
    http would skip the plain-http warning; any other redirect comes back to send() as is."""

    max_redirects = 5

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is None or resp.status_code not in (307, 308) or \
                not same_origin(resp.url, urljoin(resp.url, target)):
            return None
        return target


class IngestClient:
    def __init__(self, opts: UploadOptions) -> None:
        self.opts = opts
        self.url = opts.server_address + "/ingest"
        self.push_url = opts.server_address + PUSH_PATH
        self.session = _SameOriginSession()
        self.session.verify = True  # TLS verified, always
        self.redact = Redactor(opts.secrets)

    def _headers(self, req: IngestRequest) -> dict[str, str]:
        h = {"Content-Type": req.content_type, "User-Agent": USER_AGENT}
        h.update(self.opts.headers)
        o = self.opts
        if o.auth_token:
            h["Authorization"] = f"Bearer {o.auth_token}"
        elif o.basic_auth_user and o.basic_auth_password:
            h["Authorization"] = basic_auth(o.basic_auth_user, o.basic_auth_password)
        if o.tenant_id:
            h["X-Scope-OrgID"] = o.tenant_id
        if req.protocol == "push":
            h["Content-Encoding"] = "gzip"  # the PushRequest is gzipped whole
        return h

    def send(self, req: IngestRequest) -> Result:
        push = req.protocol == "push"
        url = self.push_url if push else self.url
        try:
            resp = self.session.post(url, params=None if push else list(req.params),
                                     data=req.body, headers=self._headers(req),
                                     timeout=self.opts.request_timeout_s)
        except requests.Timeout:
            return Result(Outcome.RETRY, f"no answer from {self.opts.server_address} within "
                          f"{self.opts.request_timeout_s:g}s (--upstream-request-timeout)")
        except (requests.exceptions.InvalidHeader, UnicodeError):
            # resolve() refuses such values; options built otherwise still get one line,
            # classed as configuration (retrying cannot help), without the value
            return Result(Outcome.AUTH, "a request header cannot be sent (a control or "
                          "non-latin-1 character in the token, --header or --tenant-id); "
                          "remove it")
        except requests.TooManyRedirects:
            return Result(Outcome.AUTH, f"{url} redirects in a loop; set "
                          "--server-address to the server that takes uploads")
        except requests.exceptions.SSLError as exc:
            return Result(Outcome.AUTH, self.redact(
                f"TLS verification of {self.opts.server_address} failed ({_root(exc)}); fix "
                "the server certificate or add its CA to the system trust store"))
        except requests.RequestException as exc:
            return Result(Outcome.RETRY, self.redact(
                f"cannot reach {self.opts.server_address}: {_root(exc)}"))
        status = resp.status_code
        if 200 <= status < 300:
            return Result(Outcome.OK, status=status)
        if 300 <= status < 400:
            return Result(Outcome.AUTH, self.redact(_redirect_message(resp)), status)
        if push:
            got = self._connect_result(resp)
            if got is not None:
                return got
        detail = self.redact(_server_message(resp))
        if status >= 500 or status in (408, 429):
            return Result(Outcome.RETRY, f"server answered {status} {detail}".rstrip(),
                          status, _retry_after(resp))
        advice = _ADVICE.get(status, "the server refused the upload")
        message = f"server answered {status}" + (f" ({detail})" if detail else "")
        kind = Outcome.AUTH if status in (401, 403) else Outcome.REJECTED
        return Result(kind, f"{message}: {advice}", status)


    def _connect_result(self, resp: requests.Response) -> Result | None:
        """A push API answer by its Connect error code; None: decide by the HTTP status."""
        status = resp.status_code
        err = connect.parse_error(resp.content)
        if err is None:
            if status in (404, 405, 415):  # no such route: a server without the push API
                err = connect.ConnectError("unimplemented", "")
            else:
                return None
        decision = connect.decide(err)
        if decision is None:
            return None
        detail = self.redact(f"{err.code}: {err.message}" if err.message else err.code)
        if decision is connect.Decision.RETRY:
            return Result(Outcome.RETRY, f"server answered {status} ({detail})", status,
                          _retry_after(resp))
        kind = Outcome.AUTH if decision is connect.Decision.CONFIG else Outcome.REJECTED
        return Result(kind, f"server answered {status} ({detail}): {connect.advice(err)}",
                      status)


def _redirect_message(resp: requests.Response) -> str:
    location = resp.headers.get("Location")
    if not location:
        return (f"server answered {resp.status_code} without a Location; set "
                "--server-address to the server that takes uploads")
    target = urljoin(resp.url, location)
    p = urlsplit(target)
    shown = f"{p.scheme}://{p.netloc}{p.path}"  # without the query, which may hold a key
    why = ("another server" if not same_origin(resp.url, target) else
           "the same server but would turn the upload into a GET")
    return (f"server answered {resp.status_code} redirecting to {shown} ({why}); "
            "ebpf-upload follows only 307/308 to the same scheme, host and port, so that "
            "credentials, X-API-Key and X-Scope-OrgID go nowhere else: set "
            "--server-address to the server that takes uploads")


def _root(exc: BaseException) -> str:
    """The innermost cause, short (requests wraps urllib3 wraps socket errors)."""
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    text = str(exc) or type(exc).__name__
    return text.split("] ")[-1][:200]


def _server_message(resp: requests.Response) -> str:
    text = resp.text[:500].strip()
    try:
        data = json.loads(text)
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])[:300]
    except ValueError:
        pass
    return text[:300]


def _retry_after(resp: requests.Response) -> float | None:
    v = resp.headers.get("Retry-After", "")
    try:
        return min(float(v), 60.0) if v else None
    except ValueError:
        return None

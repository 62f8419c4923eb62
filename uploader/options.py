"""Options of `ebpf-upload`, as flags with `PYROSCOPE_*` environment twins (cli_common.flags).

Precedence follows the `pyroscope ebpf` agent: a flag wins over its environment twin
(`PYROSCOPE_` + the flag in upper snake case), which wins over the default. Repeatable
`--tag`/`--header` merge per key: `PYROSCOPE_TAG="env=prod,team=db"` plus `--tag env=dev`
gives env=dev, team=db. click parses; `resolve` checks the values and builds UploadOptions.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from cli_common.flags import (
    CONTEXT,
    DURATION,
    ListType,
    MergedOption,
    env_twin,
    exit_codes_help,
    option,
    parse,
    version_option,
)
from cli_common.timeparse import TIME_HELP, parse_instant, parse_time
from recording.errors import UsageError
from symbolizer.flags import options_from_args, symbol_options
from symbolizer.options import SymbolizeOptions
from uploader.credentials import clean_header_name, clean_value, secrets_of

log = logging.getLogger("ebpf-upload")

DEFAULT_SERVER = "http://localhost:4040"
DEFAULT_SPOOL_MAX = 64 * 1024 * 1024
LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
FORMATS = ("folded", "pprof")
PROTOCOLS = ("ingest", "push")


def default_spool_dir() -> Path:
    """$XDG_STATE_HOME/ebpf-profiler/spool (~/.local/state/... when unset): state that must
    survive a restart, which is what the XDG spec puts under the state directory."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return Path(base) / "ebpf-profiler" / "spool"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (delay = uniform(0, min(max, base * 2**n)))."""

    attempts: int = 4  # tries per window before it goes to the spool
    base_s: float = 0.5
    max_s: float = 8.0


@dataclass(frozen=True)
class UploadOptions:
    """Everything one run needs. Secrets have repr=False so they never reach a log line."""

    application_name: str
    server_address: str = DEFAULT_SERVER
    auth_token: str | None = field(default=None, repr=False)
    basic_auth_user: str | None = None
    basic_auth_password: str | None = field(default=None, repr=False)
    tenant_id: str | None = None
    # extra headers may carry keys too (X-API-Key): kept out of repr and out of the spool
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    tags: tuple[tuple[str, str], ...] = ()
    sample_rate: int | None = None  # None: take it from the file's headers, else 100
    spy_name: str = "ebpfspy"
    request_timeout_s: float = 10.0
    upload_rate_s: float = 10.0
    format: str = "folded"
    protocol: str = "ingest"  # or "push": Pyroscope 1.x's push API (uploader/push.py)
    spool_dir: Path = field(default_factory=default_spool_dir)
    spool_max_bytes: int = DEFAULT_SPOOL_MAX
    retime: bool = False
    allow_old: bool = False
    from_ns: int | None = None  # window of plain folded text (no headers)
    until_ns: int | None = None
    inputs: tuple[str, ...] = ()
    retry: RetryPolicy = RetryPolicy()
    log_level: str = "info"
    no_logging: bool = False
    # where symbols come from when an input is a recording (the flags of ebpf-symbolize)
    symbolize: SymbolizeOptions = field(default_factory=SymbolizeOptions)

    @property
    def has_credentials(self) -> bool:
        return bool(self.auth_token or self.basic_auth_password or self.headers)

    @property
    def secrets(self) -> list[str]:
        """What must appear in no message (uploader/credentials.py Redactor)."""
        return secrets_of(self.auth_token, self.basic_auth_user, self.basic_auth_password,
                          self.headers)


# (flag, type, help); dest is the flag in snake case, env twin PYROSCOPE_<DEST upper>
_FLAGS: list[tuple[str, str, str]] = [
    ("--application-name", "str", "application name (empty: ebpfspy.<random>)"),
    ("--server-address", "str", f"Pyroscope server (default {DEFAULT_SERVER})"),
    ("--auth-token", "str", "Bearer token; prefer PYROSCOPE_AUTH_TOKEN (flags show in ps)"),
    ("--basic-auth-user", "str", "HTTP basic auth user"),
    ("--basic-auth-password", "str", "HTTP basic auth password; prefer the environment"),
    ("--tenant-id", "str", "tenant, sent as X-Scope-OrgID (Phlare, Grafana Cloud)"),
    ("--header", "kv", "extra HTTP header k=v (repeatable)"),
    ("--tag", "kv", "label k=v added to every profile name (repeatable)"),
    ("--sample-rate", "int", "Hz of plain folded input (headers from ebpf-symbolize win)"),
    ("--spy-name", "str", "spyName sent to the server (default ebpfspy)"),
    ("--upstream-request-timeout", "dur", "timeout of one upload request (default 10s)"),
    ("--upload-rate", "dur", "upload window length, aligned to its multiples (default 10s)"),
    ("--log-level", "str", "debug, info, warn or error (default info)"),
    ("--no-logging", "bool", "log nothing but errors"),
    ("--format", "str", "body format: folded (default) or pprof"),
    ("--protocol", "str", "ingest (default: POST /ingest) or push (Pyroscope 1.x's "
                          "push.v1.PusherService/Push, pprof)"),
    ("--spool-dir", "str", "where undeliverable windows wait (default $XDG_STATE_HOME/...)"),
    ("--spool-max-bytes", "int", f"spool size cap, oldest dropped first ({DEFAULT_SPOOL_MAX})"),
    ("--retime", "bool", "shift windows to end now, keeping their spacing (old recordings)"),
    ("--allow-old", "bool", "send windows older than 1 hour anyway (legacy v0 servers)"),
    ("--retries", "int", "tries per window before it is spooled (default 4)"),
    ("--from", "time", f"start of plain folded input: {TIME_HELP} (default: --until minus "
                       "--upload-rate)"),
    ("--until", "time", "end of plain folded input, in the same forms, +10s counting from "
                        "--from (default: now)"),
]

SECRET_FLAGS = ("--auth-token", "--basic-auth-password", "--header")


def env_name(flag: str) -> str:
    return env_twin(flag)


def _flag_option(flag: str, kind: str, help_: str) -> Callable[[Any], Any]:
    dest = flag.lstrip("-").replace("-", "_")
    if kind == "bool":
        return option(flag, dest, is_flag=True, help=help_)
    if kind == "kv":
        return option(flag, dest, cls=MergedOption, multiple=True, type=ListType(",", "K=V"),
                      help=help_)
    if kind == "int":
        return option(flag, dest, type=int, metavar="N", help=help_)
    if kind == "dur":
        return option(flag, dest, type=DURATION, help=help_)
    return option(flag, dest, metavar="TIME" if kind == "time" else "TEXT", help=help_)


def _with_flags(f: Callable[..., Any]) -> Callable[..., Any]:
    for flag, kind, help_ in reversed(_FLAGS):
        f = _flag_option(flag, kind, help_)(f)
    return f


@click.command(
    "ebpf-upload", context_settings=CONTEXT,
    help="Upload profiles to Pyroscope (/ingest, or the push API with --protocol push); with "
    "'-' (the default), read a stream "
    "(ebpf-record --out - | ebpf-symbolize - | ebpf-upload -) and upload each window. FILEs "
    "are folded text from ebpf-symbolize or recordings from ebpf-record.",
    epilog="Every flag has an environment twin PYROSCOPE_<FLAG> (e.g. PYROSCOPE_AUTH_TOKEN); "
    "the flag wins. Give secrets through the environment: secret flags are moved out of the "
    "process title at start.\n\n" + exit_codes_help((0, 1, 2, 3, 5, 6, 130, 141)))
@click.argument("inputs", nargs=-1, metavar="[FILE|-]...")
@_with_flags
@symbol_options  # a recording given as input is symbolized as ebpf-symbolize does
@version_option("ebpf-upload")
def command(**params: object) -> dict[str, object]:
    return params  # the run happens outside click (cli_common.command: errors, signals)


def parse_args(argv: Sequence[str]) -> Any:
    """The parsed flags (attributes named as the flags, environment twins read), an exit code
    (--help, --version), or UsageError."""
    return parse(command, "ebpf-upload", argv)


def options_for(argv: Sequence[str]) -> UploadOptions:
    """UploadOptions from a command line and the environment (for tests and callers)."""
    a = parse_args(argv)
    if isinstance(a, int):
        raise UsageError("--help and --version end the run; they give no options")
    return resolve(a)


def _kv(items: Sequence[str], what: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        k, eq, v = item.partition("=")
        if not eq or not k.strip():
            if what == "--header":  # `X-API-Key: KEY` (curl's form) would print the key
                raise UsageError("--header: an item is not Name=value (value not shown); "
                                 "write e.g. --header X-API-Key=KEY")
            raise UsageError(f"{what}: {item!r} is not k=v")
        out.append((k.strip(), v))
    return out


def _merged_kv(items: Sequence[str], what: str) -> tuple[tuple[str, str], ...]:
    """The last value of each key: the twin's items come before the flags' (MergedOption)."""
    return tuple(dict(_kv(items, what)).items())


def _headers(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """--header items with checked names and cleaned values (they are secrets: X-API-Key)."""
    out = []
    for k, v in _merged_kv(items, "--header"):
        name = clean_header_name(k)
        value = clean_value(v, f"--header {name} (or {env_name('--header')})")
        out.append((name, value or ""))
    return tuple(out)


def _what(flag: str) -> str:
    return f"{flag} (or {env_name(flag)})"


def resolve(ns: Any) -> UploadOptions:
    """UploadOptions from the parsed flags (flags > PYROSCOPE_* environment > defaults, as
    click read them), checked and typed."""

    def pick(flag: str) -> Any:
        return getattr(ns, flag.lstrip("-").replace("-", "_"))

    def pick_int(flag: str, default: int | None) -> int | None:
        n: int | None = pick(flag)
        if n is None:
            return default
        if n <= 0:
            raise UsageError(f"{flag}: must be positive, got {n}")
        return n

    app = (pick("--application-name") or "").strip()
    named = bool(app)
    if not named:
        app = "ebpfspy." + secrets.token_hex(4)

    server = (pick("--server-address") or DEFAULT_SERVER).strip().rstrip("/")
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--server-address: {server!r} is not an http(s) URL; "
                         "write e.g. http://localhost:4040")
    if parts.username or parts.password:
        raise UsageError("--server-address: credentials in the URL would show in logs and "
                         "process lists; use PYROSCOPE_BASIC_AUTH_USER/_PASSWORD or "
                         "PYROSCOPE_AUTH_TOKEN instead")

    fmt = (pick("--format") or "folded").lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format: {fmt!r}; choose folded or pprof")
    protocol = (pick("--protocol") or "ingest").lower()
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol: {protocol!r}; choose ingest or push")
    if protocol == "push":
        if pick("--format") and fmt != "pprof":
            raise UsageError("--protocol push sends pprof; --format folded is for --protocol "
                             "ingest")
        fmt = "pprof"
    level = (pick("--log-level") or "info").lower()
    if level not in LOG_LEVELS:
        raise UsageError(f"--log-level: {level!r}; choose debug, info, warn or error")

    def dur(flag: str, default: float) -> float:
        d = pick(flag)  # DURATION: positive
        return default if d is None else float(d)

    # secrets: whitespace around them stripped (a file-based Kubernetes secret ends in "\n")
    token = clean_value(pick("--auth-token"), _what("--auth-token"))
    user = clean_value(pick("--basic-auth-user"), _what("--basic-auth-user"), header=False)
    password = clean_value(pick("--basic-auth-password"), _what("--basic-auth-password"),
                           header=False)
    if user and ":" in user:
        raise UsageError(f"{_what('--basic-auth-user')} contains ':', which basic auth "
                         "cannot carry in a user name (RFC 7617)")
    if bool(user) != bool(password):
        raise UsageError("basic auth needs both --basic-auth-user and --basic-auth-password "
                         "(or PYROSCOPE_BASIC_AUTH_USER and PYROSCOPE_BASIC_AUTH_PASSWORD)")
    until_text, from_text = pick("--until"), pick("--from")
    from_ns = parse_instant(from_text, "--from") if from_text else None
    until_ns = None
    if until_text:
        until = parse_time(until_text, "--until")
        if until.absolute_ns is None and from_ns is None:
            raise UsageError(f"--until {until_text}: counts from --from, which is not given; "
                             "give both, or a time")
        until_ns = until.resolve(from_ns or 0)
    if from_ns is not None and until_ns is not None and from_ns >= until_ns:
        raise UsageError("--from must be before --until")
    attempts = pick_int("--retries", RetryPolicy.attempts)
    spool_dir = pick("--spool-dir")
    inputs = tuple(ns.inputs) or ("-",)
    opts = UploadOptions(
        application_name=app,
        server_address=server,
        auth_token=token,
        basic_auth_user=user,
        basic_auth_password=password,
        tenant_id=clean_value(pick("--tenant-id"), _what("--tenant-id")),
        headers=_headers(ns.header),
        tags=_merged_kv(ns.tag, "--tag"),
        sample_rate=pick_int("--sample-rate", None),
        spy_name=pick("--spy-name") or "ebpfspy",
        request_timeout_s=dur("--upstream-request-timeout", 10.0),
        upload_rate_s=dur("--upload-rate", 10.0),
        format=fmt,
        protocol=protocol,
        spool_dir=Path(spool_dir) if spool_dir else default_spool_dir(),
        spool_max_bytes=pick_int("--spool-max-bytes", DEFAULT_SPOOL_MAX) or DEFAULT_SPOOL_MAX,
        retime=ns.retime,
        allow_old=ns.allow_old,
        from_ns=from_ns,
        until_ns=until_ns,
        inputs=inputs,
        retry=RetryPolicy(attempts=attempts or RetryPolicy.attempts),
        log_level=level,
        no_logging=ns.no_logging,
        symbolize=options_from_args(ns),
    )
    if opts.retime and opts.allow_old:
        raise UsageError("--retime and --allow-old exclude each other; pick one")
    if not named:  # after the checks: a bad setting is the one line a failed start prints
        log.warning("no application name given (--application-name or "
                    "PYROSCOPE_APPLICATION_NAME); using %s, as the pyroscope ebpf agent does", app)
    _warn_insecure(opts)
    return opts


def _warn_insecure(opts: UploadOptions) -> None:
    parts = urlsplit(opts.server_address)
    loopback = parts.hostname in ("localhost", "::1") or (parts.hostname or "").startswith("127.")
    if parts.scheme == "http" and not loopback and opts.has_credentials:
        log.warning("credentials go to %s over plain http and can be read on the way; "
                    "use https://", parts.hostname)

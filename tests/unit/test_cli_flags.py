"""The three commands on click (issue 13): environment twins through one mechanism, perf's
short flags, --version, shell completion, and bad flags or variables as one line, exit 2."""

from __future__ import annotations

import os
import subprocess
from importlib.metadata import version

import click
import pytest

from recorder.cli import command as record_command
from recorder.cli import parse_options
from recording.errors import UsageError
from symbolizer.cli import command as symbolize_command
from symbolizer.cli import parse_args as symbolize_args
from tests.conftest import tool
from uploader.options import command as upload_command
from uploader.options import options_for

COMMANDS = ["ebpf-record", "ebpf-symbolize", "ebpf-upload"]


@pytest.fixture(autouse=True)
def _no_twins_from_the_caller(monkeypatch):
    for k in [k for k in os.environ if k.startswith("PYROSCOPE_")]:
        monkeypatch.delenv(k)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYROSCOPE_")}
    env.update(extra)
    return env


def cli(command: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool(command), *args], capture_output=True, text=True, timeout=30,
                          env=clean_env(**env), stdin=subprocess.DEVNULL)


# --- ebpf-record: its twins, perf's short flags, --pid -1 ------------------------------------

def test_record_reads_its_twins_and_the_flag_wins(monkeypatch):
    # PYROSCOPE_SAMPLE_RATE=49 silently gave 100 Hz before
    monkeypatch.setenv("PYROSCOPE_SAMPLE_RATE", "49")
    monkeypatch.setenv("PYROSCOPE_RECORD_DURATION", "5s")
    monkeypatch.setenv("PYROSCOPE_PID", "10,11")
    monkeypatch.setenv("PYROSCOPE_PYTHON_ENABLED", "false")
    o = parse_options(["--out", "x.parquet"])
    assert (o.sample_rate, o.duration, o.pids, o.python) == (49, 5.0, (10, 11), False)
    o = parse_options(["--out", "x.parquet", "--sample-rate", "97", "--pid", "12",
                       "--python"])
    assert (o.sample_rate, o.pids, o.python) == (97, (12,), True)


def test_record_defaults_are_the_documented_ones():
    o = parse_options(["--out", "x.parquet"])
    assert (o.sample_rate, o.pids, o.duration, o.drain_interval, o.call_graph,
            o.counts_size, o.unwind_table_rows, o.python, o.progress) == (
        100, (), None, 1.0, "dwarf", 40960, 4 << 20, True, None)


def test_record_takes_perfs_short_flags():
    o = parse_options(["-F", "49", "-p", "1,2", "-p", "3", "-o", "out.parquet", "-g", "--",
                       "./server", "--port", "1"])
    assert (o.sample_rate, o.pids, o.out) == (49, (1, 2, 3), "out.parquet")
    # -g is perf's "record call graphs": always on here; the unwinder stays --call-graph's
    assert o.call_graph == "dwarf"
    assert o.command == ("./server", "--port", "1")  # flags after -- are the command's
    assert parse_options(["-o", "x", "-F49", "--call-graph", "fp", "-g"]).call_graph == "fp"


@pytest.mark.parametrize("argv", [["--pid", "-1"], ["-p", "-1"]])
def test_pid_minus_one_is_the_whole_system(argv):
    assert parse_options(["-o", "x", *argv]).pids == ()


@pytest.mark.parametrize(("argv", "needle"), [
    (["--pid", "-1", "--pid", "5"], "--pid -1 is the whole system"),
    (["--pid", "0"], "not a process ID"),
    (["--pid", "abc"], "'abc' is not a process ID"),
    (["-F", "0"], "out of range"),
])
def test_bad_record_values(argv, needle):
    with pytest.raises(UsageError, match=needle):
        parse_options(["-o", "x", *argv])


# --- twins of every command ------------------------------------------------------------------

def twins(command: click.Command) -> dict[str, str]:
    return {p.envvar: p.name for p in command.params
            if isinstance(p, click.Option) and isinstance(p.envvar, str)}


def test_every_flag_has_a_twin():
    for command in (record_command, symbolize_command, upload_command):
        for p in command.params:
            if isinstance(p, click.Option) and p.name not in ("version", "help", "perf_g"):
                assert isinstance(p.envvar, str) and p.envvar.startswith("PYROSCOPE_"), p.name


def test_one_environment_configures_the_chain_without_crossed_settings():
    # the chain shares one environment: a variable two commands read must mean the same to
    # both (PYROSCOPE_FORMAT=pprof is ebpf-upload's; ebpf-symbolize's is _SYMBOLIZE_FORMAT)
    rec, sym, up = twins(record_command), twins(symbolize_command), twins(upload_command)
    assert set(rec) & set(sym) == set()
    assert set(rec) & set(up) == {"PYROSCOPE_SAMPLE_RATE"}  # Hz, in both
    symbol_flags = {"debug_dirs", "no_default_debug_dir", "sysroot", "debuginfod_urls",
                    "cache_dir", "symbol_cache_size"}
    assert {sym[v] for v in set(sym) & set(up)} == symbol_flags
    assert sym["PYROSCOPE_SYMBOLIZE_FORMAT"] == "format" and up["PYROSCOPE_FORMAT"] == "format"
    # the names the pyroscope ebpf agent documents
    for var in ("PYROSCOPE_KUBERNETES_NODE", "PYROSCOPE_ONLY_SERVICES",
                "PYROSCOPE_SYMBOL_CACHE_SIZE"):
        assert var in sym
    for var in ("PYROSCOPE_APPLICATION_NAME", "PYROSCOPE_SERVER_ADDRESS", "PYROSCOPE_AUTH_TOKEN",
                "PYROSCOPE_BASIC_AUTH_USER", "PYROSCOPE_BASIC_AUTH_PASSWORD",
                "PYROSCOPE_TENANT_ID", "PYROSCOPE_SPY_NAME", "PYROSCOPE_TAG",
                "PYROSCOPE_UPSTREAM_REQUEST_TIMEOUT", "PYROSCOPE_LOG_LEVEL",
                "PYROSCOPE_NO_LOGGING"):
        assert var in up
    assert "PYROSCOPE_PID" in rec


def test_symbolize_twins(monkeypatch):
    monkeypatch.setenv("PYROSCOPE_SYMBOLIZE_FORMAT", "pprof")
    monkeypatch.setenv("PYROSCOPE_DEBUG_DIR", "/a:/b")
    monkeypatch.setenv("PYROSCOPE_ONLY_SERVICES", "true")
    monkeypatch.setenv("PYROSCOPE_SYMBOLIZE_QUIET", "1")
    a = symbolize_args(["r.parquet"])
    assert (a.format, a.debug_dirs, a.only_services, a.quiet) == ("pprof", ("/a", "/b"), True,
                                                                  True)
    assert symbolize_args(["r.parquet", "--format", "folded"]).format == "folded"


def test_upload_symbol_flags_read_the_same_twins(monkeypatch):
    monkeypatch.setenv("PYROSCOPE_SYSROOT", "/srv/root")
    monkeypatch.setenv("PYROSCOPE_SYMBOL_CACHE_SIZE", "7")
    o = options_for(["--application-name", "a"])
    assert (o.symbolize.sysroot, o.symbolize.symbol_cache_size) == ("/srv/root", 7)


# --- --version, completion, --help -----------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_version(command):
    r = cli(command, "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{command} {version('ebpf-profiler')}"


@pytest.mark.parametrize("command", COMMANDS)
def test_bash_completion_script_and_answers(command):
    var = "_" + command.upper().replace("-", "_") + "_COMPLETE"
    r = cli(command, **{var: "bash_source"})
    assert r.returncode == 0, r.stderr
    assert "complete -o nosort -F" in r.stdout and command in r.stdout
    # what the script asks: the flags starting with what was typed
    r = subprocess.run([tool(command)], capture_output=True, text=True, timeout=30,
                       env=clean_env(**{var: "bash_complete", "COMP_WORDS": f"{command} --ver",
                                        "COMP_CWORD": "1"}))
    assert r.returncode == 0 and "plain,--version" in r.stdout.splitlines(), r.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_each_variable_and_the_exit_codes(command):
    r = cli(command, "--help")
    assert r.returncode == 0
    assert "[env var: PYROSCOPE_" in r.stdout
    for code in ("0 ", "1 ", "2 ", "130 "):
        assert f"\n    {code}" in r.stdout, code


# --- errors: one line, exit 2 ----------------------------------------------------------------

@pytest.mark.parametrize(("command", "args", "env", "needle"), [
    ("ebpf-record", ["-o", "/tmp/never.parquet"], {"PYROSCOPE_SAMPLE_RATE": "fast"},
     "PYROSCOPE_SAMPLE_RATE (for --sample-rate): 'fast' is not a valid integer"),
    ("ebpf-record", ["-o", "/tmp/never.parquet", "-F"], {}, "requires an argument"),
    ("ebpf-record", ["-o", "/tmp/never.parquet", "stray"], {}, "unexpected extra argument"),
    ("ebpf-symbolize", [], {}, "Missing argument 'RECORDING'"),
    ("ebpf-symbolize", ["r.parquet"], {"PYROSCOPE_SYMBOLIZE_LINES": "maybe"},
     "PYROSCOPE_SYMBOLIZE_LINES (for --lines): 'maybe' is not a valid boolean; use true or"),
    ("ebpf-symbolize", ["r.parquet", "--format", "pprof", "--per-pid"], {},
     "--per-pid: only for --format folded"),
    ("ebpf-upload", ["-"], {"PYROSCOPE_RETRIES": "x"}, "PYROSCOPE_RETRIES (for --retries)"),
    ("ebpf-upload", ["-", "--upload-rate", "soon"], {}, "--upload-rate: invalid duration"),
    # no application name either: its warning waits until the settings are good
    ("ebpf-upload", ["-"], {"PYROSCOPE_PROTOCOL": "grpc"}, "--protocol: 'grpc'; choose"),
])
def test_bad_flags_and_variables_are_one_line(command, args, env, needle):
    r = cli(command, *args, **env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"{command}: error:") and needle in lines[0], lines[0]
    assert "Usage:" not in r.stderr and "Traceback" not in r.stderr


def test_a_mistyped_secret_flag_is_named_never_its_value():
    r = cli("ebpf-upload", "-", "--auth-tokn=tok-SECRET-1")
    assert r.returncode == 2
    assert "unrecognized arguments: --auth-tokn (did you mean --auth-token?)" in r.stderr
    assert "SECRET" not in r.stderr

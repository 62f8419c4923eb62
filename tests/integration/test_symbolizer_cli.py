"""ebpf-symbolize end to end on recordings built from a live fixture process (no BPF)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from cli_common.command import run
from profiles.model import Frame, FrameKind, Profile
from recording.reader import iter_batches
from recording.schema import SCHEMA
from symbolizer.cli import symbolize_main
from symbolizer.sinks import SinkOptions, available_formats, get_sink
from tests.conftest import skip_or_fail
from tests.helpers.synthetic import synthetic_recording


@pytest.fixture(scope="module")
def recording(fixture_bins, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rec") / "syn.parquet"
    return synthetic_recording(out, fixture_bins / "workload-pie",
                               fixture_bins / "libfixture.so")


def symbolize(args, capsys) -> tuple[int, str, str]:
    rc = run("ebpf-symbolize", symbolize_main, [str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def folded_shares(text: str) -> dict[str, float]:
    leaf_counts: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        stack, n = line.rsplit(" ", 1)
        leaf = stack.split(";")[-1]
        leaf_counts[leaf] = leaf_counts.get(leaf, 0) + int(n)
    total = sum(leaf_counts.values())
    return {k: v / total for k, v in leaf_counts.items()}


def test_folded_stacks_root_at_comm_with_design_shares(recording, tmp_path, capsys):
    rc, out, _ = symbolize([recording, "--cache-dir", tmp_path], capsys)
    assert rc == 0
    lines = [ln for ln in out.splitlines() if not ln.startswith("#")]
    assert all(ln.startswith("workload-pie;main;run_rounds;") for ln in lines)
    shares = folded_shares(out)
    assert shares == pytest.approx({"alpha": 0.25, "lib_beta": 0.5, "gamma_fn": 0.25})
    assert out.splitlines()[0].startswith("# ebpf-profiler {")


def test_window_split_gives_one_block_per_window(recording, tmp_path, capsys):
    rc, out, _ = symbolize([recording, "--window", "1s", "--cache-dir", tmp_path], capsys)
    assert rc == 0 and out.count("# ebpf-profiler {") == 3


def test_from_until_select_windows(recording, tmp_path, capsys):
    rc, out, _ = symbolize([recording, "--window", "1s", "--from", "+1s", "--until", "+2s",
                            "--cache-dir", tmp_path], capsys)
    assert rc == 0 and out.count("# ebpf-profiler {") == 1


def test_stream_on_stdin_marks_each_window(recording, tmp_path):
    table = pa.Table.from_batches(list(iter_batches(str(recording))))
    buf = io.BytesIO()
    with pa.ipc.new_stream(buf, SCHEMA) as w:
        for b in table.to_batches(max_chunksize=4):
            w.write_batch(b)
    r = subprocess.run([sys.executable, "-m", "symbolizer.cli", "-", "--cache-dir",
                        str(tmp_path)], input=buf.getvalue(), capture_output=True, check=True)
    out = r.stdout.decode()
    assert out.count("# ebpf-profiler-window-end") == 3
    assert out.count("# ebpf-profiler {") == 3


def test_unknown_format_lists_known(recording, capsys):
    rc, _, err = symbolize([recording, "--format", "nope"], capsys)
    assert rc == 2 and "folded" in err and "nope" in err and "Traceback" not in err


def test_corrupt_recording_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1" + b"\0" * 50)
    rc, _, err = symbolize([bad], capsys)
    assert rc == 3 and len(err.strip().splitlines()) == 1


def test_unresolved_report_names_object_reason_and_fix(recording, tmp_path, capsys):
    # Symbolize as if on another machine: an empty sysroot has none of the binaries.
    rc, out, err = symbolize([recording, "--sysroot", tmp_path / "empty", "--debug-dir",
                              tmp_path / "nodebug", "--cache-dir", tmp_path / "c"], capsys)
    assert rc == 0
    assert "libfixture.so+0x" in out
    assert "object missing" in err and "fix:" in err and "--sysroot" in err


def test_registry_knows_folded_and_streams():
    assert "folded" in available_formats()
    out = io.BytesIO()
    sink = get_sink("folded")(out, SinkOptions(stream=True))
    p = Profile(10, 20, 100)
    root = Frame("app", FrameKind.ROOT)
    p.add((root, Frame("main"), Frame("f;g")), 3)
    p.add((root, Frame("main"), Frame("f;g", address=4)), 2)  # same names: merged
    sink.write_profile(p)
    sink.end_window()
    sink.close()
    lines = out.getvalue().decode().splitlines()
    assert [lines[1], lines[3]] == ["app;main;f:g 5", "# ebpf-profiler-window-end"]
    assert lines[2].startswith("# ebpf-profiler-frames ") and len(lines) == 4


def test_what_a_library_prints_never_reaches_the_output(recording, tmp_path, capsysbinary,
                                                        monkeypatch):
    """The rust-demangler package printed a fragment to stdout while demangling, so
    `--format pprof > x.pprof` began with a text line and go tool pprof rejected the file.
    A library that prints now prints to stderr; stdout holds only the gzip'd profile."""
    import symbolizer.resolve as resolve

    real = resolve.demangle

    def noisy(name: str) -> str:
        print("library chatter")
        return real(name)

    monkeypatch.setattr(resolve, "demangle", noisy)
    rc = run("ebpf-symbolize", symbolize_main,
             [str(recording), "--format", "pprof", "--cache-dir", str(tmp_path)])
    out = capsysbinary.readouterr()
    assert rc == 0 and b"library chatter" in out.err
    assert out.out[:2] == b"\x1f\x8b" and b"library chatter" not in out.out


def test_debug_dir_adds_to_usr_lib_debug(fixture_bins, tmp_path, capsys):
    """--debug-dir X used to replace /usr/lib/debug, so libc6-dbg's names (static functions
    such as __libc_start_call_main) vanished; X is now searched first and the default after,
    as gdb's debug-file-directory list; --no-default-debug-dir drops the default."""
    from recording.elf import elf_info_of_path

    libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    bid = elf_info_of_path(libc).build_id or ""
    dbg = Path(f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug")
    if not dbg.exists():
        skip_or_fail("libc6-dbg (installed by `make setup`) is not installed")
    out = subprocess.run(["readelf", "-sW", str(dbg)], capture_output=True, text=True).stdout
    local = next(int(p[1], 16) for line in out.splitlines() if len(p := line.split()) == 8
                 and p[3] == "FUNC" and p[7] == "__libc_start_call_main")
    rec = synthetic_recording(tmp_path / "r.parquet", fixture_bins / "workload-pie",
                              fixture_bins / "libfixture.so", seconds=1,
                              extra_leaf=("libc.so", local + 4))
    (tmp_path / "mine").mkdir()
    rc, folded, _ = symbolize([rec, "--debug-dir", tmp_path / "mine", "--cache-dir",
                               tmp_path / "c1"], capsys)
    assert rc == 0 and ";__libc_start_call_main " in folded and ";alpha " in folded
    rc, folded, _ = symbolize([rec, "--debug-dir", tmp_path / "mine", "--no-default-debug-dir",
                               "--cache-dir", tmp_path / "c2"], capsys)
    assert rc == 0 and "__libc_start_call_main" not in folded and ";alpha " in folded


def test_parquet_output_names_the_process(recording, tmp_path, capsys):
    """--format parquet rows carry the sample's pid and comm (a recording names them)."""
    import duckdb

    out = tmp_path / "frames.parquet"
    rc, _, _ = symbolize([recording, "--format", "parquet", "--out", out, "--cache-dir",
                          tmp_path / "c"], capsys)
    assert rc == 0
    recorded = duckdb.sql(f"SELECT DISTINCT pid, comm FROM '{recording}' "
                          "WHERE record = 'sample'").fetchall()
    rows = duckdb.sql(f"SELECT DISTINCT pid, comm FROM '{out}'").fetchall()
    assert rows == recorded and len(rows) == 1
    assert duckdb.sql(f"SELECT sum(count) FROM '{out}' WHERE leaf").fetchall() == \
        duckdb.sql(f"SELECT sum(count) FROM '{out}' WHERE depth = 0").fetchall()


def test_warm_lines_run_reads_no_dwarf(recording, tmp_path, capsys, monkeypatch):
    """--lines answers are cached by build ID: a second run over the same addresses gives the
    same output without reading DWARF (the cold run is the DWARF-bound one)."""
    import symbolizer.lines as lines

    calls: list[int] = []
    real = lines.resolve_lines

    def counting(path, addrs):
        addrs = list(addrs)
        calls.append(len(addrs))
        return real(path, addrs)

    monkeypatch.setattr(lines, "resolve_lines", counting)
    import duckdb

    def run_lines(out: Path) -> list[tuple]:
        rc, _, _ = symbolize([recording, "--lines", "--format", "parquet", "--out", out,
                              "--cache-dir", tmp_path / "c"], capsys)
        assert rc == 0
        return duckdb.sql(f"SELECT function, file, line, inlined, sum(count) FROM '{out}' "
                          "GROUP BY ALL ORDER BY ALL").fetchall()

    cold = run_lines(tmp_path / "cold.parquet")
    assert calls and any(f and f.endswith(".c") for _n, f, *_r in cold)  # file:line frames
    calls.clear()
    warm = run_lines(tmp_path / "warm.parquet")
    assert warm == cold and calls == []
    cache = tmp_path / "c" / "lines"
    files = [p for p in cache.rglob("*.json")]
    assert files and all(p.stat().st_mode & 0o077 == 0 for p in files)


# --- folded output for perf and FlameGraph users (issue 13) --------------------------------

def flamegraph_pl_lines(text: str) -> tuple[dict[str, int], int]:
    """What flamegraph.pl takes from folded text: a line is a stack, whitespace and a count at
    its end; any other line is skipped and counted ("Ignored N lines with invalid format")."""
    import re

    stacks: dict[str, int] = {}
    ignored = 0
    for line in text.splitlines():
        m = re.fullmatch(r"(.*)\s+?(\d+(?:\.\d*)?)", line)
        if m is None:
            ignored += 1
            continue
        stacks[m.group(1)] = stacks.get(m.group(1), 0) + int(float(m.group(2)))
    return stacks, ignored


def test_headers_are_what_flamegraph_pl_ignores_and_no_headers_drops_them(recording, tmp_path,
                                                                           capsys):
    rc, with_headers, _ = symbolize([recording, "--window", "1s", "--cache-dir", tmp_path],
                                    capsys)
    assert rc == 0
    stacks, ignored = flamegraph_pl_lines(with_headers)
    # a header before and a frames line after each of the 3 blocks
    assert with_headers.count("# ebpf-profiler {") == 3
    assert ignored == 3 + with_headers.count("\n# ebpf-profiler-frames {") == 6
    rc, plain, _ = symbolize([recording, "--window", "1s", "--no-headers", "--cache-dir",
                              tmp_path], capsys)
    assert rc == 0 and "#" not in plain
    assert flamegraph_pl_lines(plain) == (stacks, 0)


def test_no_headers_on_a_stream_drops_the_window_ends_too(recording, tmp_path):
    table = pa.Table.from_batches(list(iter_batches(str(recording))))
    buf = io.BytesIO()
    with pa.ipc.new_stream(buf, SCHEMA) as w:
        for b in table.to_batches(max_chunksize=4):
            w.write_batch(b)
    r = subprocess.run([sys.executable, "-m", "symbolizer.cli", "-", "--no-headers",
                        "--cache-dir", str(tmp_path)], input=buf.getvalue(),
                       capture_output=True, check=True)
    out = r.stdout.decode()
    assert out and "#" not in out and flamegraph_pl_lines(out)[1] == 0


def test_per_pid_roots_each_stack_at_comm_and_pid(recording, tmp_path, capsys):
    import duckdb

    ((pid,),) = duckdb.sql(f"SELECT DISTINCT pid FROM '{recording}' WHERE record = 'sample'"
                           ).fetchall()
    rc, plain, _ = symbolize([recording, "--cache-dir", tmp_path], capsys)
    rc2, split, _ = symbolize([recording, "--per-pid", "--cache-dir", tmp_path], capsys)
    assert rc == rc2 == 0
    want = {k.replace("workload-pie;", f"workload-pie;{pid};", 1): n
            for k, n in flamegraph_pl_lines(plain)[0].items()}
    assert flamegraph_pl_lines(split)[0] == want


def test_quiet_silences_the_unresolved_report(recording, tmp_path, capsys):
    args = [recording, "--sysroot", tmp_path / "empty", "--cache-dir", tmp_path / "c"]
    rc, out, err = symbolize(args, capsys)
    assert rc == 0 and "object missing" in err
    rc, quiet_out, quiet_err = symbolize([*args, "-q"], capsys)
    assert rc == 0 and quiet_out == out and "object missing" not in quiet_err
    assert quiet_err == ""


def test_kernel_annotation_as_bcc_and_stackcollapse_write_it():
    from profiles.folded import FoldedStyle, folded_lines

    p = Profile(10, 20, 100)
    root = Frame("app", FrameKind.ROOT)
    p.add((root, Frame("main"), Frame("write"), Frame("ksys_write", FrameKind.KERNEL),
           Frame("vfs_write", FrameKind.KERNEL)), 3)
    p.add((root, Frame("main"), Frame("py_fn", FrameKind.PYTHON)), 2)
    assert folded_lines(p, FoldedStyle(kernel_annotations=True)) == [
        "app;main;py_fn 2", "app;main;write;ksys_write_[k];vfs_write_[k] 3"]
    assert folded_lines(p) == ["app;main;py_fn 2", "app;main;write;ksys_write;vfs_write 3"]
    out = io.BytesIO()
    sink = get_sink("folded")(out, SinkOptions(kernel_annotations=True, headers=False))
    sink.write_profile(p)
    sink.close()
    stacks, ignored = flamegraph_pl_lines(out.getvalue().decode())
    assert ignored == 0 and stacks["app;main;write;ksys_write_[k];vfs_write_[k]"] == 3


def test_folded_only_options_are_refused_for_other_formats(recording, capsys):
    rc, _, err = symbolize([recording, "--format", "speedscope", "--annotations",
                            "--no-headers"], capsys)
    assert rc == 2 and "--annotations, --no-headers: only for --format folded" in err

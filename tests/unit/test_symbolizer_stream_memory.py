"""A long stream with many short-lived processes: the engine's per-process state stays bounded.

docs/recording-format.md ("Long runs"): the recorder forgets a process not sampled for 60 s and,
should it be sampled again, writes a complete new snapshot (higher maps_seq) before its next
samples; so the stream reader drops a pid after 120 s without samples. The stream here is
synthetic: one object, a long-lived process that maps new code every 50 s, a stream of
processes living 2 s each, and one process that comes back after a long silence.
"""

from __future__ import annotations

import pyarrow as pa

from recording.schema import rows_to_batch
from symbolizer.engine import _SWEEP_EVERY_NS, STREAM_FORGET_AFTER_NS, Engine
from symbolizer.options import SymbolizeOptions

T0 = 1_764_057_600_000_000_000
SECOND = 10**9
WINDOWS = 400
NEW_PER_WINDOW = 5
LIFETIME_WINDOWS = 2
LONG_PID, RETURNING_PID = 1, 7
BASE = 0x400000
OBJECT = {"record": "object", "object_id": "app@fd:1", "path": "/nonexistent/app",
          "elf_type": "EXEC",
          "phdrs": [{"offset": 0, "vaddr": BASE, "filesz": 0x10000, "memsz": 0x10000,
                     "flags": 5}]}


def snapshot(pid: int, seq: int, t: int) -> list[dict]:
    return [{"record": "process", "pid": pid, "maps_seq": seq, "time_ns": t, "comm": f"p{pid}"},
            {"record": "mapping", "pid": pid, "maps_seq": seq, "start": BASE,
             "end": BASE + 0x10000, "file_offset": 0, "path": "/nonexistent/app",
             "object_id": "app@fd:1"}]


def sample(pid: int, ws: int, addr: int) -> dict:
    return {"record": "sample", "window_start_ns": ws, "window_end_ns": ws + SECOND, "pid": pid,
            "comm": f"p{pid}", "count": 1, "user_stack": [addr, BASE + 0x100],
            "kernel_stack": [], "kernel_stack_error": -14}


def stream() -> list[pa.RecordBatch]:
    """One batch per drain window, as `ebpf-record --out -` writes them."""
    batches = []
    for w in range(WINDOWS):
        ws = T0 + w * SECOND
        rows: list[dict] = []
        if w == 0:
            rows += [{"record": "meta", "key": "sample_rate_hz", "value": "100"}, OBJECT]
            rows += snapshot(RETURNING_PID, 0, ws)
            rows.append(sample(RETURNING_PID, ws, BASE + 0x300))
        if w % 50 == 0:
            rows += snapshot(LONG_PID, w // 50, ws)
        if w == 300:  # the recorder forgot it at 60 s; it snapshots it anew before sampling
            rows += snapshot(RETURNING_PID, 1, ws)
            rows.append(sample(RETURNING_PID, ws, BASE + 0x300))
        rows.append(sample(LONG_PID, ws, BASE + 0x200 + w % 64))
        for j in range(NEW_PER_WINDOW):
            rows += snapshot(10_000 + w * NEW_PER_WINDOW + j, 0, ws)
        for age in range(LIFETIME_WINDOWS):
            for j in range(NEW_PER_WINDOW):
                if w - age >= 0:
                    rows.append(sample(10_000 + (w - age) * NEW_PER_WINDOW + j, ws,
                                       BASE + 0x1000 + j))
        rows.append({"record": "window", "window_start_ns": ws, "window_end_ns": ws + SECOND,
                     "count": 0})
        batches.append(rows_to_batch(rows))
    return batches


def run(forget_after_ns: int | None) -> tuple[Engine, int, list[str]]:
    engine = Engine(SymbolizeOptions(cache_dir=None), forget_after_ns=forget_after_ns)
    peak = 0
    returning: list[str] = []
    for batch in stream():
        for window in engine.feed(batch):
            for p in window:
                returning += [";".join(f.name for f in st) for st in p.stacks
                              if st[0].name == f"p{RETURNING_PID}"]
        peak = max(peak, len(engine.retained_pids()))
    return engine, peak, returning


def test_stream_forgets_processes_not_sampled_for_120_s():
    engine, peak, returning = run(STREAM_FORGET_AFTER_NS)
    created = WINDOWS * NEW_PER_WINDOW + 2
    # what may be kept: pids sampled within the forget horizon plus one sweep interval
    horizon_windows = (STREAM_FORGET_AFTER_NS + _SWEEP_EVERY_NS) // SECOND + LIFETIME_WINDOWS
    bound = horizon_windows * NEW_PER_WINDOW + 2
    assert peak <= bound < created / 2, (peak, bound, created)
    # the long-lived process keeps only the snapshot in use, not one per mmap of its life
    assert engine.index.snapshot_count(LONG_PID) == 1
    # a pid that comes back after being forgotten is symbolized with its new snapshot
    assert len(returning) == 2 and returning[0] == returning[1], returning
    assert "[unknown]" not in returning[1] and "app+0x" in returning[1]


def test_without_forgetting_state_grows_with_every_process():
    # the same stream read as a file would be: proof that the bound above is the sweep's doing
    _, peak, _ = run(None)
    assert peak >= WINDOWS * NEW_PER_WINDOW

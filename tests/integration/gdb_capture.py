"""Run inside gdb (`gdb -x gdb_capture.py`): `python capture("NAME")` writes what the reference
unwinder needs and what gdb's own unwinder says, for the stopped thread, to
$UNWIND_CAPTURE_DIR/NAME.json:

    regs     rip, rsp, rbp of the innermost frame
    stack    [rsp - 128, end of the mapping holding rsp) as hex, from stack_base: the copy a
             sampler would take, with the x86-64 red zone below rsp (GCC's epilogue CFI
             keeps registers "saved" at CFA-N after they are popped, below rsp: the BPF
             unwinder reads them there, so a copy from rsp up would fault where it does not)
    maps     /proc/PID/maps, read while the process is stopped
    vdso     the [vdso] mapping's bytes as hex (it has no file to build a table from)
    frames   gdb's backtrace: pc (frame #0's pc, then resume addresses, as `bt` prints),
             function name, frame type (gdb.SIGTRAMP_FRAME for <signal handler called>);
             `sigtramp` and `made_up` (inline and tail-call frames) give the type numbers
    stop     why gdb's backtrace ended (gdb.frame_stop_reason_string)

Not a test module: gdb executes it with its own Python (Debian's gdb embeds python3.11).
"""

import json
import os

import gdb

MASK = (1 << 64) - 1
MAX_STACK_COPY = 1 << 20
RED_ZONE = 128  # x86-64 psABI 3.2.2
MAX_FRAMES = 300


def _mapping_of(maps, addr):
    for line in maps.splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= addr < hi:
            return lo, hi, line
    return None


def capture(name):
    inferior = gdb.selected_inferior()
    with open(f"/proc/{inferior.pid}/maps") as f:
        maps = f.read()
    newest = gdb.newest_frame()
    regs = {r: int(newest.read_register(r)) & MASK for r in ("rip", "rsp", "rbp")}
    found = _mapping_of(maps, regs["rsp"])
    base, end = regs["rsp"], regs["rsp"]
    if found:
        base = max(found[0], regs["rsp"] - RED_ZONE)
        end = min(found[1], regs["rsp"] + MAX_STACK_COPY)
    stack = bytes(inferior.read_memory(base, end - base)) if end > base else b""
    vdso = b""
    for line in maps.splitlines():
        if line.endswith("[vdso]"):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            vdso = bytes(inferior.read_memory(lo, hi - lo))
    frames = []
    frame, last = newest, newest
    while frame is not None and len(frames) < MAX_FRAMES:
        frames.append({"pc": frame.pc(), "name": frame.name(), "type": frame.type()})
        last = frame
        try:
            frame = frame.older()
        except gdb.error:
            break
    out = {"pid": inferior.pid, "regs": regs, "stack_base": base, "stack": stack.hex(),
           "maps": maps, "vdso": vdso.hex(), "frames": frames, "sigtramp": gdb.SIGTRAMP_FRAME,
           "made_up": [gdb.INLINE_FRAME, gdb.TAILCALL_FRAME],
           "stop": gdb.frame_stop_reason_string(last.unwind_stop_reason())}
    path = os.path.join(os.environ["UNWIND_CAPTURE_DIR"], f"{name}.json")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        json.dump(out, f)
    gdb.write(f"captured {name}: {len(frames)} frames, stop {out['stop']!r}\n")

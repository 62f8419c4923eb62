"""The end-of-run report on unresolved frames: per object, how many samples, why, and what
would fix it. This is the "Dealing with [unknown]s" advice of Pyroscope's eBPF docs, done for
the user with the facts of this recording.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from recording.untrusted import printable


@dataclass(frozen=True)
class Unresolved:
    """Why frames of an object were not named: a key of the unresolved report."""

    object: str  # recorded path, or a pseudo-object like [kernel], [anonymous], [unmapped]
    build_id: str | None
    reason: str


def fix_for(u: Unresolved) -> str:
    r = u.reason
    if u.object == "[unmapped]" or "outside every recorded mapping" in r or (
        "no mappings recorded" in r
    ):
        return ("the process's mappings were not recorded (it exited or exec'd before they "
                "were read); short-lived processes lose frames this way")
    if u.object == "[anonymous]":
        return ("JIT code: have the runtime write /tmp/perf-PID.map while recording "
                "(node --perf-basic-prof, perf-map-agent for the JVM)")
    if u.object == "[python]":
        return ("the code object was not read while its process lived (it exited within a "
                "drain interval of the sample, or the code object was freed): lower "
                "ebpf-record's --drain-interval; long-lived processes are not affected")
    if u.object == "[lost stacks]":
        return ("raise ebpf-record's --stack-storage-size (stack map collisions and a full "
                "map lose stacks)")
    if u.object.startswith("[kernel]"):
        return "record as root with kernel.kptr_restrict=0 so kernel symbols can be read"
    if "mismatch" in r:
        return ("the file was rebuilt or upgraded after the recording: give the original's "
                "debug file with --debug-dir or --debuginfod-url, or the original binaries "
                "under --sysroot")
    if "object missing" in r:
        return ("give the recording host's files with --sysroot DIR, or their debug files "
                "with --debug-dir DIR (a .build-id tree) or --debuginfod-url URL")
    bid = u.build_id
    where = f" (.build-id/{bid[:2]}/{bid[2:]}.debug)" if bid else ""
    pkg = ""
    if u.object.startswith(("/usr/", "/lib")):
        pkg = (f"install the debug package of the Debian package owning it (`dpkg -S "
               f"{u.object}`, then its -dbgsym or -dbg package), or ")
    return (f"{pkg}pass --debug-dir DIR holding its debug file{where}, or a debuginfod "
            "server with --debuginfod-url URL or DEBUGINFOD_URLS")


class UnresolvedReport:
    def __init__(self) -> None:
        self.samples: Counter[Unresolved] = Counter()

    def add(self, items: set[Unresolved], count: int) -> None:
        for u in items:
            self.samples[u] += count

    def render(self, total_samples: int, limit: int = 20) -> str:
        if not self.samples:
            return ""
        lines = [f"ebpf-symbolize: unresolved frames ({total_samples} samples in total):"]
        for u, n in self.samples.most_common(limit):
            bid = f" (build ID {u.build_id})" if u.build_id else ""
            # paths and reasons quote recorded strings: escaped, they cannot drive a terminal
            lines.append(f"  {printable(u.object)}{bid}: {n} samples: "
                         f"{printable(u.reason, 2000)}")
            lines.append(f"    fix: {printable(fix_for(u), 2000)}")
        if len(self.samples) > limit:
            lines.append(f"  ... and {len(self.samples) - limit} more")
        return "\n".join(lines) + "\n"

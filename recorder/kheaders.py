"""Kernel headers for bcc.

bcc compiles bpf/profile.c at load time against the running kernel's headers, which it looks
for at /lib/modules/$(uname -r)/build (and .../source for Debian's split packages), or in
/sys/kernel/kheaders.tar.xz (CONFIG_IKHEADERS). Some kernels (cloud and VM kernels like this
machine's) ship neither. A perf-event program only uses stable UAPI structures
(bpf_perf_event_data, pt_regs), so Debian's `linux-headers-amd64` for another kernel version
serves it. We link those in only when the running kernel has none, and say so.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import sys

from recording.errors import EnvironmentProblem

DEBIAN_HEADERS_GLOB = "/usr/src/linux-headers-*-amd64"


def running_headers_dir(release: str | None = None) -> str:
    return f"/lib/modules/{release or platform.release()}"


def has_running_headers(release: str | None = None) -> bool:
    base = running_headers_dir(release)
    return os.path.isdir(os.path.join(base, "build", "include")) or os.path.exists(
        "/sys/kernel/kheaders.tar.xz"
    )


def debian_headers() -> tuple[str, str] | None:
    """(build, source) directories of the newest Debian headers package installed."""
    builds = sorted(p for p in glob.glob(DEBIAN_HEADERS_GLOB) if os.path.isdir(p))
    if not builds:
        return None
    build = builds[-1]
    source = build[: -len("-amd64")] + "-common"
    return build, source if os.path.isdir(source) else build


def substitute_note(release: str | None = None) -> str | None:
    """One line when bcc will compile against another kernel's headers (linked earlier)."""
    release = release or platform.release()
    build = os.path.join(running_headers_dir(release), "build")
    if not os.path.islink(build):
        return None
    target = os.path.realpath(build)
    if release in os.path.basename(target):
        return None
    return (
        f"kernel {release} has no headers of its own; bcc uses Debian's "
        f"{os.path.basename(target)} (linked at {build}), which serves perf-event programs"
    )


def ensure_kernel_headers(*, quiet: bool = False) -> str | None:
    """Make headers visible to bcc. Returns the one-line note to print when bcc uses another
    kernel's headers, or None when the running kernel has its own."""
    release = platform.release()
    if has_running_headers(release):
        return substitute_note(release)
    found = debian_headers()
    if found is None:
        raise EnvironmentProblem(
            f"no kernel headers for {release}: bcc needs them to compile its BPF program; "
            "install Debian's linux-headers-amd64 (`apt-get install linux-headers-amd64`)"
        )
    build, source = found
    base = running_headers_dir(release)
    try:
        os.makedirs(base, exist_ok=True)
        for name, target in (("build", build), ("source", source)):
            link = os.path.join(base, name)
            if os.path.islink(link) or not os.path.exists(link):
                if os.path.islink(link):
                    os.unlink(link)
                os.symlink(target, link)
    except PermissionError:
        raise EnvironmentProblem(
            f"no kernel headers for {release} and no permission to link {build} at {base}/build; "
            "run as root"
        ) from None
    note = substitute_note(release) or f"linked {build} at {base}/build"
    if not quiet:
        print(note, file=sys.stderr)
    return note


TRACEFS = "/sys/kernel/tracing"


def ensure_tracefs() -> str | None:
    """bcc reads tracepoint formats (for TRACEPOINT_PROBE's `args`) from tracefs, which some
    minimal systems do not mount. Mount it as perf does when it is missing; returns a note."""
    if os.path.isdir(os.path.join(TRACEFS, "events")):
        return None
    import subprocess

    result = subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS],
                            capture_output=True, text=True)
    if result.returncode != 0 or not os.path.isdir(os.path.join(TRACEFS, "events")):
        raise EnvironmentProblem(
            f"tracefs is not mounted at {TRACEFS} and mounting it failed "
            f"({result.stderr.strip() or 'no events directory'}); run "
            f"`mount -t tracefs nodev {TRACEFS}` as root"
        )
    return f"mounted tracefs at {TRACEFS} (bcc reads tracepoint formats there)"


def main() -> int:
    ap = argparse.ArgumentParser(description="Link Debian kernel headers for bcc if needed.")
    ap.add_argument("--ensure", action="store_true")
    ap.parse_args()
    try:
        note = ensure_kernel_headers(quiet=True)
        mounted = ensure_tracefs()
    except EnvironmentProblem as exc:
        print(f"setup: {exc}", file=sys.stderr)
        return exc.exit_code
    for line in (note, mounted):
        if line:
            print(f"setup: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

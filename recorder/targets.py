"""What to profile: the whole system, given PIDs, or a command started for the purpose.

A command is started before BPF sampling begins but held at a gate (a pipe it reads in
`preexec_fn`, before exec) until its pid is a BPF target, so its very first instructions and
every child it forks are profiled, as `pyroscope exec` intends.

The recorder runs as root, the command need not: like `pyroscope exec` (its `--no-root-drop`:
"disables permissions drop when ran under root"), a command started under sudo runs as the
user who ran sudo (SUDO_UID, SUDO_GID, that user's supplementary groups, HOME/USER/LOGNAME).
It never sees the uploader's secrets (PYROSCOPE_AUTH_TOKEN, ...) that `sudo -E` passes along.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

from recorder.procfs import process_exists
from recording.errors import UsageError

PR_SET_NAME = 15  # include/uapi/linux/prctl.h
EXEC_COMM = b"ebpf-exec"
# PYROSCOPE_* variables whose name says they hold a credential (the uploader's
# PYROSCOPE_AUTH_TOKEN, PYROSCOPE_BASIC_AUTH_PASSWORD, PYROSCOPE_HEADER with API keys, ...).
SECRET_NAME_PARTS = ("TOKEN", "PASSW", "SECRET", "KEY", "HEADER", "CREDENTIAL")
# SIGTERM, then this long before SIGKILL when the recorder must stop the command (docker
# stop and systemd wait 10 s and 90 s; a command that has to stop because the disk is full
# should not hold the recorder much longer than the former).
STOP_GRACE_SECONDS = 10.0


def child_environment(environ: Mapping[str, str], run_as: RunAs | None) -> dict[str, str]:
    """The command's environment: the recorder's, without secrets, and naming its user."""
    env = {k: v for k, v in environ.items()
           if not (k.upper().startswith("PYROSCOPE_")
                   and any(part in k.upper() for part in SECRET_NAME_PARTS))}
    if run_as is not None:
        for key in ("HOME", "USER", "LOGNAME"):
            env.pop(key, None)
        if run_as.name is not None:
            env.update(HOME=run_as.home or "/", USER=run_as.name, LOGNAME=run_as.name)
    return env


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str | None = None
    home: str | None = None


def invoking_user(environ: Mapping[str, str], no_root_drop: bool = False) -> RunAs | None:
    """Who the command runs as: the user behind sudo, or None (as the recorder: root when it
    was not started by sudo, or with --no-root-drop)."""
    if no_root_drop or os.geteuid() != 0 or not environ.get("SUDO_UID"):
        return None
    try:
        uid = int(environ["SUDO_UID"])
        gid = int(environ["SUDO_GID"]) if environ.get("SUDO_GID") else None
    except ValueError:
        raise UsageError(f"SUDO_UID={environ.get('SUDO_UID')!r} / SUDO_GID="
                         f"{environ.get('SUDO_GID')!r} are not numbers; fix them or pass "
                         "--no-root-drop to run the command as root") from None
    if uid == 0:
        return None
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:  # no passwd entry: only the numbers are known
        return RunAs(uid, uid if gid is None else gid, (uid if gid is None else gid,))
    gid = pw.pw_gid if gid is None else gid
    return RunAs(uid, gid, tuple(os.getgrouplist(pw.pw_name, gid)), pw.pw_name, pw.pw_dir)


@dataclass(frozen=True)
class Target:
    mode: str  # "system" | "pid" | "command"
    pids: tuple[int, ...] = ()
    command: tuple[str, ...] = ()
    run_as: RunAs | None = None  # command mode: the user the command runs as (None: root)

    def describe(self) -> dict[str, str | list[str] | list[int]]:
        if self.mode == "command":
            return {"mode": self.mode, "command": list(self.command)}
        if self.mode == "pid":
            return {"mode": self.mode, "pids": list(self.pids)}
        return {"mode": self.mode}


def check_target(pids: tuple[int, ...], command: tuple[str, ...],
                 no_root_drop: bool = False) -> Target:
    """Validate before anything is loaded; one clear error per problem."""
    if pids and command:
        raise UsageError("give either --pid or a command after --, not both")
    if command:
        exe = command[0]
        found = shutil.which(exe) if os.sep not in exe else (exe if os.path.exists(exe) else None)
        if found is None:
            raise UsageError(f"command not found: {exe}; check the name or give its full path")
        if not os.access(found, os.X_OK) or os.path.isdir(found):
            raise UsageError(f"command is not executable: {found}; check its permissions")
        return Target("command", command=command,
                      run_as=invoking_user(os.environ, no_root_drop))
    if pids:
        for pid in pids:
            if pid <= 0:
                raise UsageError(f"--pid {pid} is not a process id; give a positive pid")
            if not process_exists(pid):
                raise UsageError(f"no process with pid {pid}; check `ps -p {pid}`")
        return Target("pid", pids=pids)
    return Target("system")


class GatedCommand:
    """A child process waiting at a gate until `release()`.

    subprocess.Popen cannot do this: it waits for the exec to happen before returning the pid.
    So: fork, let the child block on a pipe, then exec; an exec failure is reported back
    through a close-on-exec pipe (the way subprocess does it) and becomes exit code 127.
    """

    def __init__(self, argv: tuple[str, ...], run_as: RunAs | None = None) -> None:
        env = child_environment(os.environ, run_as)
        libc = ctypes.CDLL(None, use_errno=True)
        gate_r, gate_w = os.pipe()
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # child
            try:
                # Its samples before exec are the recorder's own code under the recorder's
                # name: named as perf names its child (`perf-exec`, tools/perf/util/evlist.c)
                # so that no profile shows them as the recorder's, nor as the command's.
                libc.prctl(PR_SET_NAME, EXEC_COMM, 0, 0, 0)
                os.close(gate_w)
                os.close(err_r)
                os.read(gate_r, 1)  # returns when the recorder writes or exits
                os.close(gate_r)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
                    signal.signal(sig, signal.SIG_DFL)
                if run_as is not None:
                    # groups first: after setresuid the process may no longer change them
                    os.setgroups(list(run_as.groups))
                    os.setresgid(run_as.gid, run_as.gid, run_as.gid)
                    os.setresuid(run_as.uid, run_as.uid, run_as.uid)
                os.execvpe(argv[0], list(argv), env)
            except OSError as exc:
                os.write(err_w, (exc.strerror or "exec failed").encode())
            finally:
                os._exit(127)
        os.close(gate_r)
        os.close(err_w)
        self._gate_w = gate_w
        self._err_r = err_r
        self.pid = pid
        self.argv = argv
        self.returncode: int | None = None

    def release(self) -> None:
        os.write(self._gate_w, b"g")
        os.close(self._gate_w)
        error = os.read(self._err_r, 4096)  # empty once exec succeeded (pipe closed by exec)
        os.close(self._err_r)
        if error:
            self.wait()
            raise UsageError(f"cannot start {self.argv[0]}: {error.decode(errors='replace')}")

    def abort(self) -> None:
        """Kill the command while it still waits at the gate (profiling could not start)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.close(self._gate_w)
        os.close(self._err_r)
        self.wait()

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> str | None:
        """End a running command because the recording failed: SIGTERM, SIGKILL after `grace`
        seconds. Says what happened, or None if it had exited already."""
        if self.poll() is not None:
            return None
        what = f"{self.argv[0]} (pid {self.pid})"
        self.forward(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.poll() is None:
            self.forward(signal.SIGKILL)
            self.wait()
            return f"killed {what}, which ignored SIGTERM for {grace:g} s"
        return f"stopped {what} with SIGTERM (its exit status {self.returncode})"

    def forward(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def _reap(self, flags: int) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, flags)
            except ChildProcessError:
                return self.returncode
            if pid == self.pid:
                # Shell convention: killed by signal N is 128 + N.
                self.returncode = (128 + os.WTERMSIG(status) if os.WIFSIGNALED(status)
                                   else os.WEXITSTATUS(status))
        return self.returncode

    def poll(self) -> int | None:
        return self._reap(os.WNOHANG)

    def wait(self) -> int:
        code = self._reap(0)
        return 127 if code is None else code

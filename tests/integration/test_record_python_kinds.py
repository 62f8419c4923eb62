"""Python frames in threads, asyncio tasks and multiprocessing workers (issue 14). Needs root
and BPF.

Each workload does fixed work, split 1:2 between an `alpha` and a `beta` (a thread, a task, a
worker process), so a loaded machine thins nothing and the shares hold whatever the timing.
Threads and worker processes name themselves (prctl PR_SET_NAME, which is what the sampler
records as comm), so that each sample says which one it was taken in."""

from __future__ import annotations

import pytest

from tests.integration.python_record import (
    COMMON,
    DEBIAN,
    caller_shares,
    pyenv_python,
    python_frames,
    python_id,
    python_rounds,
    record_folded,
    stacks,
)

pytestmark = [pytest.mark.bpf, pytest.mark.slow]

THREADS = COMMON + '''
import threading
def alpha(rounds):
    set_comm("t-alpha")
    for n in lengths(rounds): work(n)
def beta(rounds):
    set_comm("t-beta")
    for n in lengths(2 * rounds): work(n)
threads = [threading.Thread(target=f, args=(int(sys.argv[1]),)) for f in (alpha, beta)]
for t in threads: t.start()
for t in threads: t.join()
'''

ASYNCIO = COMMON + '''
import asyncio
class Jobs:
    async def alpha(self, rounds):
        for n in lengths(rounds):
            work(n)
            await asyncio.sleep(0)  # back to the loop: the other task runs
    async def beta(self, rounds):
        for n in lengths(2 * rounds):
            work(n)
            await asyncio.sleep(0)
async def main(rounds):
    jobs = Jobs()
    await asyncio.gather(jobs.alpha(rounds), jobs.beta(rounds))
asyncio.run(main(int(sys.argv[1])))
'''

MULTIPROCESSING = COMMON + '''
import multiprocessing
def alpha(rounds):
    set_comm("p-alpha")
    for n in lengths(rounds): work(n)
def beta(rounds):
    set_comm("p-beta")
    for n in lengths(2 * rounds): work(n)
if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[2])
    procs = [ctx.Process(target=f, args=(int(sys.argv[1]),)) for f in (alpha, beta)]
    for p in procs: p.start()
    for p in procs: p.join()
    sys.exit(max(p.exitcode for p in procs))
'''

# the thread-state lookup differs: by fs base (pthread_self) in 3.8-3.10, by native_thread_id
# from 3.11 on; 3.12 and 3.13 change the frame layout again
VERSIONS = [pyenv_python(m) for m in (8, 9, 10, 11, 12, 13)] + [DEBIAN]


def _check_split(folded: str, filename: str, names: dict[str, str], shares: bool = True
                 ) -> None:
    """Samples of each named thread or process have their own function's Python frames (and
    never the other's); with `shares`, the functions' shares are 1:2. `names`: comm ->
    function."""
    others = dict(zip(names, reversed(names.values()), strict=True))
    per: dict[str, int] = {}
    for comm, func in names.items():
        own = foreign = with_python = total = 0
        for frames, n in stacks(folded):
            if frames[0] != comm:
                continue
            total += n
            py = python_frames(frames, filename)
            with_python += n if py else 0
            own += n if func in py else 0
            foreign += n if others[comm] in py else 0
        assert total > 100, (comm, folded[-3000:])
        assert with_python >= 0.7 * total, (comm, with_python, total)
        assert own >= 0.9 * with_python, (comm, own, with_python)
        assert foreign == 0, (comm, foreign)
        per[func] = own
    if not shares:
        return
    alpha = per["alpha"] / (per["alpha"] + per["beta"])
    assert alpha == pytest.approx(1 / 3, abs=0.07), per


@pytest.mark.parametrize("python", VERSIONS, ids=python_id)
def test_threads_have_their_own_python_frames(python, tmp_path):
    script = tmp_path / "thr.py"
    script.write_text(THREADS)
    # alpha's thread ~1.6 s of CPU: ~640 samples at 400 Hz, whose first ~0.6 s on a fresh
    # machine (libpython's unwind table built from .eh_frame: no cached table yet) are stack
    # copies (test_record_python_copies.py checks their Python frames)
    folded, _ = record_folded(tmp_path, ["--", python, str(script),
                                         python_rounds(python, 1.6)])
    _check_split(folded, "thr.py", {"t-alpha": "alpha", "t-beta": "beta"})


@pytest.mark.parametrize("python", [pyenv_python(8), pyenv_python(10), DEBIAN,
                                    pyenv_python(12), pyenv_python(13)], ids=python_id)
def test_asyncio_tasks_show_their_coroutines(python, tmp_path):
    script = tmp_path / "tasks.py"
    script.write_text(ASYNCIO)
    # ~2.1 s of CPU in all: ~840 samples at 400 Hz
    folded, _ = record_folded(tmp_path, ["--", python, str(script),
                                         python_rounds(python, 0.7)])
    minor = int(python_id(python).split(".")[1]) if "pyenv" in python else 11
    # co_qualname exists from 3.11 on; before, a code object has its co_name only
    prefix = "Jobs." if minor >= 11 else ""
    shares, with_python, total = caller_shares(folded, "tasks.py", "work",
                                               (prefix + "alpha", prefix + "beta"))
    assert total > 400, folded[-3000:]
    assert with_python >= 0.7 * total, (with_python, total)
    assert shares[prefix + "alpha"] == pytest.approx(1 / 3, abs=0.07), shares
    # a task's coroutine runs from the event loop (asyncio's own frames, under <module>),
    # not from the coroutine that gathered it
    assert any(python_frames(frames, "tasks.py") == ["<module>", prefix + "beta", "work"]
               and any(f.startswith("base_events.py ") for f in frames)
               for frames, _n in stacks(folded)), folded[-3000:]


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("python", [pyenv_python(8), DEBIAN, pyenv_python(13)], ids=python_id)
def test_multiprocessing_workers_have_python_frames(python, method, tmp_path):
    script = tmp_path / "mp.py"
    script.write_text(MULTIPROCESSING)
    # workers that live for several drain windows (alpha's ~2 s of CPU); workers gone before
    # the drain after their samples: test_record_python_copies.py
    folded, _ = record_folded(tmp_path, ["--", python, str(script),
                                         python_rounds(python, 2.0), method])
    # no 1:2 check: the two run in parallel, then beta alone, and the same work's CPU time
    # differs between the two phases on a loaded machine (threads share one GIL: they do not)
    _check_split(folded, "mp.py", {"p-alpha": "alpha", "p-beta": "beta"}, shares=False)

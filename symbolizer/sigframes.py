"""Stack entries that are not return addresses: signal frames and injected calls.

Every entry of a user stack but the leaf is normally a return address, looked up at addr - 1
(the call, not the instruction after it). Two kinds of entries are exact instead:

1. A signal trampoline. The kernel starts a handler with the trampoline's address as its
   return address (x86-64: sa_restorer, glibc's and musl's `__restore_rt`; the vDSO's
   `__kernel_rt_sigreturn` on arm64; Go's runtime.sigreturn__sigaction): the handler returns
   to the trampoline's first byte, so addr - 1 would name whatever precedes it (perf's libdw
   unwinding prints `[unknown]` there; its frame-pointer mode, which looks up return
   addresses as they are, prints `__restore_rt`). A return address equal to the start of a
   symbol named here is looked up as it is.
2. The entry after one. DWARF unwinding through a signal frame (bpf/profile.c signal_step,
   as libunwind and libdw do) takes the interrupted frame's registers from the ucontext the
   kernel saved: the next entry is the interrupted instruction itself. Frame-pointer walks
   (`fp`, `kernel-fp`) skip the interrupted frame and give its caller's return address, so
   only stacks whose unwinder is `dwarf` or `dwarf+fp` are read that way. The recording does
   not say which step of a `dwarf+fp` stack went through the trampoline; the trampolines of
   libc and the vDSO come with CFI, so DWARF is taken to have done it.
   Go's runtime injects calls (runtime/signal_*.go pushCall) to asyncPreempt and sigpanic
   with the interrupted pc as their return address; Go's own traceback does not back it up
   (runtime/traceback.go: funcID_asyncPreempt, funcID_sigpanic), and neither do we, with any
   unwinder.
"""

from __future__ import annotations

TRAMPOLINES = frozenset({
    "__restore_rt",  # glibc and musl, x86-64
    "__kernel_rt_sigreturn", "__kernel_sigreturn",  # vDSO: arm64, i386, ...
    "__vdso_rt_sigreturn",
    "runtime.sigreturn", "runtime.sigreturn.abi0",  # Go before 1.21
    "runtime.sigreturn__sigaction", "runtime.sigreturn__sigaction.abi0",
})
INJECTED_CALLS = frozenset({
    "runtime.asyncPreempt", "runtime.asyncPreempt.abi0", "runtime.sigpanic",
    "runtime.sigpanic0.abi0",
})
# how the interrupted frame's pc is recorded after a trampoline (docs/recording-format.md)
_EXACT_AFTER_TRAMPOLINE = frozenset({"dwarf", "dwarf+fp"})

NORMAL, TRAMPOLINE, INJECTED = 0, 1, 2


def mark_of(name: str) -> int:
    if name in TRAMPOLINES:
        return TRAMPOLINE
    if name in INJECTED_CALLS:
        return INJECTED
    return NORMAL


def next_is_exact(mark: int, unwinder: str | None) -> bool:
    """Whether the entry after one with this mark is an exact pc, not a return address."""
    return mark == INJECTED or (mark == TRAMPOLINE and unwinder in _EXACT_AFTER_TRAMPOLINE)

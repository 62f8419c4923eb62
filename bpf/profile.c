// On-CPU stack sampling for ebpf-record (compiled by bcc at load time).
//
// A perf event (software CPU clock, one per CPU) fires at the sample rate; each firing counts
// (process, user stack, kernel stack) in a hash map, so the cost user space pays grows with the
// number of unique stacks rather than with samples, as bcc's tools/profile.py does. The maps
// come in two copies: the recorder flips `control[0]` before draining one copy, so samples
// taken while it reads go to the other copy and no stack id is cleared under a live sample.
//
// Options arrive as -D macros from recorder/bpf_program.py (libbpf-tools keeps them as
// read-only constants; bcc's equivalent is the preprocessor):
//   COUNTS_SIZE, STACKS_SIZE  entries per copy of the count and stack maps
//   FILTER_PIDS               1: only tgids in `targets` (and their children) are sampled
//   INCLUDE_IDLE              1: keep samples of the idle task (tgid 0)
#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf_perf_event.h>
#include <linux/sched.h>

#ifndef PROT_EXEC
#define PROT_EXEC 0x4  // include/uapi/asm-generic/mman-common.h
#endif

struct key_t {
    u32 tgid;
    s32 user_stack_id;    // >= 0: id in stacks{0,1}; < 0: -errno from bpf_get_stackid
    s32 kernel_stack_id;
    char comm[TASK_COMM_LEN];
};

// Why user space should (re)read a process's mappings. The value of `seen[tgid]` holds the
// same codes: SEEN_OK once read, or the reason a re-read is due.
#define SEEN_OK 1
#define EV_NEW 2   // first sample of this tgid (or first since the recorder forgot it)
#define EV_EXEC 3  // exec replaced every mapping: read now, the process may be short-lived
#define EV_MMAP 4  // a new executable mapping (dlopen, JIT): read at the next drain is enough

struct event_t {
    u32 tgid;
    u32 reason;
};

BPF_HASH(counts0, struct key_t, u64, COUNTS_SIZE);
BPF_HASH(counts1, struct key_t, u64, COUNTS_SIZE);
BPF_STACK_TRACE(stacks0, STACKS_SIZE);
BPF_STACK_TRACE(stacks1, STACKS_SIZE);
BPF_ARRAY(control, u32, 1);
// Per-CPU counters, summed by user space: see LOST_* in recorder/bpf_program.py.
BPF_PERCPU_ARRAY(stats, u64, 4);
BPF_HASH(targets, u32, u8, 65536);
// tgid -> SEEN_OK or a pending EV_* reason. A sample of a tgid that is missing or not SEEN_OK
// sends an event, so the recorder reads /proc/PID/maps within milliseconds of a process's
// first sample (or first sample after exec), not at the next drain: a process that lives
// 200 ms must still symbolize after it exits.
BPF_HASH(seen, u32, u8, 65536);
BPF_PERF_OUTPUT(events);

#define STAT_SAMPLES 0
#define STAT_USER_STACK_LOST 1
#define STAT_KERNEL_STACK_LOST 2
#define STAT_COUNTS_FULL 3

static __always_inline void bump(int idx)
{
    u64 *v = stats.lookup(&idx);
    if (v)
        *v += 1;  // per-CPU slot: no other CPU writes it
}

// -EFAULT means "no stack of this kind" (a kernel thread has no user stack; a sample taken in
// user mode has no kernel stack): not a loss. -EEXIST (hash collision) and -ENOMEM (map full)
// are losses the operator can fix with a bigger --stack-storage-size.
static __always_inline void note_stack_error(s32 id, int idx)
{
    if (id < 0 && id != -EFAULT)
        bump(idx);
}

int on_sample(struct bpf_perf_event_data *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (tgid == 0 && !INCLUDE_IDLE)
        return 0;
#if FILTER_PIDS
    if (targets.lookup(&tgid) == NULL)
        return 0;
#endif
    bump(STAT_SAMPLES);

    u8 *state = seen.lookup(&tgid);
    u32 reason = 0;
    if (state == NULL) {
        u8 ok = SEEN_OK;
        if (seen.insert(&tgid, &ok) == 0)
            reason = EV_NEW;
    } else if (*state != SEEN_OK) {
        reason = *state;
        *state = SEEN_OK;  // two CPUs may both send it: a duplicate event is harmless
    }
    if (reason) {
        struct event_t ev = {.tgid = tgid, .reason = reason};
        events.perf_submit(ctx, &ev, sizeof(ev));
    }

    struct key_t key = {.tgid = tgid};
    bpf_get_current_comm(&key.comm, sizeof(key.comm));

    u32 zero = 0;
    u32 *active = control.lookup(&zero);
    u64 init = 0, *count;
    if (active && *active) {
        key.user_stack_id = stacks1.get_stackid(&ctx->regs, BPF_F_USER_STACK);
        key.kernel_stack_id = stacks1.get_stackid(&ctx->regs, 0);
        count = counts1.lookup_or_try_init(&key, &init);
    } else {
        key.user_stack_id = stacks0.get_stackid(&ctx->regs, BPF_F_USER_STACK);
        key.kernel_stack_id = stacks0.get_stackid(&ctx->regs, 0);
        count = counts0.lookup_or_try_init(&key, &init);
    }
    note_stack_error(key.user_stack_id, STAT_USER_STACK_LOST);
    note_stack_error(key.kernel_stack_id, STAT_KERNEL_STACK_LOST);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        bump(STAT_COUNTS_FULL);
    return 0;
}

// A fork starts a process whose maps nobody has read yet, even if its pid was used before;
// under --pid or -- CMD, children of targets become targets (as `pyroscope exec` follows them).
TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    u32 child = args->child_pid;
    seen.delete(&child);
#if FILTER_PIDS
    u8 one = 1;
    if (targets.lookup(&parent))
        targets.update(&child, &one);
#endif
    return 0;
}

// exec replaces every mapping: read them again right after the next sample.
TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u8 reason = EV_EXEC;
    seen.update(&tgid, &reason);
    return 0;
}

// A new executable mapping (dlopen, a JIT's code heap) only adds mappings, so the old snapshot
// stays right for everything it covers: ask for a re-read, which the recorder batches per
// drain (a Python import of 20 extension modules costs one re-read, not 20).
TRACEPOINT_PROBE(syscalls, sys_enter_mmap)
{
    if (args->prot & PROT_EXEC) {
        u32 tgid = bpf_get_current_pid_tgid() >> 32;
        u8 *state = seen.lookup(&tgid);
        if (state && *state == SEEN_OK)
            *state = EV_MMAP;
    }
    return 0;
}

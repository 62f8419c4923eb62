// On-CPU stack sampling for ebpf-record (compiled by bcc at load time).
//
// A perf event (software CPU clock, one per CPU) fires at the sample rate; each firing counts
// (process, user stack, kernel stack) in a hash map, so the cost user space pays grows with the
// number of unique stacks rather than with samples, as bcc's tools/profile.py does.
//
// Stacks are stored by the program itself, keyed by a 64-bit hash of their addresses, instead
// of in a BPF_STACK_TRACE map: bpf_get_stackid() drops a stack whose bucket is taken
// (-EEXIST), and bcc 0.26 cannot empty a stack map (StackTrace.clear() is `pass`), so loss grew
// with run time. A hash map keyed by the whole 64-bit hash loses a stack only when it is full,
// which is counted, and is emptied at every drain. The same storage holds the user stacks the
// .eh_frame unwinder below produces (the OpenTelemetry profiler and Parca store their unwound
// stacks the same way: by hash, aggregated in the kernel).
//
// The maps come in two copies: the recorder flips `control[0]` before draining one copy, so
// samples taken while it reads go to the other copy and no stack is removed under a live count.
//
// User stacks (CALL_GRAPH_DWARF): unwound here from tables user space builds from each
// object's .eh_frame (unwind/table.py documents the rows), per frame: find the mapping of the
// pc in the process's sorted mapping list, binary-search the object's rows, compute the CFA
// and read the return address (and saved rbp) with bpf_probe_read_user. Where an object has no
// table (JIT code, a process not yet snapshotted) a frame-pointer step is taken instead. bcc
// 0.26 cannot load bpf_loop callbacks (no BPF-to-BPF calls), so the walk continues through
// tail calls of `unwind_user`, FRAMES_PER_CALL frames per call, within the kernel's limit of
// 33 tail calls (MAX_TAIL_CALL_CNT).
//
// Options arrive as -D macros from recorder/bpf_program.py (libbpf-tools keeps them as
// read-only constants; bcc's equivalent is the preprocessor):
//   COUNTS_SIZE, STACKS_SIZE  entries per copy of the count and stack maps
//   FILTER_PIDS               1: only tgids in `targets` (and their children) are sampled
//   INCLUDE_IDLE              1: keep samples of the idle task (tgid 0)
//   CALL_GRAPH_DWARF          1: .eh_frame unwinding with frame-pointer fallback; 0: the
//                             kernel's frame-pointer walk (perf --call-graph fp)
//   ROWS_SIZE, PROCS_SIZE     unwind rows (all objects) and processes with mapping lists
//   MAX_OBJECTS               objects the recorder can index in `wanted`
//   COPY_PAGES                pages of the ring of copied stacks (a power of two)
#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf_perf_event.h>
#include <linux/sched.h>

#ifndef PROT_EXEC
#define PROT_EXEC 0x4  // include/uapi/asm-generic/mman-common.h
#endif

#define MAX_STACK_DEPTH 127   // perf's default kernel.perf_event_max_stack
#define FRAMES_PER_CALL 8
#define MAX_TAIL_CALLS 30     // below MAX_TAIL_CALL_CNT (33)
#define MAX_MAPPINGS 256      // executable mappings per process (a power of two: masks index)
#define MAPPING_SEARCH_STEPS 9   // ceil(log2(MAX_MAPPINGS)) + 1
#define ROW_SEARCH_STEPS 24      // up to 16M rows in one object's table

struct stack_t {
    u32 len;
    u32 pad;
    u64 ips[MAX_STACK_DEPTH];
};

// Which unwinder produced a user stack (bits) and why it stopped: USER_STOP_* and
// UNWINDER_* in recorder/bpf_program.py, documented in docs/recording-format.md.
#define UNWINDER_DWARF 1
#define UNWINDER_FP 2
#define UNWINDER_KERNEL_FP 4
#define UNWINDER_PYTHON 8

#define STOP_NONE 0
#define STOP_ENTRY 1        // CFI says the return address is undefined: _start, thread start
#define STOP_FP_END 2       // frame-pointer chain ended (rbp 0, as _start leaves it)
#define STOP_DEPTH 3        // MAX_STACK_DEPTH frames
#define STOP_READ_FAULT 4   // a read of the user stack failed (not resident, bad pointer)
#define STOP_UNSUPPORTED 5  // a CFA rule the table cannot express, or rbp needed but unknown
#define STOP_BAD_FRAME 6    // the next frame is not above this one (corrupt or no FP chain)
#define STOP_ZERO_PC 7      // a return address of 0

struct key_t {
    u32 tgid;
    u8 user_unwinder;     // UNWINDER_* bits
    u8 user_stop;         // STOP_*
    u16 pad;
    s32 user_stack_error;    // 0, or -EFAULT (no user stack) / -ENOMEM (stack map full)
    s32 kernel_stack_error;
    u64 user_stack;       // hash: key in stacks{0,1}; 0 when there is none
    u64 kernel_stack;
    char comm[TASK_COMM_LEN];
};

// Unwind rows: unwind/table.py's rules, in a compact 8-byte form (recorder/unwinder.py
// converts): every CFA and rbp offset in Debian's libc, python3.11, libstdc++ and libLLVM is a
// multiple of 8 and ELF addresses fit 32 bits, so half the kernel memory holds the same rows.
#define CFA_UNDEFINED 0
#define CFA_RSP 1
#define CFA_RBP 2
#define CFA_PLT 3
#define CFA_SIGNAL 4
#define CFA_END 5
#define CFA_UNSUPPORTED 6
#define RBP_SAME 0
#define RBP_AT_CFA 1
#define RBP_UNDEFINED 2

struct row_t {
    u32 pc;          // ELF address where the row starts to apply (the table's pc)
    u16 cfa_offset8; // CFA offset / 8
    u8 rules;        // cfa_rule | rbp_rule << 4
    u8 rbp_offset8;  // (s8) rbp's save slot relative to the CFA / 8; CFA_PLT: the threshold
                     // (u8 in the struct: bcc 0.26 has no ctype for `signed char`)
};
#define CFA_RULE(r) ((r)->rules & 15)
#define RBP_RULE(r) ((r)->rules >> 4)

// One executable mapping of a process; `bias` turns an address into the object's ELF address
// (address - bias), and [table_start, table_start + table_len) are its rows in `unwind_rows`.
struct mapping_t {
    u64 start;
    u64 end;
    u64 bias;
    u32 table_start;
    u32 table_len;
    u32 object;  // index in `wanted`; NO_OBJECT for anonymous memory
    u32 pad;
};
#define NO_OBJECT 0xffffffff

struct proc_t {
    u32 count;   // mappings used, sorted by start
    u32 pad;
    struct mapping_t m[MAX_MAPPINGS];
};

// Code objects a young CPython process's sample ran that no sample of it ran before
// (bpf/python.h, py_note_code): sent to the recorder as soon as the sample ends, so that it
// reads them while the process lives; the drain is up to a window later.
#define PY_FRESH_MAX 8
struct fresh_t {
    u32 tgid;
    u32 n;
    u64 code[PY_FRESH_MAX];
    u32 checksum[PY_FRESH_MAX];
};

// Per-CPU scratch: a sample's state while tail calls continue its walk (the BPF stack is only
// 512 bytes).
struct state_t {
    struct key_t key;
    struct stack_t user;
    struct stack_t kernel;
    u64 pc, sp, bp;
    u64 hash;
    u32 buffer;      // copy of the maps this sample goes to (control[0] at its start)
    u32 tail_calls;
    u64 py_frame;    // next Python frame to record (bpf/python.h), 0: none
    u64 py_done_sp;  // sp of the _PyEval_EvalFrameDefault frame whose Python frames are out
    u8 bp_known;
    u8 exact_pc;     // the pc is not a return address (first frame, or after a signal frame)
    u8 py_on;        // the process is a CPython the recorder described in `pyprocs`
    u8 py_eager;     // in its first moments: note code objects not seen before (python.h)
    struct fresh_t fresh;  // those noted by this sample, sent at its end
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
    u32 ppid;  // EV_NEW: the parent that forked it since the recorder started, else 0
    u32 uid;   // its real uid now: whose /tmp/perf-PID.map to trust if it is gone when read
};

BPF_HASH(counts0, struct key_t, u64, COUNTS_SIZE);
BPF_HASH(counts1, struct key_t, u64, COUNTS_SIZE);
// Preallocated (1 KiB per entry): an on-demand allocation in a perf-event program can fail
// under a burst (bpf_mem_alloc refills its per-CPU caches asynchronously), preallocated
// entries cannot. STACKS_SIZE holds every stack of a window (recorder/options.py).
BPF_HASH(stacks0, u64, struct stack_t, STACKS_SIZE);
BPF_HASH(stacks1, u64, struct stack_t, STACKS_SIZE);
BPF_ARRAY(control, u32, 1);
BPF_PERCPU_ARRAY(scratch, struct state_t, 1);
// Per-CPU counters, summed by user space: see STAT_* in recorder/bpf_program.py.
BPF_PERCPU_ARRAY(stats, u64, 8);
BPF_HASH(targets, u32, u8, 65536);
// tgid -> SEEN_OK or a pending EV_* reason. A sample of a tgid that is missing or not SEEN_OK
// sends an event, so the recorder reads /proc/PID/maps within milliseconds of a process's
// first sample (or first sample after exec), not at the next drain: a process that lives
// 200 ms must still symbolize after it exits.
BPF_HASH(seen, u32, u8, 65536);
// child tgid -> parent tgid, from fork until exec or exit: a child that forked without exec
// (a subshell, a pre-fork worker) runs its parent's mappings, so the recorder can snapshot it
// from its parent even when it is gone before its own /proc could be read.
BPF_HASH(parents, u32, u32, 65536);
BPF_PERF_OUTPUT(events);
BPF_PERF_OUTPUT(pycodes);  // struct fresh_t
struct pycode_key_t {
    u32 tgid;
    u32 checksum;
    u64 code;
};
// (process, code object) pairs already sent; least recently used forgotten first, which at
// worst sends one again (the recorder reads each once)
BPF_TABLE("lru_hash", struct pycode_key_t, u8, pycodes_seen, 16384);
// Unwind tables of every loaded object, back to back; user space writes them through mmap.
BPF_F_TABLE("array", u32, struct row_t, unwind_rows, ROWS_SIZE, BPF_F_MMAPABLE);
BPF_F_TABLE("hash", u32, struct proc_t, procs, PROCS_SIZE, BPF_F_NO_PREALLOC);
// object index -> byte 0 set to 1 once a frame needed the object's table and it was not
// loaded (user space answers 2): user space
// loads tables on demand, as the OpenTelemetry profiler does, so the rows go to the code that
// runs, not to every large library a process maps (libLLVM, libarrow: a million rows each).
// (u64 values: an mmap-able array lays its elements out 8 bytes apart anyway, kernel/bpf/
// arraymap.c rounds elem_size up to 8)
// Byte 1 of the value: set when a frame used the object's loaded table. User space clears
// it and so learns which tables are in use: when the rows run out, tables no frame used for
// a while give way (recorder/unwinder.py). All stores are of one byte, so none undoes a
// store to the other byte.
BPF_F_TABLE("array", u32, u64, wanted, MAX_OBJECTS, BPF_F_MMAPABLE);
BPF_PROG_ARRAY(progs, 1);

#define STAT_SAMPLES 0
#define STAT_USER_STACK_LOST 1
#define STAT_KERNEL_STACK_LOST 2
#define STAT_COUNTS_FULL 3
#define STAT_TARGETS_FULL 4
#define STAT_SEEN_FULL 5
#define STAT_COPIES_LOST 6

static __always_inline void bump(int idx)
{
    u64 *v = stats.lookup(&idx);
    if (v)
        *v += 1;  // per-CPU slot: no other CPU writes it
}

// One step of a 64-bit multiply-xorshift hash over the frames (splitmix64's finalizer): a
// collision between two different stacks would merge them; with 2^64 values and at most
// millions of stacks per window its odds are below 1e-6 per window.
static __always_inline u64 mix(u64 h, u64 v)
{
    h ^= v;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 31;
    return h;
}

static __always_inline u64 finish_hash(u64 h, u32 len)
{
    h = mix(h, len);
    return h ? h : 1;  // 0 means "no stack" in key_t
}

// Store a stack in the active copy; returns its hash, or 0 with *err set when the map is full.
static __always_inline u64 store_stack(u32 buffer, struct stack_t *s, u64 h, s32 *err)
{
    int r;
    if (buffer)
        r = stacks1.insert(&h, s);
    else
        r = stacks0.insert(&h, s);
    if (r == 0 || r == -EEXIST)  // EEXIST: the same stack is stored already
        return h;
    *err = -ENOMEM;
    return 0;
}

static __always_inline u64 hash_stack(struct stack_t *s)
{
    u64 h = 0;
    // not unrolled: clang's 2x unrolled form defeats the verifier's bounds tracking
#pragma clang loop unroll(disable)
    for (int i = 0; i < MAX_STACK_DEPTH; i++) {
        if (i >= s->len)
            break;
        h = mix(h, s->ips[i]);
    }
    return finish_hash(h, s->len);
}

// Count the sample: store the user stack (already hashed while unwinding, or hashed here
// for the kernel's frame-pointer walk) and bump (process, stacks)'s count.
static __always_inline void finish(struct state_t *st)
{
    struct key_t *key = &st->key;
    if (key->user_stack_error == 0) {
        if (st->user.len == 0) {
            key->user_stack_error = -EFAULT;
        } else {
#if CALL_GRAPH_DWARF
            u64 h = finish_hash(st->hash, st->user.len);  // hashed frame by frame
#else
            u64 h = hash_stack(&st->user);
#endif
            key->user_stack = store_stack(st->buffer, &st->user, h, &key->user_stack_error);
            if (key->user_stack_error)
                bump(STAT_USER_STACK_LOST);
        }
    }
    u64 init = 0, *count;
    if (st->buffer)
        count = counts1.lookup_or_try_init(key, &init);
    else
        count = counts0.lookup_or_try_init(key, &init);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        bump(STAT_COUNTS_FULL);
}

static __always_inline int read_user(u64 *out, u64 addr)
{
    return bpf_probe_read_user(out, sizeof(*out), (void *)addr);
}

// The mapping that contains pc: the last one with start <= pc, if pc < its end.
static __always_inline struct mapping_t *find_mapping(struct proc_t *proc, u64 pc)
{
    u32 lo = 0, hi = proc->count;
    if (hi > MAX_MAPPINGS)
        return NULL;
    for (int i = 0; i < MAPPING_SEARCH_STEPS; i++) {
        if (lo >= hi)
            break;
        u32 mid = (lo + hi) / 2;
        if (proc->m[mid & (MAX_MAPPINGS - 1)].start <= pc)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    struct mapping_t *m = &proc->m[(lo - 1) & (MAX_MAPPINGS - 1)];
    return pc < m->end ? m : NULL;
}

// The row that applies at `addr` (an ELF address): the last with row.pc <= addr.
static __always_inline struct row_t *find_row(struct mapping_t *m, u64 addr)
{
    if (addr >> 32)
        return NULL;  // beyond 32-bit ELF addresses: the loader gave such an object no table
    u32 lo = m->table_start, hi = m->table_start + m->table_len;
    u32 first = lo;
    for (int i = 0; i < ROW_SEARCH_STEPS; i++) {
        if (lo >= hi)
            break;
        u32 mid = lo + (hi - lo) / 2;
        struct row_t *r = unwind_rows.lookup(&mid);
        if (r == NULL)
            return NULL;
        if (r->pc <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == first)
        return NULL;
    u32 at = lo - 1;
    return unwind_rows.lookup(&at);
}

// Caller's frame from a frame pointer chain: [rbp] = caller's rbp, [rbp+8] = return address.
static __always_inline int fp_step(struct state_t *st)
{
    st->key.user_unwinder |= UNWINDER_FP;  // attempted: counts the stacks that needed it
    if (!st->bp_known || st->bp == 0)
        return STOP_FP_END;
    if (st->bp < st->sp)
        return STOP_BAD_FRAME;  // a frame pointer below the stack pointer is not a frame
    u64 next_bp, ra;
    if (read_user(&next_bp, st->bp) || read_user(&ra, st->bp + 8))
        return STOP_READ_FAULT;
    st->sp = st->bp + 16;
    st->bp = next_bp;
    st->pc = ra;
    st->exact_pc = 0;
    return STOP_NONE;
}

// The frame interrupted by a signal: its registers are in the ucontext the kernel pushed
// (arch/x86/kernel/signal_64.c: struct rt_sigframe; after the handler returned into
// __restore_rt the return address is popped, so rsp points at the ucontext, whose
// uc_mcontext starts at 40; sigcontext_64: rbp at 80, rsp at 120, rip at 128).
static __always_inline int signal_step(struct state_t *st)
{
    u64 sp = st->sp, pc, nsp, bp;
    if (read_user(&pc, sp + 168) || read_user(&nsp, sp + 160) || read_user(&bp, sp + 120))
        return STOP_READ_FAULT;
    st->pc = pc;
    st->sp = nsp;
    st->bp = bp;
    st->bp_known = 1;
    st->exact_pc = 1;  // an interrupted instruction, not a return address
    st->key.user_unwinder |= UNWINDER_DWARF;
    return STOP_NONE;
}

static __always_inline int dwarf_step(struct state_t *st, struct row_t *row)
{
    st->key.user_unwinder |= UNWINDER_DWARF;  // attempted: a first step that fails names it too
    u64 cfa, offset = (u64)row->cfa_offset8 * 8;
    switch (CFA_RULE(row)) {
    case CFA_RSP:
        cfa = st->sp + offset;
        break;
    case CFA_RBP:
        if (!st->bp_known)
            return STOP_UNSUPPORTED;
        cfa = st->bp + offset;
        break;
    case CFA_PLT:
        // binutils' lazy PLT: 8 more bytes once the entry pushed its relocation index
        cfa = st->sp + offset + (((st->pc & 15) >= (u64)row->rbp_offset8) ? 8 : 0);
        break;
    case CFA_SIGNAL:
        return signal_step(st);
    case CFA_END:
        return STOP_ENTRY;
    case CFA_UNDEFINED:
        return fp_step(st);
    default:
        return STOP_UNSUPPORTED;
    }
    u64 ra;
    if (read_user(&ra, cfa - 8))  // x86-64 psABI: the return address sits just below the CFA
        return STOP_READ_FAULT;
    if (RBP_RULE(row) == RBP_AT_CFA) {
        u64 bp;
        if (read_user(&bp, cfa + (s64)(s8)row->rbp_offset8 * 8))
            return STOP_READ_FAULT;
        st->bp = bp;
        st->bp_known = 1;
    } else if (RBP_RULE(row) != RBP_SAME) {
        st->bp_known = 0;
    }
    if (cfa <= st->sp && CFA_RULE(row) != CFA_PLT)
        return STOP_BAD_FRAME;  // the caller's frame must lie above this one
    st->sp = cfa;
    st->pc = ra;
    st->exact_pc = 0;
    st->key.user_unwinder |= UNWINDER_DWARF;
    return STOP_NONE;
}

// The map calls python.h needs: bcc 0.26 rewrites `m.insert()` in the main file only.
static __always_inline void py_note_code(struct state_t *st, u64 code, u32 checksum)
{
    u32 n = st->fresh.n;
    if (!st->py_eager || n >= PY_FRESH_MAX)
        return;
    struct pycode_key_t k = {.tgid = st->key.tgid, .checksum = checksum, .code = code};
    u8 one = 1;
    if (pycodes_seen.insert(&k, &one) == 0) {  // BPF_NOEXIST: fails for a key already there
        st->fresh.code[n & (PY_FRESH_MAX - 1)] = code;
        st->fresh.checksum[n & (PY_FRESH_MAX - 1)] = checksum;
        st->fresh.n = n + 1;
    }
}

#include "python.h"
// pid -> where its interpreter keeps its threads and frames (recorder/python/)
BPF_HASH(pyprocs, u32, struct py_proc_t, 4096);

// A sample of a process whose mapping list is not in the kernel yet (its first milliseconds,
// before the recorder read /proc or loaded its tables) would get frame-pointer steps only:
// its user stack is copied instead, as perf --call-graph dwarf copies every sample's, and the
// recorder unwinds the copy with the same tables in user space (unwind/reference.py) once it
// has them. Only these samples pay for a copy. The copy starts 128 bytes below rsp (the
// x86-64 red zone), because an epilogue's CFI may still name a slot just popped.
#define STACK_COPY 8192  // perf's default dump size for --call-graph dwarf
#define RED_ZONE 128
struct copy_t {
    u32 tgid;
    u32 len;             // bytes of data, from sp - RED_ZONE
    s32 kernel_error;
    u32 kernel_len;
    u64 pc, sp, bp;
    char comm[TASK_COMM_LEN];
    u64 eval_start, eval_end;  // the process's _PyEval_EvalFrameDefault (py_proc_t), or 0
    u32 py_len;                // slots of py[] in use
    u32 pad;
    u64 kernel[MAX_STACK_DEPTH];
    u64 py[MAX_STACK_DEPTH];   // its Python frames, activation by activation (python.h)
    u8 data[STACK_COPY + 4096];  // slack: the verifier bounds offset + a page-sized read
};
BPF_RINGBUF_OUTPUT(copies, COPY_PAGES);

static __always_inline int copy_user_stack(struct state_t *st, struct py_proc_t *py)
{
    struct copy_t *c = copies.ringbuf_reserve(sizeof(struct copy_t));
    if (c == NULL) {
        bump(STAT_COPIES_LOST);  // the ring is full: frame-pointer steps for this one
        return 0;
    }
    // The Python frames are read now, while the thread is stopped in them; the native frames
    // they interleave with are known only once user space unwinds the copy.
    c->eval_start = 0;
    c->eval_end = 0;
    if (st->py_on && py) {
        py_walk_all(st, py);
        c->eval_start = py->eval_start;
        c->eval_end = py->eval_end;
    }
    c->py_len = st->user.len;
    bpf_probe_read_kernel(c->py, sizeof(c->py), st->user.ips);
    c->tgid = st->key.tgid;
    c->pc = st->pc;
    c->sp = st->sp;
    c->bp = st->bp;
    __builtin_memcpy(c->comm, st->key.comm, sizeof(c->comm));
    c->kernel_error = st->key.kernel_stack_error;
    c->kernel_len = st->kernel.len;
    bpf_probe_read_kernel(c->kernel, sizeof(c->kernel), st->kernel.ips);
    // page by page: a read that crosses the end of the stack mapping fails as a whole
    u64 start = st->sp - RED_ZONE;
    u32 len = 0;
    for (int i = 0; i < STACK_COPY / 4096 + 1; i++) {
        u64 at = start + len;
        u32 chunk = 4096 - (at & 4095);
        if (len >= STACK_COPY)
            break;
        if (chunk > STACK_COPY - len)
            chunk = STACK_COPY - len;
        if (chunk > 4096 || chunk == 0)
            break;
        if (bpf_probe_read_user(c->data + (len & (STACK_COPY - 1)), chunk, (void *)at))
            break;
        len += chunk;
    }
    c->len = len;
    copies.ringbuf_submit(c, 0);
    return 1;
}

// Record the current pc as a frame, then move to the caller. Returns STOP_* (NONE: go on).
static __always_inline int unwind_frame(struct state_t *st, struct proc_t *proc,
                                        struct py_proc_t *py)
{
    u32 n = st->user.len;
    if (n >= MAX_STACK_DEPTH)
        return STOP_DEPTH;
    if (st->pc == 0)
        return STOP_ZERO_PC;
    if (py_before_native(st, py))
        return STOP_NONE;  // a Python frame took this step; the native frame comes next
    st->user.ips[n] = st->pc;
    st->user.len = n + 1;
    st->hash = mix(st->hash, st->pc);

    struct mapping_t *m = proc ? find_mapping(proc, st->pc) : NULL;
    if (m == NULL)
        return fp_step(st);
    u32 object = m->object;
    // Cheap on every frame: the verifier inlines lookups in an array map to a bounds check
    // and an add (kernel/bpf/verifier.c calls array_map_gen_lookup), no helper call.
    u64 *want = wanted.lookup(&object);
    if (m->table_len == 0) {
        if (want && ((u8 *)want)[0] == 0)
            ((u8 *)want)[0] = 1;
        return fp_step(st);
    }
    if (want && ((u8 *)want)[1] == 0)
        ((u8 *)want)[1] = 1;  // read first: the cache line stays shared while the byte is set
    // A return address points after the call; the call itself (pc - 1) is what the CFI
    // of the calling function covers (a call at a function's end would otherwise be looked
    // up in the next function).
    u64 addr = st->pc - m->bias - (st->exact_pc ? 0 : 1);
    struct row_t *row = find_row(m, addr);
    if (row == NULL)
        return fp_step(st);
    return dwarf_step(st, row);
}

static __always_inline int unwind_some(struct state_t *st)
{
    u32 tgid = st->key.tgid;
    struct proc_t *proc = procs.lookup(&tgid);
    struct py_proc_t *py = st->py_on ? pyprocs.lookup(&tgid) : NULL;
    for (int i = 0; i < FRAMES_PER_CALL; i++) {
        int stop = unwind_frame(st, proc, py);
        if (stop != STOP_NONE)
            return stop;
    }
    return STOP_NONE;
}

int unwind_user(struct bpf_perf_event_data *ctx)
{
    u32 zero = 0;
    struct state_t *st = scratch.lookup(&zero);
    if (st == NULL)
        return 0;
    int stop = unwind_some(st);
    if (stop == STOP_NONE) {
        st->tail_calls++;
        if (st->tail_calls < MAX_TAIL_CALLS)
            progs.call(ctx, 0);
        stop = STOP_DEPTH;  // the tail call limit is a depth limit too
    }
    st->key.user_stop = stop;
    finish(st);
    if (st->fresh.n)
        pycodes.perf_submit(ctx, &st->fresh, sizeof(st->fresh));
    return 0;
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
        int r = seen.insert(&tgid, &ok);
        if (r == 0)
            reason = EV_NEW;
        else if (r != -EEXIST)
            bump(STAT_SEEN_FULL);
    } else if (*state != SEEN_OK) {
        reason = *state;
        *state = SEEN_OK;  // two CPUs may both send it: a duplicate event is harmless
    }
    if (reason) {
        struct event_t ev = {.tgid = tgid, .reason = reason,
                             .uid = (u32)bpf_get_current_uid_gid()};
        u32 *parent = reason == EV_NEW ? parents.lookup(&tgid) : NULL;
        if (parent)
            ev.ppid = *parent;
        events.perf_submit(ctx, &ev, sizeof(ev));
    }

    u32 zero = 0;
    struct state_t *st = scratch.lookup(&zero);
    if (st == NULL)
        return 0;
    __builtin_memset(&st->key, 0, sizeof(st->key));
    st->key.tgid = tgid;
    bpf_get_current_comm(&st->key.comm, sizeof(st->key.comm));
    u32 *active = control.lookup(&zero);
    st->buffer = (active && *active) ? 1 : 0;

    // Kernel stack: the kernel's own unwinder (ORC on Debian's kernels), as before.
    long klen = bpf_get_stack(ctx, st->kernel.ips, sizeof(st->kernel.ips), 0);
    if (klen > 0) {
        st->kernel.len = klen / sizeof(u64);
        st->key.kernel_stack = store_stack(st->buffer, &st->kernel, hash_stack(&st->kernel),
                                           &st->key.kernel_stack_error);
        if (st->key.kernel_stack_error)
            bump(STAT_KERNEL_STACK_LOST);
    } else {
        st->key.kernel_stack_error = -EFAULT;  // sampled in user mode: no kernel stack
    }

    // User stack: from the registers saved at the last entry into the kernel (a sample taken
    // in user mode saved them there too). A kernel thread never entered from user mode: its
    // saved cs is not a user segment (privilege level 3). struct pt_regs is the same in every
    // kernel version; task_struct is not, so nothing here reads task_struct fields.
    st->user.len = 0;
    st->hash = 0;
    st->tail_calls = 0;
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
    u64 cs = 0;
    if (regs == NULL || bpf_probe_read_kernel(&cs, sizeof(cs), &regs->cs) || (cs & 3) != 3) {
        st->key.user_stack_error = -EFAULT;
        finish(st);
        return 0;
    }
#if CALL_GRAPH_DWARF
    bpf_probe_read_kernel(&st->pc, sizeof(u64), &regs->ip);
    bpf_probe_read_kernel(&st->sp, sizeof(u64), &regs->sp);
    bpf_probe_read_kernel(&st->bp, sizeof(u64), &regs->bp);
    st->bp_known = 1;
    st->exact_pc = 1;
    st->py_done_sp = 0;
    struct py_proc_t *py = pyprocs.lookup(&tgid);
    st->py_frame = py ? py_current_frame(py, (u32)id) : 0;
    st->py_on = st->py_frame != 0;
    st->py_eager = 0;  // a copy's code objects are read as it arrives
    st->fresh.tgid = tgid;
    st->fresh.n = 0;
    if (procs.lookup(&tgid) == NULL && copy_user_stack(st, py))
        return 0;  // the recorder unwinds and counts it
    st->py_eager = st->py_on && py && bpf_ktime_get_ns() < py->eager_until;
    progs.call(ctx, 0);
    // not reached unless the tail call failed (the recorder sets progs[0] before attaching)
    st->key.user_stop = STOP_UNSUPPORTED;
#else
    long ulen = bpf_get_stack(ctx, st->user.ips, sizeof(st->user.ips), BPF_F_USER_STACK);
    st->user.len = ulen > 0 ? ulen / sizeof(u64) : 0;
    st->key.user_unwinder = UNWINDER_KERNEL_FP;
    st->key.user_stop = st->user.len >= MAX_STACK_DEPTH ? STOP_DEPTH : STOP_FP_END;
#endif
    finish(st);
    return 0;
}

// A new process starts with its parent's mappings: until it execs or maps something new, the
// parent's snapshot and mapping list are right for it. Under --pid or -- CMD, children of
// targets become targets (as `pyroscope exec` follows them). task_newtask rather than
// sched_process_fork: its clone_flags tell a new thread (CLONE_THREAD) from a new process,
// and it needs no task_struct offsets (bcc compiles against Debian's 6.1 headers, whose
// task_struct layout is not the running kernel's).
TRACEPOINT_PROBE(task, task_newtask)
{
    if (args->clone_flags & CLONE_THREAD)
        return 0;
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    u32 child = args->pid;
    seen.delete(&child);
    parents.update(&child, &parent);
    struct proc_t *p = procs.lookup(&parent);
    if (p)
        procs.update(&child, p);
    // fork copies the address space, so the parent's interpreter addresses hold in the child
    // (multiprocessing's fork workers): its first samples have Python frames before the
    // recorder's snapshot of it. 3.8-3.10 find the forking thread's state at once (same
    // pthread_self); 3.11+ once PyOS_AfterFork_Child has set its native_thread_id.
    struct py_proc_t *py = pyprocs.lookup(&parent);
    if (py)
        pyprocs.update(&child, py);
#if FILTER_PIDS
    u8 one = 1;
    if (targets.lookup(&parent) && targets.update(&child, &one))
        bump(STAT_TARGETS_FULL);
#endif
    return 0;
}

// exec replaces every mapping: read them again right after the next sample; until then the
// old mapping list would unwind with the wrong tables.
TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u8 reason = EV_EXEC;
    seen.update(&tgid, &reason);
    procs.delete(&tgid);
    parents.delete(&tgid);  // its mappings are its own now
    pyprocs.delete(&tgid);  // the old image's interpreter addresses: the snapshot sets anew
    return 0;
}

// The process is gone (its main thread exits last in the common case; if it exits first,
// the other threads' samples fall back to a new snapshot): forget it, so `targets`, `seen`
// and `procs` stay as small as the set of live processes.
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, pid = (u32)id;
    if (pid != tgid)
        return 0;
    seen.delete(&tgid);
    procs.delete(&tgid);
    parents.delete(&tgid);
    pyprocs.delete(&tgid);  // else 4,096 short-lived Python processes fill it until forgotten
#if FILTER_PIDS
    targets.delete(&tgid);
#endif
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

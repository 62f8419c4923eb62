// Python frames for the user-stack walk of bpf/profile.c (included there).
//
// For a CPython process (user space fills `pyprocs`: recorder/python/), the sampled thread's
// PyThreadState is found by walking the interpreter's thread list for the one whose
// native_thread_id is the sampled tid (3.11+), or whose thread_id (pthread_self(): the TCB,
// which glibc x86-64 keeps in the fs base) is the sampled thread's fs base (3.8-3.10, which
// have no native_thread_id; the fs base's offset in task_struct comes from the kernel's BTF,
// recorder/btf.py). No TLS lookup, so neither the pthread key of 3.8-3.11 nor the static TLS
// of 3.12+ (`_Py_tss_tstate`) is needed. Its
// innermost frame (PyFrameObject in 3.8-3.10, _PyInterpreterFrame in 3.11+) starts the Python
// chain. When the native walk meets a `_PyEval_EvalFrameDefault` frame, the Python frames
// that C activation runs are recorded just before it (leaf side), one per loop iteration, as
// (code object, instruction) pairs: the OpenTelemetry profiler records the same and names
// them in user space, since names are strings in the process's memory and cost too much here.
//   3.8-3.10  one Python frame per activation (f_back links them)
//   3.11      frames until the one marked is_entry (Python-to-Python calls reuse the C frame)
//   3.12+     frames until the shim owned by the C stack (FRAME_OWNED_BY_CSTACK) that each
//             activation pushes; the shim itself is skipped
// (The `pyprocs` map is declared and looked up in profile.c: bcc 0.26 rewrites map calls such
// as `m.lookup()` in the main file only.)
// Encoding in the stack (docs/recording-format.md, "Python frames"):
//   PY_FRAME_TAG | code address, then (checksum << 32) | instruction index.

#define PY_FRAME_TAG 0xC0DE000000000000ULL
#define PY_MAX_THREADS 64
#define FRAME_OWNED_BY_CSTACK 3

// offsets[] indexes: recorder/python/offsets.py writes them in this order
#define PY_RUNTIME_INTERP_HEAD 0
#define PY_INTERP_THREADS_HEAD 1
#define PY_TSTATE_NEXT 2
#define PY_TSTATE_TID 3
#define PY_TSTATE_FRAME 4
#define PY_CFRAME_CURRENT 5   // < 0: no _PyCFrame (3.8-3.10, 3.13)
#define PY_FRAME_BACK 6
#define PY_FRAME_CODE 7
#define PY_FRAME_LASTI 8
#define PY_FRAME_ENTRY 9      // 3.11: is_entry; 3.12+: owner
#define PY_CODE_FIRSTLINENO 10
#define PY_CODE_ARGCOUNT 11
#define PY_CODE_ADAPTIVE 12
#define PY_TSTATE_THREAD_ID 13
#define PY_TASK_FSBASE 14     // offset in task_struct (kernel memory), 3.8-3.10 only
#define PY_OBJECT_TYPE 15     // PyObject.ob_type
#define PY_N_OFFSETS 16

struct py_proc_t {
    u64 runtime;      // &_PyRuntime
    u64 eval_start;   // _PyEval_EvalFrameDefault [start, end)
    u64 eval_end;
    u64 code_type;    // &PyCode_Type: 3.13's f_executable may be another object; 0: no check
    u32 minor;        // 8..13
    u32 pad;
    s32 off[PY_N_OFFSETS];
    u64 eager_until;  // bpf_ktime_get_ns() until which new code objects are sent at once
};

static __always_inline u64 py_read_ptr(u64 addr)
{
    u64 v = 0;
    if (addr == 0 || bpf_probe_read_user(&v, sizeof(v), (void *)addr))
        return 0;
    return v;
}

// The innermost Python frame of the sampled thread, or 0.
static __always_inline u64 py_current_frame(struct py_proc_t *py, u32 tid)
{
    u64 want = tid, mask = 0xFFFFFFFF;  // native_thread_id: the tid (unsigned long)
    s32 id_off = py->off[PY_TSTATE_TID];
    if (py->minor < 11) {
        s32 fsbase_off = py->off[PY_TASK_FSBASE];
        if (fsbase_off <= 0)
            return 0;
        u64 task = bpf_get_current_task();
        if (bpf_probe_read_kernel(&want, sizeof(want), (void *)(task + fsbase_off)))
            return 0;
        mask = ~0ULL;
        id_off = py->off[PY_TSTATE_THREAD_ID];
    }
    u64 interp = py_read_ptr(py->runtime + py->off[PY_RUNTIME_INTERP_HEAD]);
    u64 tstate = py_read_ptr(interp + py->off[PY_INTERP_THREADS_HEAD]);
    for (int i = 0; i < PY_MAX_THREADS; i++) {
        if (tstate == 0)
            return 0;
        u64 thread = py_read_ptr(tstate + id_off);
        if ((thread & mask) == want) {
            u64 frame = py_read_ptr(tstate + py->off[PY_TSTATE_FRAME]);
            if (py->off[PY_CFRAME_CURRENT] >= 0)
                frame = py_read_ptr(frame + py->off[PY_CFRAME_CURRENT]);
            return frame;
        }
        tstate = py_read_ptr(tstate + py->off[PY_TSTATE_NEXT]);
    }
    return 0;
}

// Record one Python frame (two slots) and move to the next. Returns 1 when the frames of the
// current C activation are done.
static __always_inline int py_emit_one(struct state_t *st, struct py_proc_t *py)
{
    u64 f = st->py_frame;
    if (f == 0)
        return 1;
    u64 back = py_read_ptr(f + py->off[PY_FRAME_BACK]);
    u8 entry = 0;
    if (py->minor >= 11)
        bpf_probe_read_user(&entry, 1, (void *)(f + py->off[PY_FRAME_ENTRY]));
    if (py->minor >= 12 && entry == FRAME_OWNED_BY_CSTACK) {
        st->py_frame = back;  // the activation's shim: its frames are done
        return 1;
    }
    u64 code = py_read_ptr(f + py->off[PY_FRAME_CODE]);
    if (py->code_type && py_read_ptr(code + py->off[PY_OBJECT_TYPE]) != py->code_type) {
        st->py_frame = back;  // not a code object (3.13 frames of other executables)
        return 0;
    }
    u64 index = 0;
    if (py->minor >= 11) {
        u64 instr = py_read_ptr(f + py->off[PY_FRAME_LASTI]);
        u64 base = code + py->off[PY_CODE_ADAPTIVE];
        index = instr > base ? (instr - base) / 2 : 0;
    } else {
        s32 lasti = 0;
        bpf_probe_read_user(&lasti, sizeof(lasti), (void *)(f + py->off[PY_FRAME_LASTI]));
        index = lasti < 0 ? 0 : (py->minor >= 10 ? lasti : lasti / 2);
    }
    s32 firstline = 0, argcount = 0;
    bpf_probe_read_user(&firstline, sizeof(firstline),
                        (void *)(code + py->off[PY_CODE_FIRSTLINENO]));
    bpf_probe_read_user(&argcount, sizeof(argcount), (void *)(code + py->off[PY_CODE_ARGCOUNT]));
    u32 checksum = (u32)firstline + ((u32)argcount << 20);
    py_note_code(st, code & 0xFFFFFFFFFFFFULL, checksum);
    u32 n = st->user.len;
    if (n + 2 > MAX_STACK_DEPTH)
        return 1;
    u64 a = PY_FRAME_TAG | (code & 0xFFFFFFFFFFFFULL);
    u64 b = ((u64)checksum << 32) | (index & 0xFFFFFFFF);
    if (n < MAX_STACK_DEPTH - 1) {
        st->user.ips[n] = a;
        st->user.ips[n + 1] = b;
    }
    st->user.len = n + 2;
    st->hash = mix(mix(st->hash, a), b);
    st->py_frame = back;
    st->key.user_unwinder |= UNWINDER_PYTHON;
    // 3.8-3.10: one frame per activation; 3.11: up to the entry frame
    return py->minor < 11 || (py->minor == 11 && entry);
}

// Before recording a native frame: if it is _PyEval_EvalFrameDefault and its Python frames
// are not out yet, record one of them. Returns 1 when a Python frame took this iteration.
static __always_inline int py_before_native(struct state_t *st, struct py_proc_t *py)
{
    if (!st->py_on || py == NULL || st->pc < py->eval_start || st->pc >= py->eval_end)
        return 0;
    if (st->py_done_sp == st->sp)
        return 0;  // this activation's Python frames are recorded already
    if (py_emit_one(st, py))
        st->py_done_sp = st->sp;
    return 1;
}

// A stack copy (profile.c, copy_user_stack) is unwound later in user space, when the native
// frames are known but the thread has moved on: its Python frames are read at the sample, all
// of them, into the stack, each activation's frames closed by PY_ACTIVATION_END (an empty
// activation too: a 3.12+ shim met first). recorder/stack_copies.py puts activation k's frames
// before the k-th _PyEval_EvalFrameDefault frame from the leaf, as py_before_native would have.
#define PY_ACTIVATION_END (PY_FRAME_TAG | 0xFFFFFFFFFFFFULL)
#define PY_COPY_STEPS 64
static __always_inline void py_walk_all(struct state_t *st, struct py_proc_t *py)
{
    for (int i = 0; i < PY_COPY_STEPS; i++) {
        // two slots for a frame and one for its end: py_emit_one never stops for depth here
        if (st->py_frame == 0 || st->user.len + 3 > MAX_STACK_DEPTH)
            break;
        if (py_emit_one(st, py)) {
            u32 n = st->user.len;
            if (n < MAX_STACK_DEPTH) {
                st->user.ips[n] = PY_ACTIVATION_END;
                st->user.len = n + 1;
            }
        }
    }
}

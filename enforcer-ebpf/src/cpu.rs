//! Per-cgroup on-CPU time from `tp_btf/sched_switch`.
//!
//! At each switch the slice that just ended is credited to the cgroup recorded when the
//! outgoing task was switched in, and the incoming task's cgroup is recorded for the next
//! switch. A slice is the growth of the task's `se.sum_exec_runtime`, not of the wall clock:
//! that is what the kernel charges to `cpu.stat`/`cpuacct.usage`, and on a VM whose host
//! takes CPU away (steal) or a node busy with interrupts the wall clock counts time the task
//! did not get (10% more than `cpu.stat` was seen on a guest with steal). The scheduler has
//! brought `prev`'s runtime up to date when the tracepoint fires (put_prev_task/dequeue run
//! `update_curr` first). Reading the cgroup once per switch (for `next`) and reusing it for `prev` keeps
//! one pointer chase per event. A task moved to another cgroup while it runs is charged to
//! the old one until it is next switched out: at most one slice.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_task, bpf_ktime_get_ns},
    macros::{btf_tracepoint, map},
    maps::{PerCpuArray, PerCpuHashMap},
    programs::BtfTracePointContext,
};
use enforcer_common::{CPU_NS_DEFAULT_ENTRIES, CgroupMode, CpuSlot, IDLE_CGROUP, TaskOffsets};

#[map]
static CPU_SLOT: PerCpuArray<CpuSlot> = PerCpuArray::with_max_entries(1, 0);

#[map]
static CPU_NS: PerCpuHashMap<u64, u64> = PerCpuHashMap::with_max_entries(CPU_NS_DEFAULT_ENTRIES, 0);

/// Filled in by user space from the running kernel's BTF before load.
#[unsafe(no_mangle)]
pub(crate) static OFFSETS: TaskOffsets = TaskOffsets {
    task_pid: 0,
    task_cgroups: 0,
    css_set_dfl_cgrp: 0,
    css_set_cpu_subsys: 0,
    css_cgroup: 0,
    cgroup_kn: 0,
    kn_id: 0,
    mode: 0,
    css_set_memory_subsys: 0,
    memory_mode: 0,
    cgroup_root: 0,
    root_hierarchy_id: 0,
    task_exec_runtime: 0,
};

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    // SAFETY: the tracepoint's arguments are (bool preempt, task_struct *prev,
    // task_struct *next, unsigned int prev_state); kernel memory is only read through
    // bpf_probe_read_kernel.
    unsafe { on_switch(&ctx) };
    0
}

/// A task moved to another cgroup while it runs would be charged to its old cgroup until it
/// is next switched out, which on an idle core can be hundreds of milliseconds. Container
/// runtimes move themselves (write their own pid to `cgroup.procs`, then exec), so settle
/// the slice at the move when the mover is the running task. Moves of a task running on
/// another CPU are rare and left to the next switch.
#[btf_tracepoint(function = "cgroup_attach_task")]
pub fn cgroup_attach_task(ctx: BtfTracePointContext) -> i32 {
    // Arguments: (struct cgroup *dst_cgrp, const char *path, struct task_struct *task,
    // bool threadgroup); the tracepoint fires after the task's css_set was switched.
    let task: *const u8 = ctx.arg(2);
    // SAFETY: helpers only; kernel memory is read through bpf_probe_read_kernel.
    unsafe {
        if task as u64 != bpf_get_current_task() {
            return 0;
        }
        let now = bpf_ktime_get_ns();
        let Some(slot) = CPU_SLOT.get_ptr_mut(0) else {
            return 0;
        };
        // The runtime read here is as of the task's last `update_curr` (at most a tick
        // old): that part of the slice goes to the old cgroup, the rest to the new one.
        settle(&mut *slot, now, task, task);
    }
    0
}

#[inline(always)]
unsafe fn on_switch(ctx: &BtfTracePointContext) {
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(slot) = CPU_SLOT.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU value of an array map: valid for the whole program run, and nothing
    // else on this CPU touches it while we run (tracing programs do not nest on one CPU).
    let slot = unsafe { &mut *slot };
    slot.switches += 1;
    let prev: *const u8 = ctx.arg(1);
    let next: *const u8 = ctx.arg(2);
    unsafe { settle(slot, now, prev, next) };
}

/// Credits the slice of `ended` (the task that was on the CPU) to the cgroup recorded in
/// `slot`, then starts a new slice for `task` (the one on the CPU from now on; `ended`
/// itself when a running task changes cgroup).
#[inline(always)]
unsafe fn settle(slot: &mut CpuSlot, now: u64, ended: *const u8, task: *const u8) {
    // SAFETY: as in cgroup_of.
    let off = unsafe { core::ptr::read_volatile(&OFFSETS) };
    // The first switch seen on a CPU has no recorded start; a slice whose task is not the
    // one switched out (nothing should cause that) is not credited rather than guessed.
    if slot.cgroup_id != IDLE_CGROUP && slot.start_ns != 0 && slot.task == ended as u64 {
        let ran: u64 = unsafe { load(ended, off.task_exec_runtime) };
        let delta = ran.saturating_sub(slot.start_runtime_ns);
        if delta != 0 {
            slot.busy_ns += delta;
            match CPU_NS.get_ptr_mut(slot.cgroup_id) {
                // SAFETY: per-CPU value, see above.
                Some(total) => unsafe { *total += delta },
                None => {
                    if CPU_NS
                        .insert(slot.cgroup_id, delta, BPF_NOEXIST as u64)
                        .is_err()
                    {
                        slot.dropped += 1;
                    }
                }
            }
        }
    }

    slot.start_ns = now;
    slot.task = task as u64;
    slot.start_runtime_ns = unsafe { load(task, off.task_exec_runtime) };
    slot.cgroup_id = match unsafe { cgroup_of(task) } {
        Some(id) => id,
        None => {
            slot.read_errors += 1;
            IDLE_CGROUP
        }
    };
}

/// The cgroup id the sampler charges `task` to, or `IDLE_CGROUP` for the idle task.
///
/// `task` is a BTF-typed pointer (a `tp_btf` argument), so the verifier lets us load its
/// fields directly: each load becomes an exception-handled `PROBE_MEM` load that costs a
/// few nanoseconds, where `bpf_probe_read_kernel` is a helper call each. The offsets come
/// from a frozen read-only global, which the verifier treats as constants and checks
/// against the kernel's BTF like any field access.
#[inline(always)]
unsafe fn cgroup_of(task: *const u8) -> Option<u64> {
    // SAFETY: OFFSETS is a frozen .rodata global; volatile so the compiler does not fold the
    // zero initialiser in.
    let off = unsafe { core::ptr::read_volatile(&OFFSETS) };
    let pid: i32 = unsafe { load(task, off.task_pid) };
    if pid == 0 {
        return Some(IDLE_CGROUP);
    }
    let css_set: *const u8 = unsafe { load(task, off.task_cgroups) };
    let cgroup: *const u8 = if off.mode == CgroupMode::V1Cpu as u32 {
        let css: *const u8 = unsafe { load(css_set, off.css_set_cpu_subsys) };
        unsafe { load(css, off.css_cgroup) }
    } else {
        unsafe { load(css_set, off.css_set_dfl_cgrp) }
    };
    let kn: *const u8 = unsafe { load(cgroup, off.cgroup_kn) };
    let id: u64 = unsafe { load(kn, off.kn_id) };
    // A faulting PROBE_MEM load yields 0; no real cgroup has id 0.
    (id != 0).then_some(id)
}

/// A field load from a BTF-typed kernel pointer (verified against BTF by the kernel).
#[inline(always)]
pub(crate) unsafe fn load<T: Copy>(base: *const u8, offset: u32) -> T {
    unsafe { core::ptr::read_volatile(base.add(offset as usize) as *const T) }
}

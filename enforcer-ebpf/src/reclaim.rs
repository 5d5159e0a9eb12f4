//! Memory reclaim from the `vmscan` tracepoints: direct reclaim (global pressure, the
//! allocating task stalls) and memcg reclaim (a cgroup hit its limit), episodes and stall
//! time per memory cgroup of the stalled task; kswapd wake-ups per NUMA node.
//!
//! The 6.18 tracepoints carry no memcg, so the stall is charged to the memory cgroup of
//! `current`, the task doing the reclaim. These events are rare next to context switches;
//! the cost per event matters less than on the CPU path.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_ktime_get_ns},
    macros::{btf_tracepoint, map},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::BtfTracePointContext,
};
use enforcer_common::{
    CgroupMode, MAX_NUMA_NODES, RECLAIM_WAKE_BYTES, RECLAIM_WAKE_GAP_NS, ReclaimStats,
};

use crate::cpu::{OFFSETS, load};

/// Reclaim start per task (thread id), between a `*_begin` and its `*_end`.
#[map]
static RECLAIM_START: HashMap<u32, u64> = HashMap::with_max_entries(16_384, 0);

#[map]
static RECLAIM: PerCpuHashMap<u64, ReclaimStats> = PerCpuHashMap::with_max_entries(16_384, 0);

#[map]
static KSWAPD_WAKEUPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_NUMA_NODES, 0);

/// Every episode ended and every kswapd wake-up: one lookup tells user space whether the
/// maps above changed (a walk of `RECLAIM`'s 16,384 buckets and 64 kswapd slots otherwise,
/// ten times a second, on a node that is not reclaiming).
#[map]
static RECLAIM_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Direct reclaim ended: the daemon's tick wakes on a record here (see `wake`).
#[map]
static RECLAIM_WAKE: RingBuf = RingBuf::with_byte_size(RECLAIM_WAKE_BYTES, 0);

/// When the last wake-up record was written (ns, `bpf_ktime_get_ns`), node-wide.
#[map]
static RECLAIM_WAKE_AT: Array<u64> = Array::with_max_entries(1, 0);

/// Wakes the daemon on a direct-reclaim episode, at most once per `RECLAIM_WAKE_GAP_NS`
/// node-wide: on a node without swap the page cache can run out within a few hundred
/// milliseconds of the first stall, less than a tick and a ladder step. Two CPUs racing
/// past the check both write: harmless, the reader drains whatever is there. A full ring
/// (the reader already has a record waiting) drops the record, which is what it should do.
#[inline(always)]
fn wake(now: u64, stall: u64) {
    let Some(at) = RECLAIM_WAKE_AT.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: array value, valid for the program run; a racy read-modify-write only lets
    // an extra record through.
    unsafe {
        if now.saturating_sub(*at) < RECLAIM_WAKE_GAP_NS {
            return;
        }
        *at = now;
    }
    let _ = RECLAIM_WAKE.output::<u64>(stall, 0);
}

#[inline(always)]
fn count_event() {
    if let Some(count) = RECLAIM_EVENTS.get_ptr_mut(0) {
        // SAFETY: per-CPU array value, valid for the program run.
        unsafe { *count += 1 };
    }
}

#[btf_tracepoint(function = "mm_vmscan_direct_reclaim_begin")]
pub fn mm_vmscan_direct_reclaim_begin(_ctx: BtfTracePointContext) -> i32 {
    begin();
    0
}

#[btf_tracepoint(function = "mm_vmscan_direct_reclaim_end")]
pub fn mm_vmscan_direct_reclaim_end(_ctx: BtfTracePointContext) -> i32 {
    end(true);
    0
}

#[btf_tracepoint(function = "mm_vmscan_memcg_reclaim_begin")]
pub fn mm_vmscan_memcg_reclaim_begin(_ctx: BtfTracePointContext) -> i32 {
    begin();
    0
}

#[btf_tracepoint(function = "mm_vmscan_memcg_reclaim_end")]
pub fn mm_vmscan_memcg_reclaim_end(_ctx: BtfTracePointContext) -> i32 {
    end(false);
    0
}

#[btf_tracepoint(function = "mm_vmscan_wakeup_kswapd")]
pub fn mm_vmscan_wakeup_kswapd(ctx: BtfTracePointContext) -> i32 {
    // Arguments: (int nid, int zid, int order, gfp_t gfp_flags).
    let nid: i32 = ctx.arg(0);
    let slot = (nid.max(0) as u32).min(MAX_NUMA_NODES - 1);
    if let Some(count) = KSWAPD_WAKEUPS.get_ptr_mut(slot) {
        // SAFETY: per-CPU array value, valid for the program run.
        unsafe { *count += 1 };
    }
    count_event();
    0
}

fn begin() {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let _ = RECLAIM_START.insert(tid, now, 0);
}

fn end(direct: bool) {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: helper calls; the map value is copied out before removal.
    let (now, start) = unsafe {
        let Some(start) = RECLAIM_START.get(tid) else {
            // The begin was before we attached.
            return;
        };
        (bpf_ktime_get_ns(), *start)
    };
    let _ = RECLAIM_START.remove(tid);
    let stall = now.saturating_sub(start);
    let id = memcg_of_current();
    match RECLAIM.get_ptr_mut(id) {
        // SAFETY: per-CPU hash value, valid for the program run.
        Some(stats) => unsafe { account(&mut *stats, direct, stall) },
        None => {
            let mut stats = ReclaimStats::default();
            account(&mut stats, direct, stall);
            let _ = RECLAIM.insert(id, stats, BPF_NOEXIST as u64);
        }
    }
    count_event();
    // After the stall is counted, so that the tick it wakes sees it.
    if direct {
        wake(now, stall);
    }
}

#[inline(always)]
fn account(stats: &mut ReclaimStats, direct: bool, stall: u64) {
    if direct {
        stats.direct_episodes += 1;
        stats.direct_stall_ns += stall;
    } else {
        stats.memcg_episodes += 1;
        stats.memcg_stall_ns += stall;
    }
}

/// The memory cgroup id of the running task (0 if unreadable).
fn memcg_of_current() -> u64 {
    // SAFETY: bpf_get_current_task_btf returns a trusted BTF pointer; the loads below are
    // verified against BTF like those of the CPU sampler.
    unsafe {
        let task = bpf_get_current_task_btf() as *const u8;
        let off = core::ptr::read_volatile(&OFFSETS);
        let css_set: *const u8 = load(task, off.task_cgroups);
        let cgroup: *const u8 = if off.memory_mode == CgroupMode::V1Cpu as u32 {
            let css: *const u8 = load(css_set, off.css_set_memory_subsys);
            load(css, off.css_cgroup)
        } else {
            load(css_set, off.css_set_dfl_cgrp)
        };
        let kn: *const u8 = load(cgroup, off.cgroup_kn);
        load(kn, off.kn_id)
    }
}

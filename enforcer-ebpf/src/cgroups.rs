//! Cgroups created, removed and renamed, from `tp_btf/cgroup_{mkdir,rmdir,rename}`, sent to
//! user space through a ring buffer: the daemon learns of cgroups as the kernel makes them
//! instead of walking every hierarchy every second (a node of 500 pods has thousands of
//! cgroups, each directory ~50 files).
//!
//! These fire at the rate cgroups are made and removed (a few per pod start), never on a
//! hot path. When the ring buffer is full an event is counted as lost and user space walks
//! the hierarchies instead: nothing is missed, a storm only costs a walk.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel_str_bytes},
    macros::{btf_tracepoint, map},
    maps::{PerCpuArray, RingBuf},
    programs::BtfTracePointContext,
};
use enforcer_common::{CGROUP_EVENT_PATH_LEN, CGROUP_EVENTS_BYTES, CgroupChangeKind, CgroupEvent};

use crate::cpu::{OFFSETS, load};

#[map]
static CGROUP_EVENTS: RingBuf = RingBuf::with_byte_size(CGROUP_EVENTS_BYTES, 0);

#[map]
static CGROUP_EVENTS_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

// Each tracepoint's arguments are (struct cgroup *cgrp, const char *path); the path is the
// cgroup's, relative to its hierarchy's root, with a leading '/'.

#[btf_tracepoint(function = "cgroup_mkdir")]
pub fn cgroup_mkdir(ctx: BtfTracePointContext) -> i32 {
    // SAFETY: BTF-typed arguments; kernel memory is read through checked loads and helpers.
    unsafe { emit(&ctx, CgroupChangeKind::Mkdir) };
    0
}

#[btf_tracepoint(function = "cgroup_rmdir")]
pub fn cgroup_rmdir(ctx: BtfTracePointContext) -> i32 {
    // SAFETY: as above.
    unsafe { emit(&ctx, CgroupChangeKind::Rmdir) };
    0
}

#[btf_tracepoint(function = "cgroup_rename")]
pub fn cgroup_rename(ctx: BtfTracePointContext) -> i32 {
    // SAFETY: as above.
    unsafe { emit(&ctx, CgroupChangeKind::Rename) };
    0
}

#[inline(always)]
unsafe fn emit(ctx: &BtfTracePointContext, kind: CgroupChangeKind) {
    let cgroup: *const u8 = ctx.arg(0);
    let path: *const u8 = ctx.arg(1);
    // SAFETY: frozen .rodata global, see cpu.rs.
    let off = unsafe { core::ptr::read_volatile(&OFFSETS) };
    let kn: *const u8 = unsafe { load(cgroup, off.cgroup_kn) };
    let id: u64 = unsafe { load(kn, off.kn_id) };
    let root: *const u8 = unsafe { load(cgroup, off.cgroup_root) };
    let hierarchy: i32 = unsafe { load(root, off.root_hierarchy_id) };
    let Some(mut entry) = CGROUP_EVENTS.reserve::<CgroupEvent>(0) else {
        if let Some(lost) = CGROUP_EVENTS_LOST.get_ptr_mut(0) {
            // SAFETY: per-CPU array value, valid for the program run.
            unsafe { *lost += 1 };
        }
        return;
    };
    // Written in place: the event is larger than the 512-byte BPF stack.
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved ring buffer record of the event's size.
    unsafe {
        (*event).kind = kind as u32;
        (*event).hierarchy = hierarchy as u32;
        (*event).id = id;
        (*event).at_ns = bpf_ktime_get_ns();
        (*event)._pad = 0;
        let copied = match bpf_probe_read_kernel_str_bytes(path, &mut (*event).path) {
            Ok(bytes) => bytes.len(),
            Err(_) => 0,
        };
        // The helper stops one byte short of a full buffer (its NUL): a path that filled
        // it may have been cut.
        (*event).truncated = u32::from(copied == 0 || copied >= CGROUP_EVENT_PATH_LEN - 1);
    }
    entry.submit(0);
}

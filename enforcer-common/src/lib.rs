//! Types shared between the kernel programs (`enforcer-ebpf`) and user space.
//!
//! Every type here is `#[repr(C)]` with explicit padding so that both sides agree on the
//! layout byte for byte; user space gets `aya::Pod` impls behind the `user` feature.
#![no_std]

/// Per-CPU bookkeeping of the CPU sampler (one slot per CPU, index 0 of a per-CPU array).
///
/// The kernel credits on-CPU time when a task is switched out: the growth of the task's
/// `se.sum_exec_runtime` over the slice, which is the figure the kernel's own cgroup
/// accounting (`cpu.stat`, `cpuacct.usage`) charges, so steal and IRQ time (that a VM or a
/// busy NIC takes from the task while it is "on CPU") are not counted. The slot remembers when
/// the running task was switched in and which cgroup it belongs to, so that user space can add
/// the slice still in flight when it reads (a hog alone on a core is never switched out).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSlot {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the running task was switched in; 0 before
    /// the first switch seen on this CPU.
    pub start_ns: u64,
    /// Cgroup id (kernfs node id) of the running task; [`IDLE_CGROUP`] while idle.
    pub cgroup_id: u64,
    /// Non-idle nanoseconds credited on this CPU since the program was loaded.
    pub busy_ns: u64,
    /// `sched_switch` events seen on this CPU.
    pub switches: u64,
    /// Credits lost because the per-cgroup map was full.
    pub dropped: u64,
    /// Switch-ins whose cgroup could not be read (the slice is then not credited).
    pub read_errors: u64,
    /// The running task's `se.sum_exec_runtime` when its slice started.
    pub start_runtime_ns: u64,
    /// The running task (its `task_struct` address, only compared): the slice is credited
    /// only when the task switched out is the one whose start was recorded.
    pub task: u64,
}

/// The `cgroup_id` a [`CpuSlot`] holds while its CPU runs the idle task (pid 0).
pub const IDLE_CGROUP: u64 = 0;

/// Which cgroup identity the CPU sampler charges time to, set at load time.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupMode {
    /// The task's cgroup2 (default hierarchy) cgroup: `task->cgroups->dfl_cgrp`.
    Unified = 0,
    /// The task's cgroup in the v1 `cpu` hierarchy: `task->cgroups->subsys[cpu_cgrp_id]->cgroup`.
    V1Cpu = 1,
}

/// Kernel structure offsets the CPU sampler needs, read by user space from the running
/// kernel's BTF and handed to the program as a load-time global (see `sampling::btf`).
///
/// Rust eBPF cannot use CO-RE relocations yet, so the offsets travel as data. With a
/// frozen `.rodata` the verifier sees them as constants.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOffsets {
    /// `offsetof(struct task_struct, pid)`.
    pub task_pid: u32,
    /// `offsetof(struct task_struct, cgroups)`.
    pub task_cgroups: u32,
    /// `offsetof(struct css_set, dfl_cgrp)`.
    pub css_set_dfl_cgrp: u32,
    /// `offsetof(struct css_set, subsys) + cpu_cgrp_id * sizeof(void *)`.
    pub css_set_cpu_subsys: u32,
    /// `offsetof(struct cgroup_subsys_state, cgroup)`.
    pub css_cgroup: u32,
    /// `offsetof(struct cgroup, kn)`.
    pub cgroup_kn: u32,
    /// `offsetof(struct kernfs_node, id)`.
    pub kn_id: u32,
    /// A [`CgroupMode`] as `u32`.
    pub mode: u32,
    /// `offsetof(struct css_set, subsys) + memory_cgrp_id * sizeof(void *)`.
    pub css_set_memory_subsys: u32,
    /// Which cgroup memory reclaim is charged to: [`CgroupMode::Unified`] (cgroup2) or
    /// [`CgroupMode::V1Cpu`] meaning the v1 *memory* hierarchy.
    pub memory_mode: u32,
    /// `offsetof(struct cgroup, root)`: the hierarchy a new or removed cgroup is in.
    pub cgroup_root: u32,
    /// `offsetof(struct cgroup_root, hierarchy_id)` (0 is cgroup2).
    pub root_hierarchy_id: u32,
    /// `offsetof(struct task_struct, se) + offsetof(struct sched_entity, sum_exec_runtime)`:
    /// the task's on-CPU nanoseconds as the scheduler accounts them (steal and IRQ time
    /// excluded).
    pub task_exec_runtime: u32,
}

/// Memory reclaim seen for one cgroup (the memory cgroup of the task that stalled).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimStats {
    /// Direct reclaim episodes (global memory pressure: the allocating task reclaims).
    pub direct_episodes: u64,
    /// Nanoseconds tasks stalled in direct reclaim.
    pub direct_stall_ns: u64,
    /// Memcg reclaim episodes (a cgroup hit its own limit).
    pub memcg_episodes: u64,
    pub memcg_stall_ns: u64,
}

/// Name of the per-CPU array holding one [`CpuSlot`] per CPU.
pub const MAP_CPU_SLOT: &str = "CPU_SLOT";
/// Name of the per-CPU hash `cgroup id (u64) -> on-CPU nanoseconds (u64)`.
pub const MAP_CPU_NS: &str = "CPU_NS";
/// Name of the global holding [`TaskOffsets`].
pub const GLOBAL_OFFSETS: &str = "OFFSETS";
/// Name of the CPU sampler program (`tp_btf/sched_switch`).
pub const PROG_SCHED_SWITCH: &str = "sched_switch";
/// Name of the program settling a running task's slice when it moves itself to another
/// cgroup (`tp_btf/cgroup_attach_task`).
pub const PROG_CGROUP_ATTACH: &str = "cgroup_attach_task";
/// Name of the per-CPU hash `memory cgroup id -> ReclaimStats`.
pub const MAP_RECLAIM: &str = "RECLAIM";
/// Name of the per-CPU array of kswapd wake-ups, indexed by NUMA node.
pub const MAP_KSWAPD_WAKEUPS: &str = "KSWAPD_WAKEUPS";
/// Name of the per-CPU counter of reclaim events (episodes ended, kswapd wake-ups): user space
/// reads [`MAP_RECLAIM`] and [`MAP_KSWAPD_WAKEUPS`] only when it moved.
pub const MAP_RECLAIM_EVENTS: &str = "RECLAIM_EVENTS";
/// Name of the ring buffer through which a direct-reclaim episode wakes the daemon's tick
/// at once instead of at the next tick (one `u64` record: the episode's stall in ns).
pub const MAP_RECLAIM_WAKE: &str = "RECLAIM_WAKE";
/// Its size: the smallest ring the kernel accepts (one page); the records are rate-limited
/// ([`RECLAIM_WAKE_GAP_NS`]) and one is enough to wake the reader.
pub const RECLAIM_WAKE_BYTES: u32 = 4096;
/// At most one wake-up record per this many nanoseconds, node-wide: a reclaim storm of
/// thousands of episodes a second costs the daemon at most 100 wake-ups a second.
pub const RECLAIM_WAKE_GAP_NS: u64 = 10_000_000;
/// NUMA nodes counted separately in [`MAP_KSWAPD_WAKEUPS`]; higher node ids share the last slot.
pub const MAX_NUMA_NODES: u32 = 64;
/// The reclaim programs (`tp_btf/mm_vmscan_*`).
pub const PROGS_RECLAIM: [&str; 5] = [
    "mm_vmscan_direct_reclaim_begin",
    "mm_vmscan_direct_reclaim_end",
    "mm_vmscan_memcg_reclaim_begin",
    "mm_vmscan_memcg_reclaim_end",
    "mm_vmscan_wakeup_kswapd",
];
/// Default capacity of [`MAP_CPU_NS`]; user space may override it at load time.
pub const CPU_NS_DEFAULT_ENTRIES: u32 = 16_384;

/// What happened to a cgroup, as a [`CgroupEvent`] says.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupChangeKind {
    Mkdir = 1,
    Rmdir = 2,
    /// The path is the new one; every descendant's path changed with it.
    Rename = 3,
}

/// Bytes of a cgroup's path a [`CgroupEvent`] carries (relative to its hierarchy's root,
/// with a leading `/`, NUL-terminated). Kubelet's longest paths (systemd driver, a
/// container scope below a pod slice below its QoS slice) are about 200 bytes below the
/// cgroup root; a longer one is flagged [`CgroupEvent::truncated`] and user space looks for
/// it with a walk.
pub const CGROUP_EVENT_PATH_LEN: usize = 512;

/// A cgroup created, removed or renamed, from `tp_btf/cgroup_{mkdir,rmdir,rename}` through
/// the [`MAP_CGROUP_EVENTS`] ring buffer: how user space learns of cgroups without walking
/// the hierarchies.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CgroupEvent {
    /// A [`CgroupChangeKind`] as `u32`.
    pub kind: u32,
    /// The hierarchy (`cgroup_root.hierarchy_id`; 0 is cgroup2), as `/proc/<pid>/cgroup`
    /// numbers them.
    pub hierarchy: u32,
    /// The cgroup's id (kernfs node id: the directory's inode number).
    pub id: u64,
    /// `bpf_ktime_get_ns()` when the kernel raised it.
    pub at_ns: u64,
    /// 1 when the path did not fit.
    pub truncated: u32,
    pub _pad: u32,
    pub path: [u8; CGROUP_EVENT_PATH_LEN],
}

/// Name of the ring buffer of [`CgroupEvent`]s.
pub const MAP_CGROUP_EVENTS: &str = "CGROUP_EVENTS";
/// Name of the per-CPU array (one `u64`) counting events the ring buffer had no room for:
/// user space walks the hierarchies when it moves.
pub const MAP_CGROUP_EVENTS_LOST: &str = "CGROUP_EVENTS_LOST";
/// The cgroup discovery programs (`tp_btf/cgroup_*`).
pub const PROGS_CGROUP_EVENTS: [&str; 3] = ["cgroup_mkdir", "cgroup_rmdir", "cgroup_rename"];
/// Bytes of the [`MAP_CGROUP_EVENTS`] ring buffer: about 1,900 events between two reads.
pub const CGROUP_EVENTS_BYTES: u32 = 1024 * 1024;

/// Bytes and packets one cgroup sent and received (loopback excluded).
///
/// Bytes are `skb->len` at the cgroup hooks: the IP packet, headers included, link layer
/// excluded. A packet is one socket buffer, so a GSO/GRO aggregate counts once.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// Name of the per-CPU hash `cgroup2 id (u64) -> NetCounters`.
pub const MAP_NET: &str = "NET_BYTES";
/// Name of the hash `cgroup2 id (u64) -> tc classid (u32)` the classifier consults.
pub const MAP_NET_CLASS: &str = "NET_CLASS";
/// Name of the `cgroup_skb/ingress` counting program.
pub const PROG_NET_INGRESS: &str = "net_ingress";
/// Name of the `cgroup_skb/egress` counting program.
pub const PROG_NET_EGRESS: &str = "net_egress";
/// Name of the `sched_cls` program for a cls_bpf filter in classic (not direct-action) mode:
/// it returns the classid of the packet's socket cgroup, 0 for "no match".
pub const PROG_NET_CLASSIFY: &str = "net_classify";
/// Capacity of [`MAP_NET`] and [`MAP_NET_CLASS`].
pub const NET_DEFAULT_ENTRIES: u32 = 16_384;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers, no padding, every bit pattern valid.
    unsafe impl aya::Pod for super::CpuSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TaskOffsets {}
    // SAFETY: repr(C), integers and bytes only, explicit padding.
    unsafe impl aya::Pod for super::CgroupEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ReclaimStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::NetCounters {}
}

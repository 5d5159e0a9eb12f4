//! Loading enforcer's kernel programs: offsets from the running kernel's BTF, one object
//! (embedded in the binary), every program attached, and the maps handed to the samplers.

use std::{
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    Btf as AyaBtf, Ebpf, EbpfLoader,
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, ProgramError,
        SchedClassifier,
    },
};
use enforcer_common::{
    CgroupMode, GLOBAL_OFFSETS, MAP_CGROUP_EVENTS, MAP_CGROUP_EVENTS_LOST, MAP_CPU_NS,
    MAP_CPU_SLOT, MAP_KSWAPD_WAKEUPS, MAP_NET, MAP_NET_CLASS, MAP_RECLAIM, MAP_RECLAIM_EVENTS,
    MAP_RECLAIM_WAKE, NET_DEFAULT_ENTRIES, PROG_CGROUP_ATTACH, PROG_NET_CLASSIFY, PROG_NET_EGRESS,
    PROG_NET_INGRESS, PROG_SCHED_SWITCH, PROGS_CGROUP_EVENTS, PROGS_RECLAIM,
};

pub use super::error::SamplerError;
use super::{
    btf::Btf,
    cgroups::CgroupEvents,
    cpu::CpuSampler,
    net::{NetClassifier, NetSampler},
    reclaim::{ReclaimSampler, ReclaimWake},
};

/// The kernel programs, built by `build.rs` and embedded so that one file is all a node needs.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/enforcer"));

/// What to load.
#[derive(Debug, Clone)]
pub struct ProgramOptions {
    /// Which cgroup CPU time is charged to.
    pub cpu_mode: CgroupMode,
    /// Which cgroup memory reclaim is charged to (`V1Cpu` meaning the v1 memory hierarchy).
    pub memory_mode: CgroupMode,
    /// Capacity of the per-cgroup CPU map.
    pub cgroup_map_entries: u32,
    /// The cgroup2 mount (its root directory) to attach the per-cgroup network counters to;
    /// `None` loads none of the network programs, the classifier included.
    pub network: Option<PathBuf>,
}

/// The loaded and attached programs. Dropping this detaches and unloads them (nothing is
/// pinned).
pub struct Programs {
    ebpf: Ebpf,
    options: ProgramOptions,
}

impl Programs {
    pub fn load(options: &ProgramOptions) -> Result<Programs, SamplerError> {
        raise_memlock_limit();
        let btf = Btf::from_sys_fs()?;
        let mut offsets = btf.task_offsets(options.cpu_mode)?;
        offsets.css_set_memory_subsys = btf.css_set_subsys_offset("memory_cgrp_id")?;
        offsets.memory_mode = options.memory_mode as u32;
        // Without the network programs their maps still exist (one object): keep them tiny,
        // a preallocated per-CPU hash of 16k entries is tens of MiB on a large node.
        let net_entries = if options.network.is_some() {
            NET_DEFAULT_ENTRIES
        } else {
            1
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(GLOBAL_OFFSETS, &offsets, true)
            .map_max_entries(MAP_CPU_NS, options.cgroup_map_entries)
            .map_max_entries(MAP_NET, net_entries)
            .map_max_entries(MAP_NET_CLASS, net_entries)
            .load(EBPF_OBJECT)
            .map_err(|e| SamplerError::Object(crate::text::one_line(&e.to_string())))?;
        let kernel_btf = AyaBtf::from_sys_fs().map_err(|e| SamplerError::Program {
            program: PROG_SCHED_SWITCH,
            detail: format!("reading kernel BTF: {e}"),
        })?;
        for name in [PROG_SCHED_SWITCH, PROG_CGROUP_ATTACH]
            .into_iter()
            .chain(PROGS_RECLAIM)
            .chain(PROGS_CGROUP_EVENTS)
        {
            let program: &mut BtfTracePoint = ebpf
                .program_mut(name)
                .ok_or(SamplerError::Missing(name))?
                .try_into()
                .map_err(|e: ProgramError| program_error(name, e))?;
            program
                .load(name, &kernel_btf)
                .map_err(|e| program_error(name, e))?;
            program.attach().map_err(|e| program_error(name, e))?;
        }
        if let Some(mount) = &options.network {
            attach_network(&mut ebpf, mount)?;
        }
        // Parsing the kernel's BTF (twice: ours for the offsets, aya's for attaching) leaves
        // tens of MiB of freed heap that glibc keeps; give it back, the daemon lives for weeks.
        // SAFETY: malloc_trim has no preconditions.
        drop(kernel_btf);
        unsafe { libc::malloc_trim(0) };
        Ok(Programs {
            ebpf,
            options: options.clone(),
        })
    }

    fn take_map(&mut self, name: &'static str) -> Result<aya::maps::Map, SamplerError> {
        self.ebpf.take_map(name).ok_or(SamplerError::Missing(name))
    }

    /// The CPU sampler (once).
    pub fn cpu_sampler(&mut self) -> Result<CpuSampler, SamplerError> {
        let slots = self.take_map(MAP_CPU_SLOT)?;
        let per_cgroup = self.take_map(MAP_CPU_NS)?;
        CpuSampler::from_maps(self.options.cpu_mode, slots, per_cgroup)
    }

    /// The cgroups the kernel creates, removes and renames, as they happen.
    pub fn cgroup_events(&mut self) -> Result<CgroupEvents, SamplerError> {
        let ring = self.take_map(MAP_CGROUP_EVENTS)?;
        let lost = self.take_map(MAP_CGROUP_EVENTS_LOST)?;
        CgroupEvents::from_maps(ring, lost)
    }

    /// The reclaim sampler (once).
    pub fn reclaim_sampler(&mut self) -> Result<ReclaimSampler, SamplerError> {
        let stats = self.take_map(MAP_RECLAIM)?;
        let kswapd = self.take_map(MAP_KSWAPD_WAKEUPS)?;
        let events = self.take_map(MAP_RECLAIM_EVENTS)?;
        ReclaimSampler::from_maps(stats, kswapd, events)
    }

    /// The direct-reclaim wake-ups (once).
    pub fn reclaim_wake(&mut self) -> Result<ReclaimWake, SamplerError> {
        ReclaimWake::from_map(self.take_map(MAP_RECLAIM_WAKE)?)
    }

    /// The per-cgroup network counters (once).
    pub fn net_sampler(&mut self) -> Result<NetSampler, SamplerError> {
        if self.options.network.is_none() {
            return Err(SamplerError::NetworkDisabled);
        }
        NetSampler::from_map(self.take_map(MAP_NET)?)
    }

    /// The cgroup -> classid map `net_classify` consults (once).
    pub fn net_classifier(&mut self) -> Result<NetClassifier, SamplerError> {
        if self.options.network.is_none() {
            return Err(SamplerError::NetworkDisabled);
        }
        NetClassifier::from_map(self.take_map(MAP_NET_CLASS)?)
    }

    /// The loaded (never attached by us) `net_classify` program, for a cls_bpf filter made
    /// by netlink; valid while `self` lives. `None` without the network programs.
    pub fn classifier_fd(&self) -> Option<BorrowedFd<'_>> {
        self.options.network.as_ref()?;
        let fd = self.ebpf.program(PROG_NET_CLASSIFY)?.fd().ok()?;
        Some(fd.as_fd())
    }

    /// The kernel's id of the loaded `net_classify` program (what `tc filter show` and
    /// `bpftool` print), to recognise our own filters. `None` without the network programs.
    pub fn classifier_id(&self) -> Option<u32> {
        self.options.network.as_ref()?;
        Some(self.ebpf.program(PROG_NET_CLASSIFY)?.info().ok()?.id())
    }

    /// `(run_time, run_count)` of a program as the kernel counts them; zero unless
    /// `kernel.bpf_stats_enabled` is 1.
    pub fn program_stats(&self, name: &str) -> Option<(Duration, u64)> {
        let info = self.ebpf.program(name)?.info().ok()?;
        Some((info.run_time(), info.run_count()))
    }
}

/// Loads and attaches the two counting programs at the cgroup2 root `mount`, and loads the
/// classifier for whoever makes the tc filter.
///
/// `Single` is the only mode aya's `bpf_link` path accepts (the kernel refuses flags on a
/// cgroup link); a link is always attached as one of many, so programs other agents attached
/// with `multi` stay in place and run beside ours.
fn attach_network(ebpf: &mut Ebpf, mount: &Path) -> Result<(), SamplerError> {
    let cgroup = std::fs::File::open(mount).map_err(|e| SamplerError::Program {
        program: PROG_NET_INGRESS,
        detail: format!("opening cgroup {}: {e}", mount.display()),
    })?;
    for (name, attach_type) in [
        (PROG_NET_INGRESS, CgroupSkbAttachType::Ingress),
        (PROG_NET_EGRESS, CgroupSkbAttachType::Egress),
    ] {
        let at_cgroup = |e| with_cgroup(program_error(name, e), mount);
        let program: &mut CgroupSkb = ebpf
            .program_mut(name)
            .ok_or(SamplerError::Missing(name))?
            .try_into()
            .map_err(at_cgroup)?;
        program.load().map_err(at_cgroup)?;
        program
            .attach(&cgroup, attach_type, CgroupAttachMode::Single)
            .map_err(|e| {
                if is_eperm(&e) && euid_is_root() {
                    // Root and still refused: the kernel lets a bpf_link join only programs
                    // attached with BPF_F_ALLOW_MULTI.
                    SamplerError::Program {
                        program: name,
                        detail: format!(
                            "at cgroup {}: the kernel refused the attach (EPERM as root): most \
                             likely another program is attached there without \
                             BPF_F_ALLOW_MULTI (exclusive or override mode), which a bpf_link \
                             cannot join; see `bpftool cgroup tree {}`",
                            mount.display(),
                            mount.display()
                        ),
                    }
                } else {
                    at_cgroup(e)
                }
            })?;
    }
    let classify: &mut SchedClassifier = ebpf
        .program_mut(PROG_NET_CLASSIFY)
        .ok_or(SamplerError::Missing(PROG_NET_CLASSIFY))?
        .try_into()
        .map_err(|e| program_error(PROG_NET_CLASSIFY, e))?;
    classify
        .load()
        .map_err(|e| program_error(PROG_NET_CLASSIFY, e))?;
    Ok(())
}

fn is_eperm(e: &ProgramError) -> bool {
    matches!(e, ProgramError::SyscallError(e) if e.io_error.raw_os_error() == Some(libc::EPERM))
}

fn euid_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Names the cgroup in a program error: "eBPF program net_egress at cgroup /sys/...: ...".
fn with_cgroup(e: SamplerError, cgroup: &Path) -> SamplerError {
    match e {
        SamplerError::Program { program, detail } => SamplerError::Program {
            program,
            detail: format!("at cgroup {}: {detail}", cgroup.display()),
        },
        other => other,
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones ignore it.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall on a stack value.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; fine on kernels >= 5.11");
    }
}

fn program_error(program: &'static str, e: ProgramError) -> SamplerError {
    let detail = match &e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            tracing::debug!(program, "verifier log:\n{log}");
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            format!("verifier rejected it ({io_error}): {last} (RUST_LOG=debug shows the full log)")
        }
        _ => {
            let text = crate::text::one_line(&format!("{e}: {}", source_chain(&e)));
            if text.contains("Operation not permitted") || text.contains("EPERM") {
                format!("{text}; enforcer must run as root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN)")
            } else {
                text
            }
        }
    };
    SamplerError::Program { program, detail }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

impl CpuSampler {
    /// Loads and attaches all of enforcer's programs and keeps them with the sampler: the
    /// simple way for a tool that only needs CPU figures.
    pub fn load(mode: CgroupMode, map_entries: u32) -> Result<CpuSampler, SamplerError> {
        let mut programs = Programs::load(&ProgramOptions {
            cpu_mode: mode,
            memory_mode: CgroupMode::Unified,
            cgroup_map_entries: map_entries,
            network: None,
        })?;
        let mut sampler = programs.cpu_sampler()?;
        sampler.keep_alive(Box::new(programs));
        Ok(sampler)
    }

    /// `(run_time, run_count)` of the sched_switch program as the kernel counts them; both
    /// stay zero unless `kernel.bpf_stats_enabled` is 1.
    pub fn program_stats(&self) -> Option<(Duration, u64)> {
        self.owner()?
            .downcast_ref::<Programs>()?
            .program_stats(PROG_SCHED_SWITCH)
    }
}

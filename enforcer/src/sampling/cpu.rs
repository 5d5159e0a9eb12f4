//! The CPU sampler: loads `tp_btf/sched_switch`, and reads per-cgroup on-CPU time.

use std::{collections::HashMap, os::fd::AsFd, time::Duration};

use aya::{
    Btf as AyaBtf, Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePoint, ProgramError},
};
use enforcer_common::{
    CgroupMode, CpuSlot, GLOBAL_OFFSETS, IDLE_CGROUP, MAP_CPU_NS, MAP_CPU_SLOT, PROG_CGROUP_ATTACH,
    PROG_SCHED_SWITCH,
};
use thiserror::Error;

use super::{batch::PerCpuU64Reader, btf::Btf};

/// The kernel programs, built by `build.rs` and embedded so that one file is all a node needs.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/enforcer"));

#[derive(Debug, Error)]
pub enum SamplerError {
    #[error(transparent)]
    Btf(#[from] super::btf::BtfError),
    #[error("loading eBPF object: {0}")]
    Object(String),
    #[error("eBPF map or program {0} missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF program {program}: {detail}")]
    Program {
        program: &'static str,
        detail: String,
    },
    #[error("reading eBPF map {map}: {source}")]
    Read {
        map: &'static str,
        source: std::io::Error,
    },
}

/// One reading of the sampler: cumulative figures since the program was loaded.
#[derive(Debug, Default, Clone)]
pub struct CpuReading {
    /// CLOCK_MONOTONIC nanoseconds at which in-flight slices were closed.
    pub at_ns: u64,
    /// Cumulative on-CPU nanoseconds per cgroup id, in-flight slices included.
    pub per_cgroup: HashMap<u64, u64>,
    /// Cumulative non-idle nanoseconds over all CPUs, in-flight slices included.
    pub busy_ns: u64,
    /// `sched_switch` events handled (the program's run count, without bpf_stats).
    pub switches: u64,
    /// Credits lost because the per-cgroup map was full.
    pub dropped: u64,
    /// Switch-ins whose cgroup could not be read.
    pub read_errors: u64,
    /// Time the map reads took.
    pub read_duration: Duration,
}

/// The loaded and attached CPU sampler. Dropping it detaches and unloads the program.
pub struct CpuSampler {
    mode: CgroupMode,
    slots: PerCpuArray<MapData, CpuSlot>,
    per_cgroup: PerCpuHashMap<MapData, u64, u64>,
    reader: PerCpuU64Reader,
    // Keeps the program and its link alive; declared last so the maps close after it.
    _ebpf: Ebpf,
}

impl CpuSampler {
    /// Loads the programs with offsets from the running kernel's BTF and attaches them.
    /// `map_entries` sizes the per-cgroup map.
    pub fn load(mode: CgroupMode, map_entries: u32) -> Result<CpuSampler, SamplerError> {
        raise_memlock_limit();
        let offsets = Btf::from_sys_fs()?.task_offsets(mode)?;
        let mut ebpf = EbpfLoader::new()
            .override_global(GLOBAL_OFFSETS, &offsets, true)
            .map_max_entries(MAP_CPU_NS, map_entries)
            .load(EBPF_OBJECT)
            .map_err(|e| SamplerError::Object(one_line(&e.to_string())))?;

        let kernel_btf = AyaBtf::from_sys_fs().map_err(|e| SamplerError::Program {
            program: PROG_SCHED_SWITCH,
            detail: format!("reading kernel BTF: {e}"),
        })?;
        let program: &mut BtfTracePoint = ebpf
            .program_mut(PROG_SCHED_SWITCH)
            .ok_or(SamplerError::MissingMap(PROG_SCHED_SWITCH))?
            .try_into()
            .map_err(|e: ProgramError| program_error(PROG_SCHED_SWITCH, e))?;
        program
            .load("sched_switch", &kernel_btf)
            .map_err(|e| program_error(PROG_SCHED_SWITCH, e))?;
        program
            .attach()
            .map_err(|e| program_error(PROG_SCHED_SWITCH, e))?;
        let program: &mut BtfTracePoint = ebpf
            .program_mut(PROG_CGROUP_ATTACH)
            .ok_or(SamplerError::MissingMap(PROG_CGROUP_ATTACH))?
            .try_into()
            .map_err(|e: ProgramError| program_error(PROG_CGROUP_ATTACH, e))?;
        program
            .load("cgroup_attach_task", &kernel_btf)
            .map_err(|e| program_error(PROG_CGROUP_ATTACH, e))?;
        program
            .attach()
            .map_err(|e| program_error(PROG_CGROUP_ATTACH, e))?;

        let slots = ebpf
            .take_map(MAP_CPU_SLOT)
            .ok_or(SamplerError::MissingMap(MAP_CPU_SLOT))?;
        let slots =
            PerCpuArray::try_from(slots).map_err(|e| SamplerError::Object(e.to_string()))?;
        let per_cgroup = ebpf
            .take_map(MAP_CPU_NS)
            .ok_or(SamplerError::MissingMap(MAP_CPU_NS))?;
        let per_cgroup =
            PerCpuHashMap::try_from(per_cgroup).map_err(|e| SamplerError::Object(e.to_string()))?;
        let cpus = aya::util::nr_cpus().map_err(|(file, e)| SamplerError::Read {
            map: MAP_CPU_SLOT,
            source: std::io::Error::new(e.kind(), format!("{file}: {e}")),
        })?;
        Ok(CpuSampler {
            mode,
            slots,
            per_cgroup,
            reader: PerCpuU64Reader::new(cpus),
            _ebpf: ebpf,
        })
    }

    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// Reads cumulative per-cgroup time, closing each CPU's in-flight slice at "now" so that
    /// a task that has not been switched out (a hog alone on a core) is still seen.
    pub fn read(&mut self) -> Result<CpuReading, SamplerError> {
        let started = std::time::Instant::now();
        let mut reading = CpuReading::default();
        // The map is read before the slots: a switch in between then moves a slice from
        // "in flight" to "credited" after we read the credits, so this reading undercounts by
        // at most that slice and the next one catches up. Callers keep totals monotonic.
        let per_cgroup = &mut reading.per_cgroup;
        let fd = {
            use aya::maps::IterableMap;
            self.per_cgroup.map().fd().as_fd()
        };
        self.reader
            .read(fd, |id, ns| {
                per_cgroup.insert(id, ns);
            })
            .map_err(|source| SamplerError::Read {
                map: MAP_CPU_NS,
                source,
            })?;
        let slots = self.slots.get(&0, 0).map_err(|e| SamplerError::Read {
            map: MAP_CPU_SLOT,
            source: std::io::Error::other(e.to_string()),
        })?;
        let now = monotonic_ns();
        for slot in slots.iter() {
            reading.busy_ns += slot.busy_ns;
            reading.switches += slot.switches;
            reading.dropped += slot.dropped;
            reading.read_errors += slot.read_errors;
            if slot.cgroup_id != IDLE_CGROUP && slot.start_ns != 0 && now > slot.start_ns {
                let in_flight = now - slot.start_ns;
                reading.busy_ns += in_flight;
                *reading.per_cgroup.entry(slot.cgroup_id).or_default() += in_flight;
            }
        }
        reading.at_ns = now;
        reading.read_duration = started.elapsed();
        Ok(reading)
    }

    /// Drops the counters of cgroups that no longer exist so the map does not fill up.
    pub fn forget(&mut self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            // ENOENT (never ran, or already gone) is fine.
            let _ = self.per_cgroup.remove(&id);
        }
    }

    /// `(run_time, run_count)` of the sched_switch program as the kernel counts them; both
    /// stay zero unless `kernel.bpf_stats_enabled` is 1.
    pub fn program_stats(&self) -> Option<(Duration, u64)> {
        let info = self._ebpf.program(PROG_SCHED_SWITCH)?.info().ok()?;
        Some((info.run_time(), info.run_count()))
    }

    /// Entries currently in the per-cgroup map.
    pub fn map_len(&self) -> usize {
        self.per_cgroup.keys().count()
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: plain syscall on a stack value; CLOCK_MONOTONIC cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
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
            let text = one_line(&format!("{e}: {}", source_chain(&e)));
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

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

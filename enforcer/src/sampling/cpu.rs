//! The CPU sampler: reads the per-cgroup on-CPU time `tp_btf/sched_switch` accumulates.

use std::{collections::HashMap, os::fd::AsFd, time::Duration};

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use enforcer_common::{
    CgroupMode, CpuSlot, IDLE_CGROUP, MAP_CPU_NS, MAP_CPU_SLOT, PROG_SCHED_SWITCH,
};

use super::{
    batch::PerCpuU64Reader,
    programs::{ProgramOptions, Programs, SamplerError},
};

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

/// The CPU sampler's maps. Dropping it with its [`Programs`] detaches the programs.
pub struct CpuSampler {
    mode: CgroupMode,
    slots: PerCpuArray<MapData, CpuSlot>,
    per_cgroup: PerCpuHashMap<MapData, u64, u64>,
    reader: PerCpuU64Reader,
    // Set when this sampler loaded the programs itself ([`CpuSampler::load`]); declared
    // last so the maps close after the programs.
    programs: Option<Programs>,
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
        sampler.programs = Some(programs);
        Ok(sampler)
    }

    /// Takes the CPU maps out of loaded programs.
    pub(super) fn from_maps(
        mode: CgroupMode,
        slots: aya::maps::Map,
        per_cgroup: aya::maps::Map,
    ) -> Result<CpuSampler, SamplerError> {
        let slots =
            PerCpuArray::try_from(slots).map_err(|e| SamplerError::Object(e.to_string()))?;
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
            programs: None,
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
        let now = crate::clock::monotonic_ns();
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
        self.programs.as_ref()?.program_stats(PROG_SCHED_SWITCH)
    }

    /// Entries currently in the per-cgroup map.
    pub fn map_len(&self) -> usize {
        self.per_cgroup.keys().count()
    }
}

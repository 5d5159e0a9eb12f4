//! The CPU sampler: reads the per-cgroup on-CPU time `tp_btf/sched_switch` accumulates.

use std::{collections::HashMap, os::fd::AsFd, time::Duration};

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use enforcer_common::{CgroupMode, CpuSlot, IDLE_CGROUP, MAP_CPU_NS, MAP_CPU_SLOT};

use super::{batch::PerCpuU64Reader, error::SamplerError};

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

/// The CPU sampler's maps. A sampler made by [`CpuSampler::load`] owns its programs too,
/// and dropping it detaches them.
pub struct CpuSampler {
    mode: CgroupMode,
    slots: PerCpuArray<MapData, CpuSlot>,
    per_cgroup: PerCpuHashMap<MapData, u64, u64>,
    reader: PerCpuU64Reader,
    // The loaded programs when this sampler loaded them itself ([`CpuSampler::load`]),
    // type-erased so that the sampler does not depend on the loader; declared last so the
    // maps close after the programs.
    owner: Option<Box<dyn std::any::Any + Send>>,
}

impl CpuSampler {
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
            owner: None,
        })
    }

    /// Keeps what must outlive the maps (the programs) for as long as the sampler lives.
    pub(super) fn keep_alive(&mut self, owner: Box<dyn std::any::Any + Send>) {
        self.owner = Some(owner);
    }

    pub(super) fn owner(&self) -> Option<&(dyn std::any::Any + Send)> {
        self.owner.as_deref()
    }

    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// Reads cumulative per-cgroup time, closing each CPU's in-flight slice at "now" so that
    /// a task that has not been switched out (a hog alone on a core) is still seen.
    ///
    /// Credited slices are the scheduler's runtime; the in-flight one can only be wall time
    /// here (user space cannot read the running task's runtime), so a reading may include
    /// the steal time of at most one slice per CPU, which the next switch corrects.
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

    /// The totals of `ids` now, summed over CPUs (absent ids are left out): read once for
    /// cgroups about to be forgotten, so that their last slices are not lost.
    pub fn totals_of(&self, ids: &[u64]) -> Vec<(u64, u64)> {
        ids.iter()
            .filter_map(|&id| {
                let values = self.per_cgroup.get(&id, 0).ok()?;
                Some((id, values.iter().sum()))
            })
            .collect()
    }

    /// Drops the counters of cgroups that no longer exist so the map does not fill up.
    pub fn forget(&mut self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            // ENOENT (never ran, or already gone) is fine.
            let _ = self.per_cgroup.remove(&id);
        }
    }

    /// Entries currently in the per-cgroup map.
    pub fn map_len(&self) -> usize {
        self.per_cgroup.keys().count()
    }
}

//! Network sight: reads the per-cgroup byte and packet counters the `cgroup_skb` programs
//! keep, and keeps the classifier's `cgroup id -> classid` map in step with the daemon's
//! wishes.

use std::{
    collections::HashMap,
    io,
    os::fd::AsFd,
    time::{Duration, Instant},
};

use aya::maps::{HashMap as AyaHashMap, IterableMap, MapData, MapError, PerCpuHashMap};
use enforcer_common::{MAP_NET, MAP_NET_CLASS, NetCounters};

use super::{batch::PerCpuReader, error::SamplerError};
use crate::clock::monotonic_ns;

/// One reading: cumulative counters since the programs were loaded.
#[derive(Debug, Default, Clone)]
pub struct NetReading {
    /// CLOCK_MONOTONIC nanoseconds when the map was read.
    pub at_ns: u64,
    /// Per cgroup2 id, summed over CPUs. Loopback traffic is not counted.
    pub per_cgroup: HashMap<u64, NetCounters>,
    /// Time the map read took.
    pub read_duration: Duration,
}

/// The per-cgroup network counters ([`enforcer_common::MAP_NET`]).
pub struct NetSampler {
    map: PerCpuHashMap<MapData, u64, NetCounters>,
    reader: PerCpuReader<NetCounters>,
}

impl NetSampler {
    pub(super) fn from_map(map: aya::maps::Map) -> Result<NetSampler, SamplerError> {
        let map = PerCpuHashMap::try_from(map).map_err(|e| SamplerError::Object(e.to_string()))?;
        let cpus = aya::util::nr_cpus().map_err(|(file, e)| SamplerError::Read {
            map: MAP_NET,
            source: io::Error::new(e.kind(), format!("{file}: {e}")),
        })?;
        Ok(NetSampler {
            map,
            reader: PerCpuReader::new(cpus, 4096),
        })
    }

    /// Cumulative per-cgroup counters since load, summed over CPUs.
    pub fn read(&mut self) -> Result<NetReading, SamplerError> {
        let started = Instant::now();
        let mut per_cgroup = HashMap::new();
        let fd = self.map.map().fd().as_fd();
        self.reader
            .read(fd, |id, per_cpu| {
                let mut sum = NetCounters::default();
                for c in per_cpu {
                    sum.rx_bytes += c.rx_bytes;
                    sum.rx_packets += c.rx_packets;
                    sum.tx_bytes += c.tx_bytes;
                    sum.tx_packets += c.tx_packets;
                }
                per_cgroup.insert(id, sum);
            })
            .map_err(|source| SamplerError::Read {
                map: MAP_NET,
                source,
            })?;
        Ok(NetReading {
            at_ns: monotonic_ns(),
            per_cgroup,
            read_duration: started.elapsed(),
        })
    }

    /// Drops the counters of cgroups that no longer exist so the map does not fill up.
    pub fn forget(&mut self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            // ENOENT (never sent anything, or already gone) is fine.
            let _ = self.map.remove(&id);
        }
    }
}

/// The classifier's map ([`enforcer_common::MAP_NET_CLASS`]) and a copy of what it holds, so
/// that a sync every tick costs syscalls only for what changed.
pub struct NetClassifier {
    map: AyaHashMap<MapData, u64, u32>,
    synced: HashMap<u64, u32>,
}

impl NetClassifier {
    pub(super) fn from_map(map: aya::maps::Map) -> Result<NetClassifier, SamplerError> {
        let map = AyaHashMap::try_from(map).map_err(|e| SamplerError::Object(e.to_string()))?;
        // Created empty at load and written only here.
        Ok(NetClassifier {
            map,
            synced: HashMap::new(),
        })
    }

    /// Makes the map hold exactly `wanted` (cgroup2 id -> classid): inserts/updates what
    /// differs, removes the rest. Returns how many entries changed.
    ///
    /// On error the copy still matches the map for what was done, so the next call retries
    /// the rest.
    pub fn sync(&mut self, wanted: &HashMap<u64, u32>) -> Result<usize, SamplerError> {
        let mut changed = 0;
        let stale: Vec<u64> = self
            .synced
            .keys()
            .filter(|id| !wanted.contains_key(id))
            .copied()
            .collect();
        // Removals first: they make room when the map is near capacity.
        for id in stale {
            match self.map.remove(&id) {
                Ok(()) => {}
                Err(MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(write_error(e)),
            }
            self.synced.remove(&id);
            changed += 1;
        }
        for (&id, &classid) in wanted {
            if self.synced.get(&id) == Some(&classid) {
                continue;
            }
            self.map.insert(id, classid, 0).map_err(write_error)?;
            self.synced.insert(id, classid);
            changed += 1;
        }
        Ok(changed)
    }
}

fn write_error(e: MapError) -> SamplerError {
    let source = match e {
        MapError::SyscallError(e) => e.io_error,
        other => io::Error::other(other.to_string()),
    };
    SamplerError::Write {
        map: MAP_NET_CLASS,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_counters_are_per_cpu_batch_friendly() {
        // The batched reader relies on a value size that needs no per-CPU padding.
        assert_eq!(size_of::<NetCounters>(), 32);
        let _ = PerCpuReader::<NetCounters>::new(2, 4);
    }
}

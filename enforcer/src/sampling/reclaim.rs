//! The reclaim sampler: reads what the `vmscan` programs accumulate.

use std::collections::HashMap;

use std::time::Duration;

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use enforcer_common::{
    MAP_KSWAPD_WAKEUPS, MAP_RECLAIM, MAP_RECLAIM_EVENTS, MAP_RECLAIM_WAKE, ReclaimStats,
};

use super::error::SamplerError;

/// Cumulative reclaim figures since the programs were loaded.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReclaimReading {
    /// Per memory cgroup id.
    pub per_cgroup: HashMap<u64, ReclaimStats>,
    /// Node-wide totals.
    pub total: ReclaimStats,
    pub kswapd_wakeups: u64,
    /// kswapd wake-ups per NUMA node id: every online node, and any other that woke kswapd.
    pub kswapd_wakeups_by_node: Vec<(u32, u64)>,
}

pub struct ReclaimSampler {
    stats: PerCpuHashMap<MapData, u64, ReclaimStats>,
    kswapd: PerCpuArray<MapData, u64>,
    events: PerCpuArray<MapData, u64>,
    /// The reading made when the event count was this: handed out again while it stays.
    last: Option<(u64, ReclaimReading)>,
    /// The node's online NUMA nodes: each has its kswapd count, zero until it wakes, so that
    /// a dashboard's rate of it is 0 rather than no data.
    numa_nodes: Vec<u32>,
}

/// A kernel CPU or node list (`0`, `0-3`, `0,2-3`), as `/sys/devices/system/node/online`.
fn parse_id_list(text: &str) -> Vec<u32> {
    let mut ids = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(first), Ok(last)) = (first.parse::<u32>(), last.parse::<u32>()) {
            ids.extend(first..=last.min(first.saturating_add(1024)));
        }
    }
    ids
}

fn read_error(map: &'static str, e: impl std::fmt::Display) -> SamplerError {
    SamplerError::Read {
        map,
        source: std::io::Error::other(e.to_string()),
    }
}

impl ReclaimSampler {
    pub(super) fn from_maps(
        stats: aya::maps::Map,
        kswapd: aya::maps::Map,
        events: aya::maps::Map,
    ) -> Result<Self, SamplerError> {
        let object = |e: aya::maps::MapError| SamplerError::Object(e.to_string());
        Ok(ReclaimSampler {
            stats: PerCpuHashMap::try_from(stats).map_err(object)?,
            kswapd: PerCpuArray::try_from(kswapd).map_err(object)?,
            events: PerCpuArray::try_from(events).map_err(object)?,
            last: None,
            // Without the file (no NUMA support built in) the node is node 0.
            numa_nodes: std::fs::read_to_string("/sys/devices/system/node/online")
                .map(|t| parse_id_list(&t))
                .ok()
                .filter(|ids| !ids.is_empty())
                .unwrap_or_else(|| vec![0]),
        })
    }

    /// Every entry, read again only when the programs counted an event since the last
    /// read (a node that does not reclaim costs one lookup a tick). Reclaim touches few
    /// cgroups, so a per-key walk is fine when it does.
    pub fn read(&mut self) -> Result<ReclaimReading, SamplerError> {
        let events: u64 = self
            .events
            .get(&0, 0)
            .map_err(|e| read_error(MAP_RECLAIM_EVENTS, e))?
            .iter()
            .sum();
        if let Some((seen, reading)) = &self.last
            && *seen == events
        {
            return Ok(reading.clone());
        }
        let reading = self.read_maps()?;
        self.last = Some((events, reading.clone()));
        Ok(reading)
    }

    fn read_maps(&self) -> Result<ReclaimReading, SamplerError> {
        let mut reading = ReclaimReading::default();
        for item in self.stats.iter() {
            let (id, per_cpu) = item.map_err(|e| read_error(MAP_RECLAIM, e))?;
            let mut sum = ReclaimStats::default();
            for s in per_cpu.iter() {
                sum.direct_episodes += s.direct_episodes;
                sum.direct_stall_ns += s.direct_stall_ns;
                sum.memcg_episodes += s.memcg_episodes;
                sum.memcg_stall_ns += s.memcg_stall_ns;
            }
            reading.total.direct_episodes += sum.direct_episodes;
            reading.total.direct_stall_ns += sum.direct_stall_ns;
            reading.total.memcg_episodes += sum.memcg_episodes;
            reading.total.memcg_stall_ns += sum.memcg_stall_ns;
            reading.per_cgroup.insert(id, sum);
        }
        for (node, per_cpu) in self.kswapd.iter().enumerate() {
            let per_cpu = per_cpu.map_err(|e| read_error(MAP_KSWAPD_WAKEUPS, e))?;
            let wakeups: u64 = per_cpu.iter().sum();
            reading.kswapd_wakeups += wakeups;
            if wakeups > 0 || self.numa_nodes.contains(&(node as u32)) {
                reading.kswapd_wakeups_by_node.push((node as u32, wakeups));
            }
        }
        Ok(reading)
    }

    /// Drops the figures of memory cgroups that no longer exist.
    pub fn forget(&mut self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            let _ = self.stats.remove(&id);
        }
    }
}

/// Direct-reclaim episodes as they end, from the `vmscan` programs' wake-up ring (at most
/// one record per `RECLAIM_WAKE_GAP_NS` node-wide): the tick sleeps on it so that the
/// ladder sees a stall when it happens, not up to a tick later.
pub struct ReclaimWake {
    ring: RingBuf<MapData>,
}

impl ReclaimWake {
    pub(super) fn from_map(ring: aya::maps::Map) -> Result<Self, SamplerError> {
        Ok(ReclaimWake {
            ring: RingBuf::try_from(ring).map_err(|e| read_error(MAP_RECLAIM_WAKE, e))?,
        })
    }

    /// Sleeps until an episode ends or `timeout` passes; true when one ended.
    pub fn wait(&self, timeout: Duration) -> bool {
        super::ring::wait_readable(&self.ring, timeout)
    }

    /// Consumes every record queued; how many there were.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        while self.ring.next().is_some() {
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::parse_id_list;

    #[test]
    fn node_lists_as_the_kernel_writes_them() {
        assert_eq!(parse_id_list("0\n"), vec![0]);
        assert_eq!(parse_id_list("0-3\n"), vec![0, 1, 2, 3]);
        assert_eq!(parse_id_list("0,2-3"), vec![0, 2, 3]);
        assert_eq!(parse_id_list(""), Vec::<u32>::new());
        assert_eq!(parse_id_list("x,1"), vec![1]);
    }
}

//! Network shaping benchmarks, in namespaces the bench makes (tests/src/net.rs):
//!
//! - [`tc`]: programming N macvlan subinterfaces with enforcer's netlink reconciler versus
//!   the same configuration applied with the `tc` CLI (a process per command, and
//!   `tc -batch`);
//! - [`rtt`]: the online side's ping RTT during an offline flood, with enforcer's shaping
//!   versus a plain FIFO bottleneck, and the shaped offline rate against its limit.

pub mod rtt;
pub mod tc;

use std::time::Duration;

use enforcer::sampling::programs::{ProgramOptions, Programs};
use enforcer_common::CgroupMode;
use enforcer_tests::cgroup::mount_point;

/// The real programs, network ones included (attached at the cgroup2 root), for the
/// classifier's fd, id and map.
pub(crate) fn load_programs() -> anyhow::Result<Programs> {
    let unified = mount_point("unified")
        .ok_or_else(|| anyhow::anyhow!("no cgroup2 hierarchy on this host"))?;
    // Which hierarchy CPU time and reclaim are charged to does not matter here; follow the
    // host (v1 controllers on a hybrid host).
    let mode = |controller: &str| {
        if mount_point(controller).is_some() {
            CgroupMode::V1Cpu
        } else {
            CgroupMode::Unified
        }
    };
    Ok(Programs::load(&ProgramOptions {
        cpu_mode: mode("cpu"),
        memory_mode: mode("memory"),
        cgroup_map_entries: 16_384,
        network: Some(unified),
    })?)
}

/// The `p`th percentile (nearest rank) of sorted values.
fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median and p90 of timings, in milliseconds.
fn ms_stats(times: &mut [Duration]) -> (f64, f64) {
    times.sort();
    (
        percentile(times, 50.0).as_secs_f64() * 1e3,
        percentile(times, 90.0).as_secs_f64() * 1e3,
    )
}

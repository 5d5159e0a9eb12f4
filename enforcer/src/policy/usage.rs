//! CPU accounting: turns the sampler's cumulative per-cgroup readings into monotone
//! per-cgroup totals, per-class counters and windowed rates.
//!
//! Class counters are fed by deltas, so time already attributed to a class stays there when
//! its cgroup disappears, and a cgroup seen by the sampler before the index knows it keeps
//! its time until it is classified (nothing is lost between rescans).

use std::collections::{BTreeMap, HashMap};

use super::window::RateWindow;
use crate::model::{Class, Priority};

/// What a cgroup's time is counted under.
pub type ClassKey = (Class, Option<Priority>);

#[derive(Debug, Clone)]
struct CgroupState {
    /// Monotone cumulative on-CPU nanoseconds.
    total_ns: u64,
    /// The part of `total_ns` already added to a class counter.
    attributed_ns: u64,
    window: RateWindow,
}

/// Per-class cumulative time and its rate.
#[derive(Debug, Clone)]
pub struct ClassTotals {
    pub total_ns: u64,
    pub window: RateWindow,
}

/// Accumulates sampler readings. Time is injected: every call carries the reading's
/// CLOCK_MONOTONIC timestamp.
#[derive(Debug)]
pub struct UsageTracker {
    window_ns: u64,
    cgroups: HashMap<u64, CgroupState>,
    classes: BTreeMap<ClassKey, ClassTotals>,
    busy_total_ns: u64,
    busy_window: RateWindow,
}

impl UsageTracker {
    pub fn new(window_ns: u64) -> Self {
        UsageTracker {
            window_ns,
            cgroups: HashMap::new(),
            classes: BTreeMap::new(),
            busy_total_ns: 0,
            busy_window: RateWindow::new(window_ns),
        }
    }

    /// Feeds one reading: cumulative busy time of the node and cumulative time per cgroup
    /// id. `class_of` says what a cgroup id is counted under (`None`: not in the index yet).
    /// Returns the ids the index does not know.
    pub fn update(
        &mut self,
        at_ns: u64,
        busy_ns: u64,
        per_cgroup: &HashMap<u64, u64>,
        mut class_of: impl FnMut(u64) -> Option<ClassKey>,
    ) -> Vec<u64> {
        // Readings may dip by one in-flight slice (see sampling::cpu); never go backwards.
        self.busy_total_ns = self.busy_total_ns.max(busy_ns);
        self.busy_window.push(at_ns, self.busy_total_ns);

        let mut unknown = Vec::new();
        for (&id, &raw) in per_cgroup {
            let window_ns = self.window_ns;
            let state = self.cgroups.entry(id).or_insert_with(|| CgroupState {
                total_ns: 0,
                attributed_ns: 0,
                window: RateWindow::new(window_ns),
            });
            state.total_ns = state.total_ns.max(raw);
            state.window.push(at_ns, state.total_ns);
            match class_of(id) {
                Some(key) => {
                    let delta = state.total_ns - state.attributed_ns;
                    state.attributed_ns = state.total_ns;
                    let class = self.classes.entry(key).or_insert_with(|| ClassTotals {
                        total_ns: 0,
                        window: RateWindow::new(window_ns),
                    });
                    class.total_ns += delta;
                }
                None => unknown.push(id),
            }
        }
        for class in self.classes.values_mut() {
            class.window.push(at_ns, class.total_ns);
        }
        unknown
    }

    /// Drops a cgroup that no longer exists. Time not yet attributed (the cgroup was never
    /// classified) goes to `fallback`, so that class totals still add up to busy time.
    pub fn forget(&mut self, id: u64, fallback: ClassKey) {
        if let Some(state) = self.cgroups.remove(&id) {
            let rest = state.total_ns - state.attributed_ns;
            if rest > 0 {
                let window_ns = self.window_ns;
                self.classes
                    .entry(fallback)
                    .or_insert_with(|| ClassTotals {
                        total_ns: 0,
                        window: RateWindow::new(window_ns),
                    })
                    .total_ns += rest;
            }
        }
    }

    /// Node CPU utilisation over the window: busy time over elapsed time × CPUs.
    pub fn node_utilisation(&self, online_cpus: u32) -> f64 {
        (self.busy_window.rate() / f64::from(online_cpus.max(1))).clamp(0.0, 1.0)
    }

    pub fn busy_total_ns(&self) -> u64 {
        self.busy_total_ns
    }

    pub fn classes(&self) -> impl Iterator<Item = (&ClassKey, &ClassTotals)> {
        self.classes.iter()
    }

    /// Cumulative nanoseconds and cores in use over the window for one cgroup.
    pub fn cgroup(&self, id: u64) -> Option<(u64, f64)> {
        self.cgroups.get(&id).map(|s| (s.total_ns, s.window.rate()))
    }

    pub fn tracked_cgroups(&self) -> usize {
        self.cgroups.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const OFFLINE_P3: ClassKey = (Class::Offline, Some(Priority::P3));
    const ONLINE: ClassKey = (Class::Online, None);
    const SYSTEM: ClassKey = (Class::System, None);

    fn reading(pairs: &[(u64, u64)]) -> HashMap<u64, u64> {
        pairs.iter().copied().collect()
    }

    fn total(t: &UsageTracker, key: ClassKey) -> u64 {
        t.classes()
            .find(|(k, _)| **k == key)
            .map(|(_, c)| c.total_ns)
            .unwrap_or(0)
    }

    #[test]
    fn classes_accumulate_deltas_and_node_utilisation_follows_busy_time() {
        let mut t = UsageTracker::new(1000 * MS);
        let class_of = |id| match id {
            1 => Some(ONLINE),
            2 => Some(OFFLINE_P3),
            _ => None,
        };
        for i in 0..=10u64 {
            let at = i * 100 * MS;
            // cgroup 1 uses one core, cgroup 2 half a core, on a 2-CPU node.
            let r = reading(&[(1, at), (2, at / 2)]);
            assert!(t.update(at, at + at / 2, &r, class_of).is_empty());
        }
        assert_eq!(total(&t, ONLINE), 1000 * MS);
        assert_eq!(total(&t, OFFLINE_P3), 500 * MS);
        assert!((t.node_utilisation(2) - 0.75).abs() < 1e-9);
        let (ns, cores) = t.cgroup(2).unwrap();
        assert_eq!(ns, 500 * MS);
        assert!((cores - 0.5).abs() < 1e-9);
    }

    #[test]
    fn readings_that_dip_never_make_counters_go_backwards() {
        let mut t = UsageTracker::new(1000 * MS);
        let class_of = |_| Some(OFFLINE_P3);
        t.update(100 * MS, 100, &reading(&[(7, 100)]), class_of);
        t.update(200 * MS, 90, &reading(&[(7, 90)]), class_of);
        assert_eq!(total(&t, OFFLINE_P3), 100);
        assert_eq!(t.busy_total_ns(), 100);
        t.update(300 * MS, 150, &reading(&[(7, 150)]), class_of);
        assert_eq!(total(&t, OFFLINE_P3), 150);
    }

    #[test]
    fn time_before_classification_is_kept_until_the_index_knows_the_cgroup() {
        let mut t = UsageTracker::new(1000 * MS);
        let unknown = t.update(100 * MS, 40, &reading(&[(9, 40)]), |_| None);
        assert_eq!(unknown, vec![9]);
        assert_eq!(total(&t, OFFLINE_P3), 0);
        t.update(200 * MS, 70, &reading(&[(9, 70)]), |_| Some(OFFLINE_P3));
        assert_eq!(total(&t, OFFLINE_P3), 70);
    }

    #[test]
    fn removed_cgroups_keep_their_time_in_the_class() {
        let mut t = UsageTracker::new(1000 * MS);
        t.update(100 * MS, 50, &reading(&[(3, 50)]), |_| Some(OFFLINE_P3));
        t.forget(3, SYSTEM);
        assert_eq!(total(&t, OFFLINE_P3), 50);
        assert_eq!(total(&t, SYSTEM), 0);
        assert!(t.cgroup(3).is_none());
        // A cgroup removed before it was ever classified lands in the fallback class.
        t.update(200 * MS, 80, &reading(&[(4, 30)]), |_| None);
        t.forget(4, SYSTEM);
        assert_eq!(total(&t, SYSTEM), 30);
    }

    #[test]
    fn reclassification_moves_future_time_only() {
        let mut t = UsageTracker::new(1000 * MS);
        t.update(100 * MS, 10, &reading(&[(5, 10)]), |_| Some(ONLINE));
        t.update(200 * MS, 25, &reading(&[(5, 25)]), |_| Some(OFFLINE_P3));
        assert_eq!(total(&t, ONLINE), 10);
        assert_eq!(total(&t, OFFLINE_P3), 15);
    }
}

//! Per-unit usage for billing: each offline unit's CPU time, memory integral and network
//! bytes over its life, and how it ended, turned into [`UsageRecord`]s. Pure: the daemon
//! feeds it what each tick saw, with the time; it decides nothing and reads nothing.
//!
//! A unit is keyed by its cgroup id (stable for the cgroup's life, and across a daemon
//! restart); its CPU time is the sum of the monotone totals of every cgroup it ever had,
//! so a container that exited (its cgroup removed) keeps counting.

use std::{collections::HashMap, sync::Arc};

use crate::model::{
    Priority,
    usage::{UsageRecord, UsageStatus},
};

/// What a unit is, as the daemon names it (from the index and the pod table).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnitIdentity {
    /// The record id: the pod's uid (from kubelet's cgroup name, so it is known before the
    /// runtime answers), else `cgroup:<path>`.
    pub id: String,
    pub cgroup: String,
    pub priority: Option<Priority>,
    pub namespace: String,
    pub pod_name: String,
    pub application_id: String,
    pub spark_role: String,
    pub queue: String,
    /// Unix seconds the runtime created the pod (`None`: not a known pod).
    pub created_unix: Option<f64>,
}

/// One unit as one tick saw it.
#[derive(Debug, Clone)]
pub struct UnitSample<'a> {
    pub unit: u64,
    pub identity: &'a Arc<UnitIdentity>,
    /// Monotone on-CPU nanoseconds of each of the unit's cgroups.
    pub cpu: &'a [(u64, u64)],
    /// Monotone bytes received and sent by the unit's cgroups.
    pub net: (u64, u64),
    /// Whether any of the pod's containers runs, as the runtime listed them (`None`: no
    /// pod, or no container listed).
    pub containers_running: Option<bool>,
}

#[derive(Debug, Clone, Default)]
struct MemoryIntegral {
    last: Option<(u64, u64)>,
    byte_ns: f64,
    peak: u64,
}

impl MemoryIntegral {
    /// Each read holds until the next. Reads come every tick while the unit's tasks run
    /// (the only time its memory can grow, or fall by its own doing) and once a second
    /// otherwise; a fall seen after an idle second happened at its end (the tasks that
    /// freed it ran then, often as they exited), which a straight line between the reads
    /// would put half a second early.
    fn push(&mut self, at_ns: u64, bytes: u64) {
        if let Some((t, b)) = self.last
            && at_ns > t
        {
            self.byte_ns += b as f64 * (at_ns - t) as f64;
        }
        if self.last.is_none_or(|(t, _)| at_ns >= t) {
            self.last = Some((at_ns, bytes));
        }
        self.peak = self.peak.max(bytes);
    }
}

/// What a predecessor daemon recorded of a unit still running at its end.
#[derive(Debug, Clone, Default)]
struct Carried {
    cpu_ns: u64,
    memory_byte_ns: f64,
    peak: u64,
    rx: u64,
    tx: u64,
    oom_kills: u64,
    start_time: Option<String>,
}

#[derive(Debug, Clone)]
struct Account {
    identity: Arc<UnitIdentity>,
    cpu_by_cgroup: HashMap<u64, u64>,
    memory: MemoryIntegral,
    rx: u64,
    tx: u64,
    /// The kernel's CPU time of the unit's cgroup as last read (its whole life, moved
    /// tasks' slices included), a floor under the eBPF sum.
    kernel_cpu_ns: u64,
    /// OOM kills as `memory.events` counts them (cgroup2: the whole subtree).
    oom_kills: u64,
    /// OOM kills of the unit's tasks the kernel logged (every layout).
    oom_logged: u64,
    killed_seq: Option<u64>,
    containers_running: Option<bool>,
    first_seen_unix: f64,
    carried: Carried,
}

impl Account {
    /// The eBPF sum (with what a predecessor counted), or the kernel's own figure of the
    /// unit's cgroup when that is higher: the eBPF program charges a slice to the cgroup
    /// its task was in when it started, so a task moved while it runs (a container's init,
    /// placed by its runtime) leaves part of a slice with its old cgroup; and the kernel's
    /// figure covers what ran before this daemon started.
    fn cpu_ns(&self) -> u64 {
        (self.carried.cpu_ns + self.cpu_by_cgroup.values().sum::<u64>()).max(self.kernel_cpu_ns)
    }

    fn oom_kills(&self) -> u64 {
        self.oom_kills
            .max(self.oom_logged)
            .max(self.carried.oom_kills)
    }

    fn status_at_end(&self) -> UsageStatus {
        if self.killed_seq.is_some() {
            UsageStatus::Killed
        } else if self.oom_kills() > 0 {
            UsageStatus::OomKilled
        } else if self.containers_running == Some(true) {
            UsageStatus::Deleted
        } else {
            UsageStatus::Completed
        }
    }

    fn record(&self, node: &str, status: UsageStatus, end_unix: f64) -> UsageRecord {
        let id = &self.identity;
        let start = self.carried.start_time.clone().unwrap_or_else(|| {
            crate::clock::rfc3339(id.created_unix.unwrap_or(self.first_seen_unix))
        });
        UsageRecord {
            id: id.id.clone(),
            node: node.to_string(),
            status,
            application_id: id.application_id.clone(),
            namespace: id.namespace.clone(),
            pod_name: id.pod_name.clone(),
            spark_role: id.spark_role.clone(),
            queue: id.queue.clone(),
            priority: id.priority,
            cgroup: id.cgroup.clone(),
            cpu_seconds: self.cpu_ns() as f64 / 1e9,
            memory_mb_seconds: (self.carried.memory_byte_ns + self.memory.byte_ns)
                / 1e9
                / (1024.0 * 1024.0),
            memory_peak_bytes: self.memory.peak.max(self.carried.peak),
            net_rx_bytes: self.carried.rx + self.rx,
            net_tx_bytes: self.carried.tx + self.tx,
            start_time: start,
            end_time: crate::clock::rfc3339(end_unix),
            killed_seq: if status == UsageStatus::Killed {
                self.killed_seq
            } else {
                None
            },
            oom_kills: self.oom_kills(),
            last_known: false,
        }
    }
}

/// Every offline unit's account, and what a predecessor left running.
#[derive(Debug, Default)]
pub struct Accounts {
    node: String,
    units: HashMap<u64, Account>,
    /// Which unit each cgroup's time goes to (a removed cgroup's last total comes by id).
    owner_of: HashMap<u64, u64>,
    /// Running records of a predecessor, by id, until their unit is seen or known gone.
    carried: HashMap<String, UsageRecord>,
}

impl Accounts {
    pub fn new(node: &str) -> Accounts {
        Accounts {
            node: node.to_string(),
            ..Default::default()
        }
    }

    /// Units with an open account.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    pub fn contains(&self, unit: u64) -> bool {
        self.units.contains_key(&unit)
    }

    /// The last records a predecessor wrote: the `running` ones are carried on (CPU, memory
    /// and bytes add to what this daemon counts) when their unit is seen again.
    pub fn adopt(&mut self, records: impl IntoIterator<Item = UsageRecord>) {
        for r in records {
            if r.status == UsageStatus::Running {
                self.carried.insert(r.id.clone(), r);
            } else {
                self.carried.remove(&r.id);
            }
        }
    }

    /// Whether a predecessor's running records wait for their unit.
    pub fn has_carried(&self) -> bool {
        !self.carried.is_empty()
    }

    /// Carried records whose unit is gone (`exists` says whether its cgroup still does):
    /// they ended while no daemon ran; their record says so, with the last known figures.
    pub fn end_carried_gone(
        &mut self,
        exists: impl Fn(&str) -> bool,
        now_unix: f64,
    ) -> Vec<UsageRecord> {
        let gone: Vec<String> = self
            .carried
            .iter()
            .filter(|(_, r)| !exists(&r.cgroup))
            .map(|(id, _)| id.clone())
            .collect();
        gone.into_iter()
            .filter_map(|id| self.carried.remove(&id))
            .map(|mut r| {
                r.status = if r.oom_kills > 0 {
                    UsageStatus::OomKilled
                } else {
                    UsageStatus::Completed
                };
                r.end_time = crate::clock::rfc3339(now_unix);
                r.last_known = true;
                r
            })
            .collect()
    }

    /// One tick's view of a unit.
    pub fn observe(&mut self, sample: UnitSample<'_>, now_unix: f64) {
        let carried = &mut self.carried;
        let account = self.units.entry(sample.unit).or_insert_with(|| {
            let mut carried_in = Carried::default();
            if let Some(r) = carried.remove(&sample.identity.id) {
                carried_in = Carried {
                    cpu_ns: (r.cpu_seconds * 1e9).round() as u64,
                    memory_byte_ns: r.memory_mb_seconds * 1e9 * 1024.0 * 1024.0,
                    peak: r.memory_peak_bytes,
                    rx: r.net_rx_bytes,
                    tx: r.net_tx_bytes,
                    oom_kills: r.oom_kills,
                    start_time: Some(r.start_time),
                };
            }
            Account {
                identity: sample.identity.clone(),
                cpu_by_cgroup: HashMap::new(),
                memory: MemoryIntegral::default(),
                rx: 0,
                tx: 0,
                kernel_cpu_ns: 0,
                oom_kills: 0,
                oom_logged: 0,
                killed_seq: None,
                containers_running: None,
                first_seen_unix: now_unix,
                carried: carried_in,
            }
        });
        // The runtime's names arrive after the cgroup: keep the richer identity.
        if !Arc::ptr_eq(&account.identity, sample.identity)
            && (!sample.identity.pod_name.is_empty() || account.identity.pod_name.is_empty())
        {
            account.identity = sample.identity.clone();
        }
        for &(id, total) in sample.cpu {
            let slot = account.cpu_by_cgroup.entry(id).or_default();
            *slot = (*slot).max(total);
            self.owner_of.insert(id, sample.unit);
        }
        account.rx = account.rx.max(sample.net.0);
        account.tx = account.tx.max(sample.net.1);
        if sample.containers_running.is_some() {
            account.containers_running = sample.containers_running;
        }
    }

    /// A unit's CPU nanoseconds so far.
    pub fn cpu_ns(&self, unit: u64) -> Option<u64> {
        self.units.get(&unit).map(Account::cpu_ns)
    }

    /// A memory read of a unit (hierarchical use, bytes) at `at_ns` (CLOCK_MONOTONIC).
    pub fn memory(&mut self, unit: u64, at_ns: u64, bytes: u64) {
        if let Some(a) = self.units.get_mut(&unit) {
            a.memory.push(at_ns, bytes);
        }
    }

    /// The kernel's CPU time of a unit's cgroup (hierarchical, its whole life).
    pub fn kernel_cpu(&mut self, unit: u64, ns: u64) {
        if let Some(a) = self.units.get_mut(&unit) {
            a.kernel_cpu_ns = a.kernel_cpu_ns.max(ns);
        }
    }

    /// The kernel's count of OOM kills in a unit (`memory.events` `oom_kill`).
    pub fn oom_kills(&mut self, unit: u64, kills: u64) {
        if let Some(a) = self.units.get_mut(&unit) {
            a.oom_kills = a.oom_kills.max(kills);
        }
    }

    /// The kernel logged the OOM kill of a task of `unit`.
    pub fn oom_kill_logged(&mut self, unit: u64) {
        if let Some(a) = self.units.get_mut(&unit) {
            a.oom_logged += 1;
        }
    }

    /// The last total of a cgroup whose map entry is dropped (it was removed): time it ran
    /// after the last tick still goes to its unit, which is returned.
    pub fn final_cpu(&mut self, cgroup: u64, total_ns: u64) -> Option<u64> {
        let unit = self.owner_of.remove(&cgroup)?;
        let a = self.units.get_mut(&unit)?;
        let slot = a.cpu_by_cgroup.entry(cgroup).or_default();
        *slot = (*slot).max(total_ns);
        Some(unit)
    }

    /// The ladder killed `target` (a unit's cgroup, or a parent of units), journaled as
    /// `seq`.
    pub fn killed(&mut self, target: &str, seq: u64) {
        for a in self.units.values_mut() {
            let c = a.identity.cgroup.as_str();
            let under = c == target
                || (c.starts_with(target) && c.as_bytes().get(target.len()) == Some(&b'/'));
            if under {
                a.killed_seq = Some(seq);
            }
        }
    }

    /// Ends the units not in `present` (their cgroup is gone from the index): one `ended`
    /// record each. `containers_running` is what the runtime said last of a unit's
    /// containers (`None`: nothing): a pod deleted right after its containers completed
    /// can be gone from the index in the same tick the runtime's word of their exit came.
    pub fn end_absent(
        &mut self,
        present: impl Fn(u64) -> bool,
        containers_running: impl Fn(&UnitIdentity) -> Option<bool>,
        now_unix: f64,
    ) -> Vec<UsageRecord> {
        let gone: Vec<u64> = self
            .units
            .keys()
            .copied()
            .filter(|u| !present(*u))
            .collect();
        let mut records = Vec::with_capacity(gone.len());
        for unit in gone {
            if let Some(mut a) = self.units.remove(&unit) {
                if let Some(running) = containers_running(&a.identity) {
                    a.containers_running = Some(running);
                }
                for id in a.cpu_by_cgroup.keys() {
                    if self.owner_of.get(id) == Some(&unit) {
                        self.owner_of.remove(id);
                    }
                }
                records.push(a.record(&self.node, a.status_at_end(), now_unix));
            }
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        records
    }

    /// A `running` record of every open account (the periodic flush), by id.
    pub fn running(&self, now_unix: f64) -> Vec<UsageRecord> {
        let mut records: Vec<UsageRecord> = self
            .units
            .values()
            .map(|a| a.record(&self.node, UsageStatus::Running, now_unix))
            .collect();
        records.sort_by(|a, b| a.id.cmp(&b.id));
        records
    }

    /// Open accounts: (identity, CPU ns, memory byte-seconds), for the metrics.
    pub fn totals(&self) -> impl Iterator<Item = (&UnitIdentity, u64, f64)> {
        self.units.values().map(|a| {
            (
                a.identity.as_ref(),
                a.cpu_ns(),
                (a.carried.memory_byte_ns + a.memory.byte_ns) / 1e9,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const MIB: u64 = 1024 * 1024;

    fn identity(id: &str, cgroup: &str) -> Arc<UnitIdentity> {
        Arc::new(UnitIdentity {
            id: id.into(),
            cgroup: cgroup.into(),
            priority: Some(Priority::P1),
            namespace: "spark".into(),
            pod_name: format!("{id}-pod"),
            application_id: "spark-1".into(),
            spark_role: "executor".into(),
            queue: "root.P1".into(),
            created_unix: Some(1_000.0),
        })
    }

    fn see(
        a: &mut Accounts,
        unit: u64,
        who: &Arc<UnitIdentity>,
        cpu: &[(u64, u64)],
        running: bool,
    ) {
        a.observe(
            UnitSample {
                unit,
                identity: who,
                cpu,
                net: (10, 20),
                containers_running: Some(running),
            },
            1_000.0,
        );
    }

    #[test]
    fn cpu_of_exited_containers_keeps_counting_and_the_last_slice_is_not_lost() {
        let mut a = Accounts::new("n1");
        let who = identity("uid-1", "kubepods/besteffort/poduid-1");
        see(&mut a, 1, &who, &[(1, 0), (2, S), (3, 2 * S)], true);
        // Container 3 exits and its cgroup goes: its last total comes by id.
        a.final_cpu(3, 3 * S);
        see(&mut a, 1, &who, &[(1, 0), (2, 2 * S)], false);
        let ended = a.end_absent(|_| false, |_| None, 1_010.0);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].cpu_seconds, 5.0);
        assert_eq!(ended[0].status, UsageStatus::Completed);
        assert_eq!(ended[0].net_rx_bytes, 10);
        assert!(a.is_empty());
    }

    #[test]
    fn a_pod_gone_in_the_tick_the_runtime_saw_its_containers_exit_completed() {
        let mut a = Accounts::new("n1");
        let done = identity("uid-1", "kubepods/besteffort/poduid-1");
        let busy = identity("uid-2", "kubepods/besteffort/poduid-2");
        see(&mut a, 1, &done, &[(1, S)], true);
        see(&mut a, 2, &busy, &[(2, S)], true);
        // The runtime lists uid-1 with its containers exited, uid-2 no more (deleted).
        let ended = a.end_absent(|_| false, |id| (id.id == "uid-1").then_some(false), 1_010.0);
        let status: Vec<(&str, UsageStatus)> =
            ended.iter().map(|r| (r.id.as_str(), r.status)).collect();
        assert_eq!(
            status,
            vec![
                ("uid-1", UsageStatus::Completed),
                ("uid-2", UsageStatus::Deleted)
            ]
        );
    }

    #[test]
    fn the_kernels_figure_is_a_floor_under_the_ebpf_sum() {
        let mut a = Accounts::new("n1");
        let who = identity("uid-1", "p");
        see(&mut a, 1, &who, &[(1, 2 * S)], true);
        // A slice the eBPF program left with the runtime's cgroup: the kernel has more.
        a.kernel_cpu(1, 2 * S + S / 10);
        assert_eq!(a.running(1.0)[0].cpu_seconds, 2.1);
        // Exited containers' time after the last kernel read: the eBPF sum is higher.
        a.final_cpu(1, 3 * S);
        assert_eq!(a.running(1.0)[0].cpu_seconds, 3.0);
    }

    #[test]
    fn memory_is_the_integral_of_the_reads() {
        let mut a = Accounts::new("n1");
        let who = identity("uid-1", "p");
        see(&mut a, 1, &who, &[], true);
        // Reads: 0 at 0 s, 100 MiB at 1 s and 3 s, 0 at 4 s: 100 MiB held from 1 s to 4 s.
        a.memory(1, 0, 0);
        a.memory(1, S, 100 * MIB);
        a.memory(1, 3 * S, 100 * MIB);
        a.memory(1, 4 * S, 0);
        let r = &a.running(1_004.0)[0];
        assert!((r.memory_mb_seconds - 300.0).abs() < 1e-6, "{r:?}");
        assert_eq!(r.memory_peak_bytes, 100 * MIB);
        // A read that comes late (older than the last) changes nothing.
        a.memory(1, 2 * S, 500 * MIB);
        assert!((a.running(1_004.0)[0].memory_mb_seconds - 300.0).abs() < 1e-6);
    }

    #[test]
    fn how_a_unit_ended_kill_before_oom_before_deleted() {
        let mut a = Accounts::new("n1");
        let parent = "kubepods/besteffort";
        for (unit, id) in [(1, "k"), (2, "o"), (3, "d"), (4, "c")] {
            let who = identity(id, &format!("{parent}/pod{id}"));
            see(&mut a, unit, &who, &[], unit != 4);
        }
        a.killed(&format!("{parent}/podk"), 42);
        // A sibling whose name starts like the target is not under it.
        a.killed(&format!("{parent}/pod"), 43);
        a.oom_kills(2, 1);
        // The same kill logged by the kernel is not counted twice.
        a.oom_kill_logged(2);
        let ended = a.end_absent(|_| false, |_| None, 1_001.0);
        let status: Vec<_> = ended
            .iter()
            .map(|r| (r.id.as_str(), r.status, r.killed_seq))
            .collect();
        assert_eq!(
            status,
            [
                ("c", UsageStatus::Completed, None),
                ("d", UsageStatus::Deleted, None),
                ("k", UsageStatus::Killed, Some(42)),
                ("o", UsageStatus::OomKilled, None),
            ]
        );
    }

    #[test]
    fn a_predecessors_running_record_is_carried_on_or_ended_as_last_known() {
        let mut old = Accounts::new("n1");
        let who = identity("uid-1", "a");
        let gone = identity("uid-2", "b");
        see(&mut old, 1, &who, &[(1, 2 * S)], true);
        see(&mut old, 2, &gone, &[(2, S)], true);
        old.memory(1, 0, MIB);
        old.memory(1, S, MIB);
        let flushed = old.running(1_001.0);

        let mut new = Accounts::new("n1");
        new.adopt(flushed);
        // uid-2's cgroup is gone: ended while no daemon ran, with what was last known.
        let ended = new.end_carried_gone(|cgroup| cgroup == "a", 1_005.0);
        assert_eq!(ended.len(), 1);
        assert!(ended[0].last_known);
        assert_eq!((ended[0].id.as_str(), ended[0].cpu_seconds), ("uid-2", 1.0));
        assert_eq!(ended[0].status, UsageStatus::Completed);
        // uid-1 goes on from where it was: the new daemon's counters start at 0.
        see(&mut new, 1, &who, &[(1, S)], true);
        let r = &new.running(1_006.0)[0];
        assert_eq!(r.cpu_seconds, 3.0);
        assert!((r.memory_mb_seconds - 1.0).abs() < 1e-9);
        assert_eq!(r.start_time, crate::clock::rfc3339(1_000.0));
        // An ended record among the adopted ones closes the id: nothing is carried.
        let mut again = Accounts::new("n1");
        let mut records = new.running(1_007.0);
        records.extend(new.end_absent(|_| false, |_| None, 1_008.0));
        again.adopt(records);
        assert!(again.end_carried_gone(|_| false, 1_009.0).is_empty());
    }

    #[test]
    fn the_runtimes_names_replace_the_paths_but_never_the_other_way() {
        let mut a = Accounts::new("n1");
        let bare = Arc::new(UnitIdentity {
            id: "uid-1".into(),
            cgroup: "p".into(),
            ..Default::default()
        });
        let named = identity("uid-1", "p");
        see(&mut a, 1, &bare, &[], true);
        see(&mut a, 1, &named, &[], true);
        see(&mut a, 1, &bare, &[], true);
        assert_eq!(a.running(1.0)[0].pod_name, "uid-1-pod");
    }
}

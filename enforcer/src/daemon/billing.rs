//! The usage ledger's controller: every offline unit (a pod, else an offline cgroup such
//! as a Yarn container) accounted from the tick's figures, its memory read from the node,
//! and one record written when it ends (plus `running` records every flush interval).
//!
//! What it costs a tick: the unit plan is computed again only when the index or the pod
//! table changed; a unit's memory is read every tick only while its tasks run (its memory
//! can then only fall), else once a second; its OOM count once a second.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    config::JournalConfig,
    host::Host,
    model::{
        index::CgroupIndex,
        pod::{PodTable, pod_path},
        usage::UsageRecord,
    },
    policy::billing::{Accounts, UnitIdentity, UnitSample},
    sampling::kmsg::OomWatch,
    surfaces::{
        ledger::{self, Ledger},
        snapshot::{GroupUsage, UnitUsage, UsageView},
    },
};

use super::{census::CgroupRoots, state::NodeState};

/// The kernel's log, where it names the cgroup of each task the OOM killer killed.
const KMSG: &str = "/dev/kmsg";

/// How often an idle unit's memory and every unit's OOM count are read.
const SLOW_READ: Duration = Duration::from_secs(1);
/// How long a logged OOM kill of a cgroup no unit holds yet waits for one: the kernel can
/// kill a container before the pod source has listed its pod (its first second of life).
const OOM_MATCH_WAIT: Duration = Duration::from_secs(30);
/// At most this many such kills wait (a storm of kills outside offline work is dropped).
const OOM_PENDING_MAX: usize = 1024;

/// One unit as the index has it: its cgroups in the CPU and network hierarchies.
#[derive(Debug, Clone)]
struct PlannedUnit {
    unit: u64,
    rel: Arc<str>,
    identity: Arc<UnitIdentity>,
    cgroups: Vec<u64>,
    net: Vec<u64>,
    containers_running: Option<bool>,
}

#[derive(Debug, Default)]
struct Plan {
    versions: Option<(u64, u64, Option<u64>)>,
    units: Vec<PlannedUnit>,
    ids: HashSet<u64>,
    /// Unit path → index in `units`.
    by_path: HashMap<String, usize>,
}

/// The identity of the unit at `entry`: the pod's names and labels when the runtime knows
/// it; the uid from kubelet's cgroup name when it does not (yet).
fn identity(
    entry: &crate::model::index::CgroupEntry,
    current: Option<&crate::model::pod::Pod>,
) -> UnitIdentity {
    let label =
        |pod: &crate::model::pod::Pod, key: &str| pod.labels.get(key).cloned().unwrap_or_default();
    let mut id = UnitIdentity {
        id: pod_path(&entry.path)
            .map(|p| p.uid)
            .unwrap_or_else(|| format!("cgroup:{}", entry.path)),
        cgroup: entry.path.to_string(),
        priority: entry.priority,
        queue: entry.priority.map(|p| p.to_string()).unwrap_or_default(),
        ..Default::default()
    };
    if let Some(pod) = current.or(entry.pod.as_ref().map(|p| p.pod.as_ref())) {
        id.id = pod.uid.clone();
        id.namespace = pod.namespace.clone();
        id.pod_name = pod.name.clone();
        id.application_id = label(pod, "spark-app-selector");
        id.spark_role = label(pod, "spark-role");
        let queue = label(pod, "queue");
        if !queue.is_empty() {
            id.queue = queue;
        }
        id.created_unix = (pod.created_at > 0).then(|| pod.created_at as f64 / 1e9);
    }
    id
}

/// Whether any of a pod's containers runs (`None`: the runtime lists none of them).
fn containers_running(pod: &crate::model::pod::Pod) -> Option<bool> {
    let containers = &pod.containers;
    (!containers.is_empty()).then(|| containers.iter().any(|c| c.running))
}

/// The unit a cgroup path belongs to: itself or its nearest ancestor that is a unit.
fn unit_of(path: &str, units: impl Fn(&str) -> Option<usize>) -> Option<usize> {
    let mut p = path;
    loop {
        if let Some(i) = units(p) {
            return Some(i);
        }
        p = p.rsplit_once('/')?.0;
    }
}

impl Plan {
    /// Computes the plan again if the index or the pods changed; says whether it did.
    fn refresh(&mut self, index: &CgroupIndex, pods: &PodTable, net: Option<&CgroupIndex>) -> bool {
        let versions = (index.version(), pods.generation(), net.map(|n| n.version()));
        if self.versions == Some(versions) {
            return false;
        }
        self.versions = Some(versions);
        let mut units: Vec<PlannedUnit> = super::census::offline_units(index)
            .into_iter()
            .map(|e| {
                // The index keeps the pod as it was when the cgroup was classified; the
                // table has it as the runtime listed it last (its containers' states).
                let current = e.pod.as_ref().and_then(|p| pods.get(&p.pod.uid));
                PlannedUnit {
                    unit: e.id,
                    rel: e.path.clone(),
                    identity: Arc::new(identity(e, current.map(|p| p.as_ref()))),
                    cgroups: Vec::new(),
                    net: Vec::new(),
                    containers_running: current.and_then(|pod| containers_running(pod)),
                }
            })
            .collect();
        let by_path: HashMap<&str, usize> = units
            .iter()
            .enumerate()
            .map(|(i, u)| (&*u.rel, i))
            .collect();
        let mut cgroups: Vec<(usize, u64)> = Vec::new();
        for e in index.iter() {
            if let Some(i) = unit_of(&e.path, |p| by_path.get(p).copied()) {
                cgroups.push((i, e.id));
            }
        }
        let mut net_ids: Vec<(usize, u64)> = Vec::new();
        if let Some(net) = net {
            for e in net.iter() {
                if let Some(i) = unit_of(&e.path, |p| by_path.get(p).copied()) {
                    net_ids.push((i, e.id));
                }
            }
        }
        drop(by_path);
        for (i, id) in cgroups {
            units[i].cgroups.push(id);
        }
        for (i, id) in net_ids {
            units[i].net.push(id);
        }
        if net.is_none() {
            for u in &mut units {
                u.net = u.cgroups.clone();
            }
        }
        self.ids = units.iter().map(|u| u.unit).collect();
        self.by_path = units
            .iter()
            .enumerate()
            .map(|(i, u)| (u.rel.to_string(), i))
            .collect();
        self.units = units;
        true
    }
}

pub(super) struct Billing {
    accounts: Accounts,
    ledger: Option<Ledger>,
    flush_every: Duration,
    flushed_at: Instant,
    plan: Plan,
    /// Per unit: when its memory was last read and its CPU total then.
    memory_read: HashMap<u64, (Instant, u64)>,
    slow_read_at: Option<Instant>,
    /// Records not written yet (the ledger failed): written with the next ones.
    unwritten: Vec<UsageRecord>,
    failing: bool,
    write_failures: u64,
    /// The index version the predecessor's records were last checked against.
    carried_checked: Option<u64>,
    /// The kernel's OOM kill log (`None`: not readable; `memory.events` alone then).
    oom_log: Option<OomWatch>,
    /// Logged kills of cgroups no unit held when they were read, and when they were read.
    oom_pending: Vec<(String, Instant)>,
    /// What ended units used, per queue and per namespace: (CPU s, memory byte-s, units).
    ended_by_queue: HashMap<String, (f64, f64, u64)>,
    ended_by_namespace: HashMap<String, (f64, f64, u64)>,
}

impl Billing {
    /// Opens the ledger and carries on the running records a predecessor left (read from
    /// the live segment and the one before it: running records are written every flush
    /// interval, so the last of each unit is there). A ledger that cannot be opened is
    /// said once; accounting goes on in memory and the metrics still show it.
    pub(super) fn open(node: &str, config: &JournalConfig, flush_every: Duration) -> Billing {
        let mut accounts = Accounts::new(node);
        let ledger = match Ledger::open(config) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!("{e}; usage is not recorded");
                None
            }
        };
        if ledger.is_some() {
            let mut last: HashMap<String, UsageRecord> = HashMap::new();
            for path in [
                crate::actuators::journal::numbered_path(&config.path, 1),
                config.path.clone(),
            ] {
                match ledger::read_segment(&path) {
                    Ok(records) => {
                        for r in records {
                            last.insert(r.id.clone(), r);
                        }
                    }
                    Err(e) => tracing::warn!(
                        "{}: usage ledger: cannot read it ({e}); units that were running are recorded from now on",
                        path.display()
                    ),
                }
            }
            let carried = last.len();
            accounts.adopt(last.into_values());
            if carried > 0 {
                tracing::info!(
                    records = carried,
                    "usage ledger: carrying on the units a predecessor recorded"
                );
            }
        }
        Billing {
            accounts,
            ledger,
            flush_every,
            flushed_at: Instant::now(),
            plan: Plan::default(),
            memory_read: HashMap::new(),
            slow_read_at: None,
            unwritten: Vec::new(),
            failing: false,
            write_failures: 0,
            carried_checked: None,
            oom_pending: Vec::new(),
            oom_log: match OomWatch::open(Path::new(KMSG)) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(
                        "{KMSG}: {e}: the OOM kills of units are read from memory.events alone (on cgroup v1 a container's kill can be missed)"
                    );
                    None
                }
            },
            ended_by_queue: HashMap::new(),
            ended_by_namespace: HashMap::new(),
        }
    }

    /// The last totals of removed cgroups (read from the map before their entries go).
    pub(super) fn final_cpu(&mut self, totals: &[(u64, u64)]) {
        for &(id, total) in totals {
            // Its tasks ended (a container exited): what they held may have gone with them.
            if let Some(unit) = self.accounts.final_cpu(id, total) {
                self.memory_read.remove(&unit);
            }
        }
    }

    /// The ladder's kills of this tick.
    pub(super) fn killed(&mut self, kills: &[(String, u64)]) {
        for (target, seq) in kills {
            self.accounts.killed(target, *seq);
        }
    }

    /// One tick: the units' figures from the state (under its lock), their memory from
    /// the node (without it), the ended ones written.
    pub(super) fn tick(
        &mut self,
        state: &std::sync::Mutex<NodeState>,
        host: &dyn Host,
        roots: &CgroupRoots,
        at_ns: u64,
    ) {
        let now = Instant::now();
        let now_unix = crate::clock::unix_now();
        let mut ended = Vec::new();
        let pods = {
            let st = state.lock().unwrap();
            // A cgroup came or went (a container started or exited): every unit's memory
            // is read this tick.
            if self
                .plan
                .refresh(&st.index, &st.pods, st.net.index.as_ref())
            {
                self.memory_read.clear();
            }
            let mut cpu: Vec<(u64, u64)> = Vec::new();
            for u in &self.plan.units {
                cpu.clear();
                cpu.extend(
                    u.cgroups
                        .iter()
                        .filter_map(|&id| st.usage.cgroup(id).map(|(t, _)| (id, t))),
                );
                let sum = |t: &crate::policy::usage::UsageTracker| {
                    u.net
                        .iter()
                        .filter_map(|&id| t.cgroup(id))
                        .map(|(b, _)| b)
                        .sum()
                };
                self.accounts.observe(
                    UnitSample {
                        unit: u.unit,
                        identity: &u.identity,
                        cpu: &cpu,
                        net: (sum(&st.net.rx), sum(&st.net.tx)),
                        containers_running: u.containers_running,
                    },
                    now_unix,
                );
            }
            // A predecessor's units whose cgroup is gone, once the index has been walked,
            // looked at again only when the index changed (not every tick).
            if self.accounts.has_carried()
                && st.discovery.walks_total > 0
                && self.carried_checked != Some(st.index.version())
            {
                self.carried_checked = Some(st.index.version());
                let paths: HashSet<&str> = st.index.iter().map(|e| &*e.path).collect();
                ended.extend(
                    self.accounts
                        .end_carried_gone(|cgroup| paths.contains(cgroup), now_unix),
                );
            }
            st.pods.clone()
        };

        // Memory: every tick while the unit runs, once a second otherwise.
        let slow = self
            .slow_read_at
            .is_none_or(|t| now.duration_since(t) >= SLOW_READ);
        if slow {
            self.slow_read_at = Some(now);
        }
        for u in &self.plan.units {
            let cpu_now = self.accounts.cpu_ns(u.unit).unwrap_or(0);
            let had_read = self.memory_read.contains_key(&u.unit);
            let due = match self.memory_read.get(&u.unit) {
                None => true,
                Some(&(at, cpu)) => cpu_now != cpu || now.duration_since(at) >= SLOW_READ,
            };
            if due {
                if let Some(bytes) = roots.memory_usage(host, &u.rel) {
                    self.accounts.memory(u.unit, at_ns, bytes);
                }
                self.memory_read.insert(u.unit, (now, cpu_now));
            }
            // The kernel's own CPU figure: once a second, and when a cgroup of the unit
            // came or went (the unit is then missing from `memory_read` above).
            if (slow || !had_read)
                && let Some(ns) = roots.cpu_usage_ns(host, &u.rel)
            {
                self.accounts.kernel_cpu(u.unit, ns);
            }
            if slow && let Some(kills) = roots.oom_kills(host, &u.rel) {
                self.accounts.oom_kills(u.unit, kills);
            }
        }
        // Kills the kernel logged since the last tick (a non-blocking read): the container's
        // cgroup named there may already be gone.
        // A kill of a cgroup no unit holds yet waits for its unit a while (the pod source
        // may not have listed the pod); matched once, then forgotten.
        if let Some(log) = &mut self.oom_log {
            for path in log.kills() {
                if self.oom_pending.len() < OOM_PENDING_MAX {
                    self.oom_pending
                        .push((path.trim_start_matches('/').to_string(), now));
                }
            }
        }
        let plan = &self.plan;
        let accounts = &mut self.accounts;
        self.oom_pending.retain(
            |(rel, at)| match unit_of(rel, |p| plan.by_path.get(p).copied()) {
                Some(i) => {
                    accounts.oom_kill_logged(plan.units[i].unit);
                    false
                }
                None => now.duration_since(*at) < OOM_MATCH_WAIT,
            },
        );
        let present = &self.plan.ids;
        self.memory_read.retain(|u, _| present.contains(u));
        ended.extend(self.accounts.end_absent(
            |u| present.contains(&u),
            |id| pods.get(&id.id).and_then(|pod| containers_running(pod)),
            now_unix,
        ));
        for r in &ended {
            let mib_s = r.memory_mb_seconds * 1024.0 * 1024.0;
            for (groups, name) in [
                (&mut self.ended_by_queue, &r.queue),
                (&mut self.ended_by_namespace, &r.namespace),
            ] {
                let g = groups.entry(name.clone()).or_default();
                g.0 += r.cpu_seconds;
                g.1 += mib_s;
                g.2 += 1;
            }
            tracing::info!(
                id = %r.id, pod = %r.pod_name, status = %r.status,
                cpu_seconds = r.cpu_seconds, memory_mb_seconds = r.memory_mb_seconds,
                "usage: unit ended"
            );
        }
        self.unwritten.extend(ended);
        if now.duration_since(self.flushed_at) >= self.flush_every {
            self.flushed_at = now;
            self.unwritten.extend(self.accounts.running(now_unix));
        }
        self.write();
        if slow || !self.unwritten.is_empty() {
            let mut st = state.lock().unwrap();
            let top_n = st.top_n;
            st.usage_view = self.view(top_n);
        }
    }

    /// The surfaces' view: the top `top_n` units by CPU, and every queue and namespace.
    fn view(&self, top_n: usize) -> UsageView {
        let mut units: Vec<UnitUsage> = self
            .accounts
            .totals()
            .map(|(id, cpu_ns, byte_s)| UnitUsage {
                id: id.id.clone(),
                namespace: id.namespace.clone(),
                pod: id.pod_name.clone(),
                queue: id.queue.clone(),
                application_id: id.application_id.clone(),
                cpu_seconds: cpu_ns as f64 / 1e9,
                memory_byte_seconds: byte_s,
            })
            .collect();
        let mut queues = self.ended_by_queue.clone();
        let mut namespaces = self.ended_by_namespace.clone();
        for u in &units {
            for (groups, name) in [(&mut queues, &u.queue), (&mut namespaces, &u.namespace)] {
                let g = groups.entry(name.clone()).or_default();
                g.0 += u.cpu_seconds;
                g.1 += u.memory_byte_seconds;
            }
        }
        let groups = |m: HashMap<String, (f64, f64, u64)>| {
            let mut v: Vec<GroupUsage> = m
                .into_iter()
                .map(|(name, (cpu, mem, ended))| GroupUsage {
                    name,
                    cpu_seconds: cpu,
                    memory_byte_seconds: mem,
                    units_ended: ended,
                })
                .collect();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v
        };
        let open = units.len() as u64;
        units.sort_by(|a, b| {
            b.cpu_seconds
                .total_cmp(&a.cpu_seconds)
                .then(a.id.cmp(&b.id))
        });
        units.truncate(top_n);
        UsageView {
            ledger: self
                .ledger
                .as_ref()
                .map(|l| l.path().display().to_string())
                .unwrap_or_default(),
            ledger_write_failures: self.write_failures,
            units_open: open,
            units,
            by_queue: groups(queues),
            by_namespace: groups(namespaces),
        }
    }

    /// SIGTERM: a running record of every unit, for the successor to carry on.
    pub(super) fn shutdown(&mut self) {
        self.unwritten
            .extend(self.accounts.running(crate::clock::unix_now()));
        self.write();
    }

    fn write(&mut self) {
        if self.unwritten.is_empty() {
            return;
        }
        let Some(ledger) = &mut self.ledger else {
            self.unwritten.clear();
            return;
        };
        match ledger.append(&self.unwritten) {
            Ok(()) => {
                self.unwritten.clear();
                if std::mem::take(&mut self.failing) {
                    tracing::warn!(ledger = %ledger.path().display(), "usage ledger writable again");
                }
            }
            Err(e) => {
                self.write_failures += 1;
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::error!(
                        ledger = %ledger.path().display(),
                        error = %e,
                        "usage ledger: cannot write; records are kept in memory and written when it can be"
                    );
                }
                // Bounded: the ended ones first, the running ones are written again anyway.
                if self.unwritten.len() > 100_000 {
                    self.unwritten.drain(..self.unwritten.len() - 100_000);
                }
            }
        }
    }
}

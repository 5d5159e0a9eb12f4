//! What the daemon knows between ticks, shared by the sampler thread (writer) and the
//! surfaces (readers, which build views on request).

use enforcer_common::ReclaimStats;

use std::{collections::HashMap, sync::Arc};

use crate::{
    actuators::kube::PublisherStats,
    model::{Class, classify::RuleSet, index::CgroupIndex, pod::PodTable},
    policy::usage::UsageTracker,
    sampling::{filesystem::FilesystemReader, psi::NodePressure},
    surfaces::snapshot::{
        CapacityView, CgroupNet, CgroupUsage, ClassMemory, ClassNet, ClassReclaim, ClassUsage,
        ConfigView, DiscoveryView, FilesystemUsage, KubeView, NetworkSnapshot, NetworkView,
        PodUsage, ProtectionView, ReclaimTotals, RuntimeView, SamplerHealth, Snapshot,
    },
};

/// Ids removed from an index that the tick's samplers (which own the maps) still hold.
#[derive(Debug, Default)]
pub struct ForgetQueue {
    /// The CPU map (`CPU_NS`).
    pub cpu: Vec<u64>,
    /// The reclaim map (memory cgroup ids).
    pub reclaim: Vec<u64>,
    /// The network counters (cgroup2 ids).
    pub net: Vec<u64>,
}

pub struct NodeState {
    pub node: String,
    pub layout: String,
    pub kubelet_driver: String,
    pub cpu_hierarchy: String,
    pub started_at: f64,
    pub tick_seconds: f64,
    pub window_seconds: f64,
    pub online_cpus: u32,
    pub top_n: usize,
    /// The classification rules of the running configuration (replaced on reload).
    pub rules: Arc<RuleSet>,
    /// The hierarchy CPU is charged to: `cgroup id -> path -> pod -> class`.
    pub index: CgroupIndex,
    /// The memory hierarchy's own index when it is not the CPU one (v1 and hybrid hosts
    /// charge reclaim to memory cgroup ids).
    pub memory_index: Option<CgroupIndex>,
    /// Bumped when discovery adds cgroups to an index (the pod watch looks again).
    pub index_generation: u64,
    /// Map entries of removed cgroups, for the tick's samplers to drop.
    pub forget: ForgetQueue,
    pub discovery: DiscoveryView,
    pub usage: UsageTracker,
    pub health: SamplerHealth,
    pub protection: ProtectionView,
    pub capacity: CapacityView,
    pub memory: Vec<ClassMemory>,
    pub pressure: NodePressure,
    pub reclaim_by_class: Vec<ClassReclaim>,
    /// Node-wide reclaim totals from the vmscan programs.
    pub reclaim: ReclaimStats,
    pub reclaim_kswapd_wakeups: u64,
    pub reclaim_kswapd_by_node: Vec<(u32, u64)>,
    /// Bytes per cgroup2 cgroup and class (cgroup_skb).
    pub net: NetAccounting,
    pub network: NetworkView,
    /// The configured file systems, read on their own threads.
    pub filesystems: FilesystemReader,
    /// The configuration file and its reloads.
    pub config: ConfigView,
    /// The pods the container runtime listed last (replaced whole by the pod source).
    pub pods: Arc<PodTable>,
    pub runtime: RuntimeView,
    /// The Node object's publisher: whether it is on (and why not), and its counters, read
    /// when a snapshot is taken (the worker updates them on its own thread).
    pub kube: KubeView,
    pub kube_stats: Option<Arc<PublisherStats>>,
    /// The offline units' usage, published by the ledger's controller once a second.
    pub usage_view: crate::surfaces::snapshot::UsageView,
}

impl NodeState {
    /// The state with at most `limit` cgroups, largest CPU users first.
    pub fn snapshot(&self, limit: Option<usize>) -> Snapshot {
        let mut classes: Vec<ClassUsage> = self
            .usage
            .classes()
            .map(|(&(class, priority), totals)| ClassUsage {
                class,
                priority,
                cpu_seconds_total: totals.total_ns as f64 / 1e9,
                cpu_cores: totals.window.rate(),
                cgroups: 0,
            })
            .collect();
        // Ranked first, copied out after: a scrape or `status` (the top 20, or none) copies
        // no string of the thousands of cgroups it leaves out.
        let mut ranked: Vec<(&crate::model::index::CgroupEntry, u64, f64)> =
            Vec::with_capacity(self.index.len());
        for entry in self.index.iter() {
            let (total_ns, cores) = self.usage.cgroup(entry.id).unwrap_or((0, 0.0));
            let key = (entry.class, entry.priority);
            match classes.iter_mut().find(|c| (c.class, c.priority) == key) {
                Some(c) => c.cgroups += 1,
                None => classes.push(ClassUsage {
                    class: entry.class,
                    priority: entry.priority,
                    cpu_seconds_total: 0.0,
                    cpu_cores: 0.0,
                    cgroups: 1,
                }),
            }
            ranked.push((entry, total_ns, cores));
        }
        classes.sort_by_key(|c| (c.class, c.priority));
        // Every class appears, even empty, so dashboards and alerts see zeros, not gaps.
        for class in Class::ALL {
            if !classes.iter().any(|c| c.class == class) {
                classes.push(ClassUsage {
                    class,
                    priority: None,
                    cpu_seconds_total: 0.0,
                    cpu_cores: 0.0,
                    cgroups: 0,
                });
            }
        }
        let cgroups_total = ranked.len();
        let order = |a: &(&crate::model::index::CgroupEntry, u64, f64),
                     b: &(&crate::model::index::CgroupEntry, u64, f64)| {
            b.2.total_cmp(&a.2)
                .then(b.1.cmp(&a.1))
                .then(a.0.path.cmp(&b.0.path))
        };
        if let Some(limit) = limit
            && limit < ranked.len()
        {
            if limit > 0 {
                ranked.select_nth_unstable_by(limit - 1, order);
            }
            ranked.truncate(limit);
        }
        ranked.sort_by(order);
        let cgroups: Vec<CgroupUsage> = ranked
            .into_iter()
            .map(|(entry, total_ns, cores)| CgroupUsage {
                id: entry.id,
                path: entry.path.to_string(),
                class: entry.class,
                priority: entry.priority,
                rule: entry.rule.to_string(),
                pod: entry.pod_name(),
                pod_uid: entry.pod.as_ref().map(|p| p.pod.uid.clone()),
                container: entry.pod.as_ref().and_then(|p| p.container.clone()),
                cpu_seconds_total: total_ns as f64 / 1e9,
                cpu_cores: cores,
            })
            .collect();
        let network = self.network_snapshot(limit);
        let filesystems = self
            .filesystems
            .latest()
            .into_iter()
            .map(|f| FilesystemUsage {
                used_ratio: f.stats.used_ratio(),
                size_bytes: f.stats.size_bytes,
                avail_bytes: f.stats.avail_bytes,
                age_seconds: f.age.as_secs_f64(),
                mountpoint: f.mountpoint,
            })
            .collect();
        let pods = self.pods_snapshot(limit);
        Snapshot {
            pods,
            runtime: self.runtime.clone(),
            kube: self.kube_view(),
            usage: self.usage_view.clone(),
            network,
            filesystems,
            config: self.config.clone(),
            node: self.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started_at: self.started_at,
            taken_at: crate::clock::unix_now(),
            own: crate::sampling::own::read(),
            layout: self.layout.clone(),
            kubelet_driver: self.kubelet_driver.clone(),
            cpu_hierarchy: self.cpu_hierarchy.clone(),
            tick_seconds: self.tick_seconds,
            window_seconds: self.window_seconds,
            online_cpus: self.online_cpus,
            node_cpu_utilisation: self.usage.node_utilisation(self.online_cpus),
            classes,
            cgroups,
            cgroups_total,
            sampler: self.health.clone(),
            discovery: self.discovery.clone(),
            protection: self.protection.clone(),
            capacity: self.capacity.clone(),
            memory: self.memory.clone(),
            pressure: self.pressure,
            reclaim_by_class: self.reclaim_by_class.clone(),
            reclaim: ReclaimTotals {
                direct_episodes: self.reclaim.direct_episodes,
                direct_stall_seconds: self.reclaim.direct_stall_ns as f64 / 1e9,
                memcg_episodes: self.reclaim.memcg_episodes,
                memcg_stall_seconds: self.reclaim.memcg_stall_ns as f64 / 1e9,
                kswapd_wakeups: self.reclaim_kswapd_wakeups,
                kswapd_wakeups_by_node: self.reclaim_kswapd_by_node.clone(),
            },
        }
    }

    fn kube_view(&self) -> KubeView {
        let mut view = self.kube.clone();
        if let Some(stats) = &self.kube_stats {
            let s = stats.status();
            view.node = s.node;
            view.up = s.up;
            view.taint_patches_total = s.taint_patches;
            view.condition_patches_total = s.condition_patches;
            view.annotation_patches_total = s.capacity_patches;
            view.failures_total = s.failures;
            view.conflicts_total = s.conflicts;
            view.last_error = s.last_error;
        }
        view
    }

    /// Every pod the runtime lists, with the class of its cgroup and the CPU of all its
    /// cgroups (the kernel charges a task's own cgroup: the pod's time is its containers').
    fn pods_snapshot(&self, limit: Option<usize>) -> Vec<PodUsage> {
        if limit == Some(0) {
            return Vec::new();
        }
        let mut cpu: HashMap<&str, (f64, f64)> = HashMap::new();
        let mut cgroup: HashMap<&str, &crate::model::index::CgroupEntry> = HashMap::new();
        for entry in self.index.iter() {
            let Some(p) = &entry.pod else { continue };
            let (total_ns, cores) = self.usage.cgroup(entry.id).unwrap_or((0, 0.0));
            let sum = cpu.entry(p.pod.uid.as_str()).or_default();
            sum.0 += cores;
            sum.1 += total_ns as f64 / 1e9;
            if p.is_pod_cgroup {
                cgroup.insert(p.pod.uid.as_str(), entry);
            }
        }
        // Bytes are counted per cgroup2 id: the network's own index on v1 and hybrid hosts.
        // The trackers' rates are per nanosecond.
        let mut net: HashMap<&str, (f64, f64, u64, u64)> = HashMap::new();
        for entry in self.net.index.as_ref().unwrap_or(&self.index).iter() {
            let Some(p) = &entry.pod else { continue };
            let rx = self.net.rx.cgroup(entry.id);
            let tx = self.net.tx.cgroup(entry.id);
            if rx.is_none() && tx.is_none() {
                continue;
            }
            let sum = net.entry(p.pod.uid.as_str()).or_default();
            let (rx_total, rx_rate) = rx.unwrap_or_default();
            let (tx_total, tx_rate) = tx.unwrap_or_default();
            sum.0 += rx_rate * 1e9;
            sum.1 += tx_rate * 1e9;
            sum.2 += rx_total;
            sum.3 += tx_total;
        }
        let shown =
            |k: &str| k == "queue" || k.starts_with("spark-") || k.starts_with("enforcer.io/");
        // Ranked by CPU first; only the pods shown are copied out.
        let mut ranked: Vec<(&crate::model::pod::Pod, f64)> = self
            .pods
            .iter()
            .map(|pod| {
                let cores = cpu.get(pod.uid.as_str()).map_or(0.0, |c| c.0);
                (&**pod, cores)
            })
            .collect();
        ranked.sort_by(|(a, ca), (b, cb)| {
            cb.total_cmp(ca)
                .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
        });
        if let Some(limit) = limit {
            ranked.truncate(limit);
        }
        ranked
            .into_iter()
            .map(|(pod, _)| {
                let entry = cgroup.get(pod.uid.as_str());
                let (cores, seconds) = cpu.get(pod.uid.as_str()).copied().unwrap_or_default();
                let (rx_rate, tx_rate, rx_total, tx_total) =
                    net.get(pod.uid.as_str()).copied().unwrap_or_default();
                PodUsage {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    uid: pod.uid.clone(),
                    qos: entry
                        .and_then(|e| e.pod.as_ref())
                        .map_or_else(String::new, |p| p.qos.to_string()),
                    ready: pod.ready,
                    cgroup: entry.map(|e| e.path.to_string()),
                    // A pod whose cgroup the index has not seen is classified by nothing
                    // yet: shown as system, which nothing acts on.
                    class: entry.map_or(Class::System, |e| e.class),
                    priority: entry.and_then(|e| e.priority),
                    rule: entry
                        .map_or_else(|| "none (no cgroup yet)".into(), |e| e.rule.to_string()),
                    containers: pod.containers.iter().map(|c| c.name.clone()).collect(),
                    containers_running: pod.containers.iter().filter(|c| c.running).count(),
                    cpu_cores: cores,
                    cpu_seconds_total: seconds,
                    // Read outside the lock, by whoever asked for the view.
                    memory_bytes: None,
                    rx_bytes_per_second: rx_rate,
                    tx_bytes_per_second: tx_rate,
                    rx_bytes_total: rx_total,
                    tx_bytes_total: tx_total,
                    labels: pod
                        .labels
                        .iter()
                        .filter(|(k, _)| shown(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                }
            })
            .collect()
    }

    /// Network bytes per class and the `limit` cgroups moving the most bytes.
    fn network_snapshot(&self, limit: Option<usize>) -> NetworkSnapshot {
        let (rx, tx) = (&self.net.rx, &self.net.tx);
        let mut classes: Vec<ClassNet> = Vec::new();
        for (key, t) in tx.classes() {
            classes.push(ClassNet {
                class: key.0,
                priority: key.1,
                tx_bytes_total: t.total_ns,
                tx_bytes_per_second: t.window.per_second(),
                rx_bytes_total: 0,
                rx_bytes_per_second: 0.0,
            });
        }
        for (key, t) in rx.classes() {
            let c = match classes.iter_mut().find(|c| (c.class, c.priority) == *key) {
                Some(c) => c,
                None => {
                    classes.push(ClassNet {
                        class: key.0,
                        priority: key.1,
                        tx_bytes_total: 0,
                        tx_bytes_per_second: 0.0,
                        rx_bytes_total: 0,
                        rx_bytes_per_second: 0.0,
                    });
                    classes.last_mut().expect("just pushed")
                }
            };
            c.rx_bytes_total = t.total_ns;
            c.rx_bytes_per_second = t.window.per_second();
        }
        for class in Class::ALL {
            if !classes.iter().any(|c| c.class == class) {
                classes.push(ClassNet {
                    class,
                    priority: None,
                    tx_bytes_total: 0,
                    tx_bytes_per_second: 0.0,
                    rx_bytes_total: 0,
                    rx_bytes_per_second: 0.0,
                });
            }
        }
        classes.sort_by_key(|c| (c.class, c.priority));
        let index = self.net.index.as_ref().unwrap_or(&self.index);
        let mut cgroups: Vec<CgroupNet> = index
            .iter()
            .filter_map(|e| {
                // The trackers' rates are per nanosecond.
                let (rx_total, rx_rate) = rx.cgroup(e.id).map_or((0, 0.0), |(t, r)| (t, r * 1e9));
                let (tx_total, tx_rate) = tx.cgroup(e.id).map_or((0, 0.0), |(t, r)| (t, r * 1e9));
                (rx_total + tx_total > 0).then(|| CgroupNet {
                    id: e.id,
                    path: e.path.to_string(),
                    class: e.class,
                    priority: e.priority,
                    rx_bytes_total: rx_total,
                    tx_bytes_total: tx_total,
                    rx_bytes_per_second: rx_rate,
                    tx_bytes_per_second: tx_rate,
                })
            })
            .collect();
        cgroups.sort_by(|a, b| {
            (b.rx_bytes_per_second + b.tx_bytes_per_second)
                .total_cmp(&(a.rx_bytes_per_second + a.tx_bytes_per_second))
                .then(
                    (b.rx_bytes_total + b.tx_bytes_total)
                        .cmp(&(a.rx_bytes_total + a.tx_bytes_total)),
                )
                .then(a.path.cmp(&b.path))
        });
        if let Some(limit) = limit {
            cgroups.truncate(limit);
        }
        NetworkSnapshot {
            view: self.network.clone(),
            classes,
            cgroups,
        }
    }
}

/// A tick's sampler figures into the health the surfaces show.
pub fn record_tick(
    h: &mut SamplerHealth,
    reading: &crate::sampling::cpu::CpuReading,
    lag: std::time::Duration,
    woken_by_reclaim: bool,
) {
    h.ticks_total += 1;
    h.reclaim_wakeups_total += u64::from(woken_by_reclaim);
    h.tick_lag_seconds = lag.as_secs_f64();
    h.tick_lag_max_seconds = h.tick_lag_max_seconds.max(h.tick_lag_seconds);
    h.tick_lag.observe(h.tick_lag_seconds);
    h.map_read_seconds = reading.read_duration.as_secs_f64();
    h.map_entries = reading.per_cgroup.len();
    let now = crate::clock::unix_now();
    if reading.switches > h.program_runs_total {
        h.program_runs_moved_unix = now;
    }
    h.program_runs_total = reading.switches;
    h.dropped_total = reading.dropped;
    h.read_errors_total = reading.read_errors;
    h.last_tick_unix = now;
    h.consecutive_read_failures = 0;
}

/// Per-cgroup and per-class bytes (cgroup2 ids), in the shared state so that views are
/// built on request.
pub struct NetAccounting {
    pub rx: UsageTracker,
    pub tx: UsageTracker,
    /// The cgroup2 hierarchy's index when the CPU index is of another (v1 and hybrid hosts).
    pub index: Option<CgroupIndex>,
}

impl NetAccounting {
    pub fn new(window_ns: u64, own_index: bool) -> Self {
        NetAccounting {
            rx: UsageTracker::new(window_ns),
            tx: UsageTracker::new(window_ns),
            index: own_index.then(CgroupIndex::new),
        }
    }
}

#[cfg(test)]
impl NodeState {
    /// An empty node: what the daemon's unit tests start from.
    pub fn for_tests(memory_index: bool, net_index: bool) -> NodeState {
        NodeState {
            node: "test".into(),
            layout: String::new(),
            kubelet_driver: String::new(),
            cpu_hierarchy: String::new(),
            started_at: 0.0,
            tick_seconds: 0.1,
            window_seconds: 1.0,
            online_cpus: 2,
            top_n: 10,
            rules: Arc::new(RuleSet::defaults()),
            index: CgroupIndex::new(),
            memory_index: memory_index.then(CgroupIndex::new),
            index_generation: 0,
            forget: ForgetQueue::default(),
            discovery: DiscoveryView::default(),
            usage: UsageTracker::new(1_000_000_000),
            health: Default::default(),
            protection: Default::default(),
            capacity: Default::default(),
            memory: Vec::new(),
            pressure: Default::default(),
            reclaim_by_class: Vec::new(),
            reclaim: Default::default(),
            reclaim_kswapd_wakeups: 0,
            reclaim_kswapd_by_node: Vec::new(),
            net: NetAccounting::new(1_000_000_000, net_index),
            network: Default::default(),
            filesystems: FilesystemReader::start(crate::sampling::filesystem::ReaderOptions {
                paths: Vec::new(),
                interval: std::time::Duration::from_secs(60),
                quiet_missing: true,
            })
            .expect("no file system to read"),
            config: Default::default(),
            pods: Arc::new(PodTable::new()),
            runtime: Default::default(),
            kube: Default::default(),
            kube_stats: None,
            usage_view: Default::default(),
        }
    }
}

#[cfg(test)]
mod pod_view_tests {
    use std::collections::HashMap;

    use super::*;
    use crate::model::pod::Pod;

    const POD: &str = "kubepods/besteffort/pod0a1b";
    const MS: u64 = 1_000_000;

    fn node_with_a_pod(net_index: bool) -> NodeState {
        let mut st = NodeState::for_tests(false, net_index);
        let mut pods = PodTable::new();
        pods.replace(vec![Pod::for_tests(
            "0a1b",
            "spark",
            &[("queue", "root.P1")],
        )]);
        let rules = st.rules.clone();
        for (id, path) in [
            (10, POD.to_string()),
            (11, format!("{POD}/c1")),
            (20, "system.slice/sshd.service".into()),
        ] {
            st.index.insert(id, &path, &rules, &pods);
            if let Some(index) = st.net.index.as_mut() {
                // The cgroup2 ids of the same cgroups.
                index.insert(id + 100, &path, &rules, &pods);
            }
        }
        st.pods = Arc::new(pods);
        st
    }

    /// One second of counters per cgroup id, from zero.
    fn feed(tracker: &mut UsageTracker, st_index: &CgroupIndex, per_second: &[(u64, u64)]) {
        for t in 0..=10u64 {
            let counters: HashMap<u64, u64> = per_second
                .iter()
                .map(|&(id, rate)| (id, rate * t / 10))
                .collect();
            tracker.update(t * 100 * MS, 0, &counters, |id| {
                st_index.get(id).map(|e| (e.class, e.priority))
            });
        }
    }

    #[test]
    fn a_pods_cpu_and_bytes_are_its_cgroups_and_memory_is_left_to_the_reader() {
        for own_net_index in [false, true] {
            let mut st = node_with_a_pod(own_net_index);
            let net_id = |id: u64| if own_net_index { id + 100 } else { id };
            feed(
                &mut st.usage,
                &st.index,
                &[(10, 0), (11, 500 * MS), (20, 900 * MS)],
            );
            let net_index = st.net.index.as_ref().unwrap_or(&st.index);
            feed(
                &mut st.net.rx,
                net_index,
                &[(net_id(11), 4000), (net_id(20), 7000)],
            );
            let net_index = st.net.index.as_ref().unwrap_or(&st.index);
            feed(
                &mut st.net.tx,
                net_index,
                &[(net_id(10), 100), (net_id(11), 1000)],
            );
            let pods = st.pods_snapshot(None);
            assert_eq!(pods.len(), 1);
            let p = &pods[0];
            assert_eq!(
                (p.class, p.priority),
                (Class::Offline, Some(crate::model::Priority::P1))
            );
            assert!((p.cpu_cores - 0.5).abs() < 0.01, "{p:?}");
            assert_eq!((p.rx_bytes_total, p.tx_bytes_total), (4000, 1100), "{p:?}");
            assert!((p.rx_bytes_per_second - 4000.0).abs() < 1.0, "{p:?}");
            assert!((p.tx_bytes_per_second - 1100.0).abs() < 1.0, "{p:?}");
            assert_eq!(p.memory_bytes, None);
            assert!(st.pods_snapshot(Some(0)).is_empty());
            // `status` (no cgroup, no pod) still counts them all.
            let status = st.snapshot(Some(0));
            assert!(status.cgroups.is_empty() && status.pods.is_empty());
            assert_eq!(status.cgroups_total, 3);
            let top = st.snapshot(Some(1));
            assert_eq!(top.cgroups.len(), 1);
            assert_eq!(top.cgroups[0].id, 20, "the largest CPU user first");
            assert_eq!(st.snapshot(None).cgroups.len(), 3);
        }
    }
}

//! Prometheus metrics (OpenMetrics text), encoded at scrape time from a [`Snapshot`].
//!
//! Encoding from a snapshot instead of keeping live metric objects means per-cgroup series
//! exist only for the current top N (bounded cardinality) and vanish with their cgroup.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet},
    metrics::MetricType,
    registry::Registry,
};

use super::snapshot::Snapshot;
use crate::model::Class;

/// Content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders the snapshot as OpenMetrics text.
pub fn encode(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshot)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

#[derive(Debug)]
struct SnapshotCollector(Snapshot);

pub(super) type Labels = Vec<(&'static str, String)>;

pub(super) fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, f64)],
) -> Fmt {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        metric.encode_family(labels)?.encode_gauge(value)?;
    }
    Ok(())
}

/// `name` without the `_total` suffix, which the encoder appends for counters.
pub(super) fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, f64)],
) -> Fmt {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        metric
            .encode_family(labels)?
            .encode_counter::<NoLabelSet, _, f64>(value, None)?;
    }
    Ok(())
}

pub(super) type Fmt = Result<(), std::fmt::Error>;

pub(super) fn one(value: f64) -> Vec<(Labels, f64)> {
    vec![(Vec::new(), value)]
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Fmt {
        let s = &self.0;
        let info = prometheus_client::metrics::info::Info::new(vec![
            ("version", s.version.clone()),
            ("layout", s.layout.clone()),
            ("kubelet_driver", s.kubelet_driver.clone()),
            ("cpu_hierarchy", s.cpu_hierarchy.clone()),
        ]);
        let metric = enc.encode_descriptor(
            "enforcer_build",
            "Build and runtime information.",
            None,
            info.metric_type(),
        )?;
        info.encode(metric)?;

        gauge(
            &mut enc,
            "enforcer_node_cpu_utilisation_ratio",
            "Node CPU utilisation (busy time over elapsed time x online CPUs) over the sliding window.",
            &one(s.node_cpu_utilisation),
        )?;
        gauge(
            &mut enc,
            "enforcer_online_cpus",
            "CPUs online on the node.",
            &one(f64::from(s.online_cpus)),
        )?;

        let class_labels = |c: &super::snapshot::ClassUsage| -> Labels {
            vec![
                ("class", c.class.to_string()),
                (
                    "priority",
                    c.priority.map(|p| p.to_string()).unwrap_or_default(),
                ),
            ]
        };
        let rows = |f: &dyn Fn(&super::snapshot::ClassUsage) -> f64| -> Vec<(Labels, f64)> {
            s.classes.iter().map(|c| (class_labels(c), f(c))).collect()
        };
        counter(
            &mut enc,
            "enforcer_cpu_seconds",
            "CPU time used by the cgroups of a class and priority, from eBPF sched_switch accounting.",
            &rows(&|c| c.cpu_seconds_total),
        )?;
        gauge(
            &mut enc,
            "enforcer_cpu_cores",
            "Cores used by a class and priority over the sliding window.",
            &rows(&|c| c.cpu_cores),
        )?;
        gauge(
            &mut enc,
            "enforcer_cgroups",
            "Cgroups known per class and priority.",
            &rows(&|c| c.cgroups as f64),
        )?;

        let cgroup_rows = |f: &dyn Fn(&super::snapshot::CgroupUsage) -> f64| -> Vec<(Labels, f64)> {
            s.cgroups
                .iter()
                .map(|c| {
                    let labels = vec![
                        ("cgroup", format!("/{}", c.path)),
                        ("class", c.class.to_string()),
                        (
                            "priority",
                            c.priority.map(|p| p.to_string()).unwrap_or_default(),
                        ),
                    ];
                    (labels, f(c))
                })
                .collect()
        };
        counter(
            &mut enc,
            "enforcer_cgroup_cpu_seconds",
            "CPU time of the top-N cgroups by current use (N = daemon.top_n).",
            &cgroup_rows(&|c| c.cpu_seconds_total),
        )?;
        gauge(
            &mut enc,
            "enforcer_cgroup_cpu_cores",
            "Cores used over the sliding window by the top-N cgroups.",
            &cgroup_rows(&|c| c.cpu_cores),
        )?;

        let h = &s.sampler;
        counter(
            &mut enc,
            "enforcer_sampler_ticks",
            "Sampling ticks run.",
            &one(h.ticks_total as f64),
        )?;
        gauge(
            &mut enc,
            "enforcer_sampler_tick_lag_seconds",
            "How late the last tick started.",
            &one(h.tick_lag_seconds),
        )?;
        gauge(
            &mut enc,
            "enforcer_sampler_tick_lag_max_seconds",
            "Largest tick lag since start.",
            &one(h.tick_lag_max_seconds),
        )?;
        gauge(
            &mut enc,
            "enforcer_sampler_map_read_seconds",
            "Duration of the last read of the eBPF maps.",
            &one(h.map_read_seconds),
        )?;
        gauge(
            &mut enc,
            "enforcer_sampler_map_entries",
            "Entries in the per-cgroup eBPF map.",
            &one(h.map_entries as f64),
        )?;
        gauge(
            &mut enc,
            "enforcer_sampler_map_capacity",
            "Capacity of the per-cgroup eBPF map.",
            &one(f64::from(h.map_capacity)),
        )?;
        counter(
            &mut enc,
            "enforcer_sampler_program_runs",
            "sched_switch events handled by the eBPF program.",
            &one(h.program_runs_total as f64),
        )?;
        counter(
            &mut enc,
            "enforcer_sampler_dropped",
            "CPU credits lost because the per-cgroup map was full.",
            &one(h.dropped_total as f64),
        )?;
        counter(
            &mut enc,
            "enforcer_sampler_read_errors",
            "Context switches whose cgroup could not be read.",
            &one(h.read_errors_total as f64),
        )?;
        counter(
            &mut enc,
            "enforcer_sampler_read_failures",
            "Ticks whose map read failed.",
            &one(h.read_failures_total as f64),
        )?;
        counter(
            &mut enc,
            "enforcer_cgroup_rescans",
            "Scans of the cgroup tree.",
            &one(h.rescans_total as f64),
        )?;
        gauge(
            &mut enc,
            "enforcer_cgroup_rescan_seconds",
            "Duration of the last cgroup tree scan.",
            &one(h.rescan_seconds),
        )?;

        let p = &s.protection;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let stage_rows: Vec<(Labels, f64)> = crate::policy::ladder::Stage::ALL
            .iter()
            .map(|st| {
                (
                    vec![("stage", st.name().to_string())],
                    flag(p.stage == st.name()),
                )
            })
            .collect();
        gauge(
            &mut enc,
            "enforcer_ladder_stage",
            "Protection ladder stage (1 for the current one).",
            &stage_rows,
        )?;
        gauge(
            &mut enc,
            "enforcer_scheduling_open",
            "1 while this node takes new offline work.",
            &one(flag(p.scheduling_open)),
        )?;
        gauge(
            &mut enc,
            "enforcer_node_sick",
            "1 when all offline work is gone and the node is still unhealthy (page).",
            &one(flag(p.node_sick)),
        )?;
        gauge(
            &mut enc,
            "enforcer_offline_frozen",
            "1 while offline work is frozen.",
            &one(flag(p.frozen)),
        )?;
        gauge(
            &mut enc,
            "enforcer_dry_run",
            "1 when actions are journaled but not applied.",
            &one(flag(p.dry_run)),
        )?;
        gauge(
            &mut enc,
            "enforcer_node_memory_used_ratio",
            "Node memory in use (1 - MemAvailable/MemTotal).",
            &one(p.node_memory_used_ratio),
        )?;
        gauge(
            &mut enc,
            "enforcer_direct_reclaim_stall_ratio",
            "Seconds stalled in direct reclaim per second, over the window.",
            &one(p.direct_reclaim_stall_ratio),
        )?;
        counter(
            &mut enc,
            "enforcer_offline_killed",
            "Offline units killed by the protection ladder (alert).",
            &one(p.offline_killed_total as f64),
        )?;
        counter(
            &mut enc,
            "enforcer_actions",
            "Actions decided on cgroups (applied, dry-run, failed or refused).",
            &one(p.actions_total as f64),
        )?;
        counter(
            &mut enc,
            "enforcer_actions_refused",
            "Actions the choke point refused (target not offline).",
            &one(p.refused_total as f64),
        )?;
        let c = &s.capacity;
        let which = |k: &str| vec![("value", k.to_string())];
        gauge(
            &mut enc,
            "enforcer_offline_capacity_cpu_cores",
            "CPU the offline side may use (SPEC §2): the rule's target and the limit applied (moved gradually).",
            &[
                (which("target"), c.target_cpu_cores),
                (which("applied"), c.applied_cpu_cores),
            ],
        )?;
        gauge(
            &mut enc,
            "enforcer_offline_capacity_memory_bytes",
            "Memory the offline side may use (SPEC §2): target and applied.",
            &[
                (which("target"), c.target_memory_bytes as f64),
                (which("applied"), c.applied_memory_bytes as f64),
            ],
        )?;
        let mut mem_rows: Vec<(Labels, f64)> = Vec::new();
        for m in &s.memory {
            for (kind, v) in [
                ("usage", m.usage.usage_bytes),
                ("rss", m.usage.rss_bytes),
                ("cache", m.usage.cache_bytes),
                ("shmem", m.usage.shmem_bytes),
            ] {
                mem_rows.push((
                    vec![("class", m.class.to_string()), ("kind", kind.to_string())],
                    v as f64,
                ));
            }
        }
        gauge(
            &mut enc,
            "enforcer_memory_bytes",
            "Memory per class from cgroupfs (shmem/tmpfs broken out; system is the rest of the node).",
            &mem_rows,
        )?;
        if s.pressure.available {
            let mut avg = Vec::new();
            let mut total = Vec::new();
            for (resource, p) in [
                ("cpu", &s.pressure.cpu),
                ("memory", &s.pressure.memory),
                ("io", &s.pressure.io),
            ] {
                for (kind, a, t) in [
                    ("some", p.some_avg10, p.some_seconds_total),
                    ("full", p.full_avg10, p.full_seconds_total),
                ] {
                    let labels = vec![
                        ("resource", resource.to_string()),
                        ("kind", kind.to_string()),
                    ];
                    avg.push((labels.clone(), a));
                    total.push((labels, t));
                }
            }
            gauge(
                &mut enc,
                "enforcer_psi_avg10_ratio",
                "Pressure stall information: share of the last 10 s stalled.",
                &avg,
            )?;
            counter(
                &mut enc,
                "enforcer_psi_stall_seconds",
                "Pressure stall information: cumulative stall time.",
                &total,
            )?;
        }
        let r = &s.reclaim;
        let mut episodes = Vec::new();
        let mut stalls = Vec::new();
        let mut pressure = Vec::new();
        for c in &s.reclaim_by_class {
            let labels =
                |kind: &str| vec![("kind", kind.to_string()), ("class", c.class.to_string())];
            episodes.push((labels("direct"), c.stats.direct_episodes as f64));
            episodes.push((labels("memcg"), c.stats.memcg_episodes as f64));
            stalls.push((labels("direct"), c.stats.direct_stall_ns as f64 / 1e9));
            stalls.push((labels("memcg"), c.stats.memcg_stall_ns as f64 / 1e9));
            pressure.push((
                vec![("class", c.class.to_string())],
                flag(c.memory_pressure),
            ));
        }
        counter(
            &mut enc,
            "enforcer_reclaim_episodes",
            "Memory reclaim episodes seen by eBPF, by the class of the stalled task's memory cgroup (direct: global pressure; memcg: a cgroup at its limit).",
            &episodes,
        )?;
        counter(
            &mut enc,
            "enforcer_reclaim_stall_seconds",
            "Time tasks stalled in memory reclaim.",
            &stalls,
        )?;
        gauge(
            &mut enc,
            "enforcer_memory_pressure",
            "1 while a class stalls in memcg reclaim above ladder.reclaim_stall_trigger (seconds per second).",
            &pressure,
        )?;
        // Every node that ever woke kswapd; a node with no wake-up yet has no series.
        let per_node: Vec<(Labels, f64)> = r
            .kswapd_wakeups_by_node
            .iter()
            .map(|(node, n)| (vec![("numa_node", node.to_string())], *n as f64))
            .collect();
        counter(
            &mut enc,
            "enforcer_kswapd_wakeups",
            "kswapd wake-ups per NUMA node.",
            &per_node,
        )?;

        // The two series the operators' dashboards use today (SPEC §5), so that replacing
        // the Java agent breaks none of them: cumulative CPU seconds of online (k8s) and
        // offline (yarn) cgroups, labelled by node.
        let node: Labels = vec![("node", s.node.clone())];
        counter(
            &mut enc,
            "k8s_cpu_cgroup_use",
            "Cumulative CPU seconds of the online cgroups (compatibility series).",
            &[(node.clone(), s.class_seconds(Class::Online))],
        )?;
        counter(
            &mut enc,
            "yarn_cpu_cgroup_use",
            "Cumulative CPU seconds of the offline cgroups (compatibility series).",
            &[(node, s.class_seconds(Class::Offline))],
        )?;
        super::netmetrics::encode(&mut enc, &s.network)
    }
}

/// A fixed snapshot for the surfaces' unit tests.
///
/// Every metric family has rows, and every value is distinct, so the golden test catches a
/// family that disappears as well as two fields swapped.
#[cfg(test)]
pub(crate) mod tests_support {
    use crate::{
        model::{Class, Priority},
        sampling::{
            memory::MemoryUsage,
            psi::{NodePressure, Pressure},
        },
        surfaces::snapshot::{
            CapacityView, CgroupNet, CgroupUsage, ClassMemory, ClassNet, ClassReclaim, ClassUsage,
            Directions, InterfaceTraffic, NetworkSnapshot, NetworkView, ProtectionView,
            ReclaimStatsView, ReclaimTotals, SamplerHealth, Snapshot, TcHealth,
        },
    };

    pub(crate) fn sample() -> Snapshot {
        Snapshot {
            network: network(),
            node: "node-1".into(),
            version: "0.1.0".into(),
            pid: 1,
            started_at: 0.0,
            taken_at: 1.0,
            layout: "hybrid".into(),
            kubelet_driver: "systemd".into(),
            cpu_hierarchy: "v1 cpu".into(),
            tick_seconds: 0.1,
            window_seconds: 1.0,
            online_cpus: 2,
            node_cpu_utilisation: 0.5,
            classes: vec![
                ClassUsage {
                    class: Class::Online,
                    priority: None,
                    cpu_seconds_total: 3.5,
                    cpu_cores: 0.25,
                    cgroups: 4,
                },
                ClassUsage {
                    class: Class::Offline,
                    priority: Some(Priority::P3),
                    cpu_seconds_total: 7.25,
                    cpu_cores: 1.0,
                    cgroups: 1,
                },
            ],
            cgroups: vec![CgroupUsage {
                id: 42,
                path: "yarn/container_1".into(),
                class: Class::Offline,
                priority: Some(Priority::P3),
                rule: "yarn-container".into(),
                cpu_seconds_total: 7.25,
                cpu_cores: 1.0,
            }],
            cgroups_total: 5,
            sampler: SamplerHealth {
                ticks_total: 101,
                tick_lag_seconds: 0.002,
                tick_lag_max_seconds: 0.03,
                map_read_seconds: 0.0004,
                map_entries: 57,
                map_capacity: 16384,
                program_runs_total: 123456,
                dropped_total: 2,
                read_errors_total: 3,
                rescans_total: 11,
                rescan_seconds: 0.015,
                read_failures_total: 1,
            },
            protection: ProtectionView {
                enabled: true,
                dry_run: true,
                stage: "throttle".into(),
                frozen: false,
                scheduling_open: false,
                node_sick: false,
                node_memory_used_ratio: 0.75,
                direct_reclaim_stall_ratio: 0.125,
                explain: "memory above the throttle trigger".into(),
                offline_killed_total: 6,
                actions_total: 14,
                refused_total: 4,
                journal: "/var/lib/enforcer/journal.jsonl".into(),
                thresholds: None,
            },
            capacity: CapacityView {
                enabled: true,
                policy: "fixed".into(),
                target_cpu_cores: 1.5,
                target_memory_bytes: 4 << 30,
                applied_cpu_cores: 1.75,
                applied_memory_bytes: 5 << 30,
                offline_parents: 2,
                held: false,
            },
            memory: vec![
                ClassMemory {
                    class: Class::Online,
                    usage: MemoryUsage {
                        usage_bytes: 1000,
                        rss_bytes: 600,
                        cache_bytes: 300,
                        shmem_bytes: 100,
                    },
                },
                ClassMemory {
                    class: Class::Offline,
                    usage: MemoryUsage {
                        usage_bytes: 2000,
                        rss_bytes: 1200,
                        cache_bytes: 700,
                        shmem_bytes: 500,
                    },
                },
            ],
            pressure: NodePressure {
                available: true,
                cpu: Pressure {
                    some_avg10: 0.01,
                    full_avg10: 0.0,
                    some_seconds_total: 12.5,
                    full_seconds_total: 0.5,
                },
                memory: Pressure {
                    some_avg10: 0.03,
                    full_avg10: 0.02,
                    some_seconds_total: 4.25,
                    full_seconds_total: 3.75,
                },
                io: Pressure {
                    some_avg10: 0.05,
                    full_avg10: 0.04,
                    some_seconds_total: 8.5,
                    full_seconds_total: 6.5,
                },
            },
            reclaim_by_class: vec![
                ClassReclaim {
                    class: Class::Online,
                    stats: ReclaimStatsView {
                        direct_episodes: 7,
                        direct_stall_ns: 250_000_000,
                        memcg_episodes: 0,
                        memcg_stall_ns: 0,
                    },
                    memcg_stall_ratio: 0.0,
                    memory_pressure: false,
                },
                ClassReclaim {
                    class: Class::Offline,
                    stats: ReclaimStatsView {
                        direct_episodes: 9,
                        direct_stall_ns: 1_500_000_000,
                        memcg_episodes: 21,
                        memcg_stall_ns: 3_000_000_000,
                    },
                    memcg_stall_ratio: 0.2,
                    memory_pressure: true,
                },
            ],
            reclaim: ReclaimTotals {
                direct_episodes: 16,
                direct_stall_seconds: 1.75,
                memcg_episodes: 21,
                memcg_stall_seconds: 3.0,
                kswapd_wakeups: 8,
                kswapd_wakeups_by_node: vec![(0, 8)],
            },
        }
    }

    fn network() -> NetworkSnapshot {
        NetworkSnapshot {
            view: NetworkView {
                enabled: true,
                shaping: true,
                dry_run: false,
                interface: "bond0".into(),
                interface_present: true,
                capacity_bytes_per_second: 1_250_000_000,
                offline_limit_target: Directions {
                    egress: 300_000_000.0,
                    ingress: 400_000_000.0,
                },
                offline_limit: Directions {
                    egress: 310_000_000.0,
                    ingress: 410_000_000.0,
                },
                online_rate: Directions {
                    egress: 50_000_000.0,
                    ingress: 60_000_000.0,
                },
                offline_rate: Directions {
                    egress: 20_000_000.0,
                    ingress: 30_000_000.0,
                },
                offline_over_share: true,
                offline_over_share_seconds_total: 2.5,
                interfaces: vec![
                    InterfaceTraffic {
                        name: "bond0".into(),
                        namespace: "".into(),
                        kind: "bond".into(),
                        class: "node".into(),
                        shaped: true,
                        rx_bytes_total: 9000,
                        tx_bytes_total: 8000,
                        rx_bytes_per_second: 900.0,
                        tx_bytes_per_second: 800.0,
                    },
                    InterfaceTraffic {
                        name: "mv-1".into(),
                        namespace: "cni-1234".into(),
                        kind: "macvlan".into(),
                        class: "offline".into(),
                        shaped: true,
                        rx_bytes_total: 700,
                        tx_bytes_total: 600,
                        rx_bytes_per_second: 70.0,
                        tx_bytes_per_second: 60.0,
                    },
                ],
                tc: TcHealth {
                    passes_total: 33,
                    changes_total: 5,
                    failures_total: 1,
                    refused_total: 0,
                    last_pass_seconds: 0.0125,
                    managed: 3,
                    conflicts: vec!["eth9".into()],
                    last_error: None,
                },
            },
            classes: vec![
                ClassNet {
                    class: Class::Online,
                    priority: None,
                    rx_bytes_total: 5000,
                    tx_bytes_total: 4000,
                    rx_bytes_per_second: 500.0,
                    tx_bytes_per_second: 400.0,
                },
                ClassNet {
                    class: Class::Offline,
                    priority: Some(Priority::P2),
                    rx_bytes_total: 3000,
                    tx_bytes_total: 2000,
                    rx_bytes_per_second: 300.0,
                    tx_bytes_per_second: 200.0,
                },
            ],
            cgroups: vec![CgroupNet {
                id: 77,
                path: "yarn/container_2".into(),
                class: Class::Offline,
                priority: Some(Priority::P2),
                rx_bytes_total: 1500,
                tx_bytes_total: 1100,
                rx_bytes_per_second: 150.0,
                tx_bytes_per_second: 110.0,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{tests_support::sample, *};

    /// The whole scrape, captured before metrics.rs was split by domain: metric names, help
    /// texts, label sets and order, family order must not move.
    #[test]
    fn scrape_matches_the_golden_text() {
        let golden = include_str!("metrics/golden.txt");
        let text = encode(sample());
        if text != golden {
            let first = text
                .lines()
                .zip(golden.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(text.lines().count().min(golden.lines().count()));
            panic!(
                "scrape differs from golden.txt from line {}\n--- got\n{text}",
                first + 1
            );
        }
    }

    #[test]
    fn kswapd_wakeups_are_per_numa_node() {
        let mut s = sample();
        s.reclaim.kswapd_wakeups_by_node = vec![(0, 3), (1, 5)];
        let text = encode(s);
        assert!(
            text.contains("enforcer_kswapd_wakeups_total{numa_node=\"0\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("enforcer_kswapd_wakeups_total{numa_node=\"1\"} 5"),
            "{text}"
        );
    }

    #[test]
    fn encodes_class_counters_top_n_and_compatibility_series() {
        let text = encode(sample());
        for line in [
            r#"enforcer_cpu_seconds_total{class="offline",priority="P3"} 7.25"#,
            r#"enforcer_cpu_seconds_total{class="online",priority=""} 3.5"#,
            r#"enforcer_cgroup_cpu_seconds_total{cgroup="/yarn/container_1",class="offline",priority="P3"} 7.25"#,
            r#"enforcer_node_cpu_utilisation_ratio 0.5"#,
            r#"k8s_cpu_cgroup_use_total{node="node-1"} 3.5"#,
            r#"yarn_cpu_cgroup_use_total{node="node-1"} 7.25"#,
            "# TYPE enforcer_sampler_ticks counter",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            text.contains(r#"enforcer_build_info{version="0.1.0""#),
            "{text}"
        );
    }
}

//! The CLI's renderings against golden files (`golden/*.txt`, captured from the renderings
//! as they were before the CLI was split one file per subcommand): the operator's terminal
//! output must not change by accident. After a deliberate change, rewrite them with
//! `ENFORCER_BLESS=1 cargo test -p enforcer --lib surfaces::cli` and review the diff.

use super::{
    cgroups::render_cgroup_table, explain::render_explain, journal::render_journal,
    status::render_status, tc::render_tc, top::frame,
};
use crate::{
    actuators::journal::{Entry, Outcome},
    model::{Class, Priority},
    policy::ladder::LadderConfig,
    sampling::{
        memory::MemoryUsage,
        psi::{NodePressure, Pressure},
    },
    surfaces::{
        metrics::tests_support::sample,
        snapshot::{
            CapacityView, CgroupNet, CgroupUsage, ClassMemory, Directions, InterfaceTraffic,
            NetworkSnapshot, NetworkView, ProtectionView, SamplerHealth, Snapshot, TcHealth,
            TcReport,
        },
    },
};

/// Compares `actual` with `golden/<name>` byte for byte (or rewrites it when blessing).
#[track_caller]
fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/surfaces/cli/golden")
        .join(name);
    if std::env::var_os("ENFORCER_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (bless with ENFORCER_BLESS=1)", path.display()));
    assert!(
        expected == actual,
        "{name} differs from {}\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

const GIB: u64 = 1 << 30;

/// Everything switched on: memory, pressure, capacity, the ladder (dry run, thresholds),
/// the network with interfaces, conflicts and an error.
fn busy() -> Snapshot {
    let mut s = sample();
    s.taken_at = 3725.6;
    s.classes.push(crate::surfaces::snapshot::ClassUsage {
        class: Class::System,
        priority: None,
        cpu_seconds_total: 1234.5678,
        cpu_cores: 0.0625,
        cgroups: 117,
    });
    s.cgroups.insert(
        0,
        CgroupUsage {
            id: 7,
            path: "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice".into(),
            class: Class::Online,
            priority: None,
            rule: "kubelet-pod".into(),
            pod: None,
            pod_uid: None,
            container: None,
            cpu_seconds_total: 98765.4321,
            cpu_cores: 12.3456,
        },
    );
    s.cgroups.push(CgroupUsage {
        id: 1,
        path: String::new(),
        class: Class::System,
        priority: None,
        rule: "default".into(),
        pod: None,
        pod_uid: None,
        container: None,
        cpu_seconds_total: 0.0,
        cpu_cores: 0.0,
    });
    s.cgroups.push(CgroupUsage {
        id: 123_456_789_012,
        path: "yarn/debug_1".into(),
        class: Class::Offline,
        priority: Some(Priority::Debug),
        rule: "a-rule-name-longer-than-its-column".into(),
        pod: None,
        pod_uid: None,
        container: None,
        cpu_seconds_total: 0.0005,
        cpu_cores: 0.0004,
    });
    s.cgroups_total = 9;
    s.memory = vec![
        ClassMemory {
            class: Class::Online,
            usage: MemoryUsage {
                usage_bytes: 3 * GIB + GIB / 4,
                rss_bytes: 2 * GIB,
                cache_bytes: GIB,
                shmem_bytes: GIB / 8,
            },
        },
        ClassMemory {
            class: Class::Offline,
            usage: MemoryUsage {
                usage_bytes: 10 * GIB,
                rss_bytes: 9 * GIB,
                cache_bytes: GIB,
                shmem_bytes: 0,
            },
        },
    ];
    s.pressure = NodePressure {
        available: true,
        cpu: Pressure {
            some_avg10: 0.125,
            ..Default::default()
        },
        memory: Pressure {
            some_avg10: 0.051,
            full_avg10: 0.0049,
            ..Default::default()
        },
        io: Pressure {
            some_avg10: 0.2,
            ..Default::default()
        },
    };
    s.capacity = CapacityView {
        enabled: true,
        policy: "static".into(),
        target_cpu_cores: 4.0,
        target_memory_bytes: 8 * GIB,
        applied_cpu_cores: 3.456,
        applied_memory_bytes: 6 * GIB + GIB / 2,
        offline_parents: 2,
        held: true,
        clamped: true,
        memory_floor_bytes: 2 * GIB,
        parents: Vec::new(),
    };
    s.protection = ProtectionView {
        enabled: true,
        dry_run: true,
        stage: "throttle".into(),
        frozen: true,
        scheduling_open: false,
        node_sick: false,
        node_memory_used_ratio: 0.9132,
        direct_reclaim_stall_ratio: 0.0625,
        explain: "node CPU 95.0% above 90% for 1.2s: offline throttled".into(),
        offline_killed_total: 1,
        actions_total: 7,
        refused_total: 2,
        journal: "/var/lib/enforcer/journal.jsonl".into(),
        journal_write_failures_total: 0,
        controller_gaps: Vec::new(),
        thresholds: Some(LadderConfig::default()),
    };
    s.sampler = SamplerHealth {
        ticks_total: 36_000,
        reclaim_wakeups_total: 0,
        tick_lag_seconds: 0.000_42,
        tick_lag_max_seconds: 0.0131,
        tick_lag: Default::default(),
        map_read_seconds: 0.000_123_4,
        map_entries: 812,
        map_capacity: 16_384,
        program_runs_total: 987_654_321,
        program_runs_moved_unix: 0.0,
        dropped_total: 3,
        read_errors_total: 4,
        rescans_total: 5,
        rescan_seconds: 0.0456,
        read_failures_total: 6,
        last_tick_unix: 0.0,
        consecutive_read_failures: 0,
        journal_failing: false,
    };
    s.network = NetworkSnapshot {
        view: NetworkView {
            enabled: true,
            shaping: true,
            dry_run: true,
            interface: "bond0".into(),
            interface_present: true,
            capacity_bytes_per_second: 3_125_000_000,
            offline_limit_target: Directions {
                egress: 312_500_000.0,
                ingress: 250_000_000.0,
            },
            offline_limit: Directions {
                egress: 625_000_000.0,
                ingress: 123_456_789.0,
            },
            online_rate: Directions {
                egress: 1_500_000.0,
                ingress: 99.0,
            },
            offline_rate: Directions {
                egress: 700_000_000.0,
                ingress: -1.0,
            },
            offline_over_share: true,
            offline_over_share_seconds_total: 12.5,
            interfaces: vec![
                InterfaceTraffic {
                    name: "bond0".into(),
                    namespace: "host".into(),
                    kind: "bond".into(),
                    class: "node".into(),
                    shaped: true,
                    rx_bytes_total: 1,
                    tx_bytes_total: 2,
                    rx_bytes_per_second: 1_250_000.0,
                    tx_bytes_per_second: 125_000_000.0,
                },
                InterfaceTraffic {
                    name: "a-long-macvlan-name0".into(),
                    namespace: "kubepods/pod-1".into(),
                    kind: "macvlan".into(),
                    class: "offline".into(),
                    shaped: false,
                    rx_bytes_total: 3,
                    tx_bytes_total: 4,
                    rx_bytes_per_second: 0.0,
                    tx_bytes_per_second: 12.5,
                },
            ],
            tc: TcHealth {
                passes_total: 3600,
                changes_total: 12,
                failures_total: 1,
                refused_total: 0,
                last_pass_seconds: 0.012_34,
                managed: 3,
                conflicts: vec!["eth1: root qdisc fq_codel 8001: is not enforcer's".into()],
                last_error: Some("RTNETLINK answers: Operation not permitted".into()),
            },
        },
        classes: Vec::new(),
        cgroups: vec![
            cgroup_net(
                11,
                "yarn/container_1",
                Class::Offline,
                Some(Priority::P3),
                9e8,
            ),
            cgroup_net(12, "", Class::System, None, 1e6),
            cgroup_net(13, "kubepods/pod-1", Class::Online, None, 10.0),
        ],
    };
    s
}

fn cgroup_net(
    id: u64,
    path: &str,
    class: Class,
    priority: Option<Priority>,
    rate: f64,
) -> CgroupNet {
    CgroupNet {
        id,
        path: path.into(),
        class,
        priority,
        rx_bytes_total: 0,
        tx_bytes_total: 0,
        rx_bytes_per_second: rate / 2.0,
        tx_bytes_per_second: rate,
    }
}

/// Network sight without shaping, on an interface that is gone.
fn sight_only() -> Snapshot {
    let mut s = sample();
    s.protection.scheduling_open = true;
    s.network.view = NetworkView {
        enabled: true,
        interface: "bond1".into(),
        capacity_bytes_per_second: 1_000,
        ..Default::default()
    };
    s
}

fn entries() -> Vec<Entry> {
    let entry = |seq, outcome| Entry {
        at: 1_700_000_000.123_4,
        seq,
        stage: "throttle".into(),
        action: "cpu_limit".into(),
        target: Some("yarn/container_1".into()),
        class: Some("offline".into()),
        priority: Some("P3".into()),
        reason: serde_json::json!({"trigger": "node_cpu", "value": 0.95}),
        outcome,
        detail: None,
        pod: None,
        pod_uid: None,
        rule: None,
    };
    vec![
        entry(1, Outcome::Intent),
        entry(1, Outcome::Applied),
        Entry {
            at: 0.0,
            stage: "stop_scheduling".into(),
            action: "stop_scheduling".into(),
            target: None,
            class: None,
            priority: None,
            reason: serde_json::json!({}),
            ..entry(123_456, Outcome::DryRun)
        },
        Entry {
            at: 1_712_345_678.999,
            action: "kill".into(),
            target: Some("kubepods/pod-1".into()),
            class: Some("online".into()),
            priority: None,
            reason: serde_json::json!({"trigger": 0.5}),
            detail: Some("target is not offline".into()),
            ..entry(3, Outcome::Refused)
        },
        Entry {
            stage: "normal".into(),
            action: "memory_limit".into(),
            reason: serde_json::Value::Null,
            detail: Some("write memory.limit_in_bytes: Device or resource busy".into()),
            ..entry(4, Outcome::Failed)
        },
        Entry {
            stage: "kill".into(),
            action: "kill".into(),
            target: Some("kubepods/besteffort/pod0a1b".into()),
            priority: Some("P1".into()),
            pod: Some("spark/exec-1".into()),
            pod_uid: Some("0a1b".into()),
            rule: Some("pod-besteffort".into()),
            ..entry(5, Outcome::Applied)
        },
    ]
}

fn tc_report(dry_run: bool, applied: serde_json::Value) -> TcReport {
    let htb = serde_json::json!({
        "root": {"kind": "htb", "default_minor": 0x30},
        "ingress": true,
        "classes": [
            {"classid": 0xef00_0001u32, "parent": 0xffff_ffffu32, "rate": 3_125_000_000u64,
             "ceil": 3_125_000_000u64, "buffer": 1, "cbuffer": 1, "quantum": 1, "prio": 0},
            {"classid": 0xef00_0030u32, "parent": 0xef00_0001u32, "rate": 1_234_567,
             "ceil": 625_000_000, "buffer": 1, "cbuffer": 1, "quantum": 1, "prio": 7}
        ],
        "filters": [
            {"kind": "classify", "parent": 0xef00_0000u32, "prio": 1, "handle": 1,
             "prog_id": 42, "name": "enforcer_classify"},
            {"kind": "redirect", "parent": 0xffff_0000u32, "prio": 1, "target_ifindex": 9}
        ]
    });
    let report = serde_json::json!({
        "interface": "bond0",
        "limits": {"egress": 625_000_000.0, "ingress": 1_000.0},
        "dry_run": dry_run,
        "applied": applied,
        "survey": {
            "bond_present": !applied.is_null() || dry_run,
            "links": [],
            "seconds": 0.01,
            "errors": ["netns 4026532999: No such file or directory"],
            "interfaces": [
                {"netns": 1, "namespace": "host", "ifindex": 2, "name": "bond0",
                 "role": "bond", "installed": htb, "wanted": htb,
                 "changes": [], "conflicts": []},
                {"netns": 2, "namespace": "kubepods/pod-1", "ifindex": 3, "name": "mv0",
                 "role": "offline", "owner": "kubepods/pod-1", "by_pattern": false,
                 "installed": {"root": {"kind": "default", "qdisc": "noqueue"},
                               "ingress": false, "classes": [], "filters": []},
                 "wanted": htb,
                 "changes": ["tc qdisc replace dev mv0 root handle ef00: htb default 30",
                             "tc qdisc add dev mv0 ingress"],
                 "conflicts": []},
                {"netns": 1, "namespace": "host", "ifindex": 0, "name": "ifb-mv0",
                 "role": "ifb", "of": "mv0",
                 "installed": {"root": {"kind": "foreign", "qdisc": "fq_codel",
                                        "handle": 0x8001_0000u32},
                               "ingress": false, "classes": [],
                               "filters": [{"kind": "other", "parent": 0x8001_0000u32,
                                            "prio": 2, "handle": 3, "filter": "flower"}]},
                 "wanted": null,
                 "changes": [],
                 "conflicts": ["root qdisc fq_codel 8001: is not enforcer's"]},
                {"netns": 1, "namespace": "host", "ifindex": 5, "name": "eth9",
                 "role": "released",
                 "installed": {"root": {"kind": "default", "qdisc": "mq"},
                               "ingress": false, "classes": [], "filters": []},
                 "wanted": null, "changes": ["tc filter del dev eth9 ingress"],
                 "conflicts": ["a", "b"]}
            ]
        }
    });
    serde_json::from_value(report).unwrap()
}

#[test]
fn status_and_tables_show_classes_and_paths() {
    let s = crate::surfaces::metrics::tests_support::sample();
    let status = render_status(&s);
    assert!(status.contains("node CPU: 50.0% of 2 CPUs"), "{status}");
    assert!(status.contains("offline  P3"), "{status}");
    let table = render_cgroup_table(&s.cgroups, false);
    assert!(table.contains("/yarn/container_1"), "{table}");
    assert!(table.contains("yarn-container"), "{table}");
}

#[test]
fn status_is_unchanged() {
    golden("status_sample.txt", &render_status(&sample()));
    golden("status_busy.txt", &render_status(&busy()));
    golden("status_sight_only.txt", &render_status(&sight_only()));
}

#[test]
fn cgroup_tables_are_unchanged() {
    let s = busy();
    golden("cgroups.txt", &render_cgroup_table(&s.cgroups, false));
    golden("cgroups_usage.txt", &render_cgroup_table(&s.cgroups, true));
    golden("cgroups_empty.txt", &render_cgroup_table(&[], false));
}

#[test]
fn pod_table_is_unchanged() {
    let s = crate::surfaces::metrics::tests_support::sample();
    golden(
        "pods_sample.txt",
        &crate::surfaces::cli::cgroups::render_pod_table(&s.runtime, &s.pods),
    );
}

#[test]
fn top_frames_are_unchanged() {
    golden("top_sample.txt", &frame(&sample(), 30));
    golden("top_busy.txt", &frame(&busy(), 30));
    golden("top_busy_2_rows.txt", &frame(&busy(), 2));
    golden("top_sight_only.txt", &frame(&sight_only(), 0));
}

#[test]
fn explain_is_unchanged() {
    golden("explain_sample.txt", &render_explain(&sample(), &[]));
    golden(
        "explain_busy.txt",
        &render_explain(&busy(), &entries()[..2]),
    );
}

#[test]
fn journal_is_unchanged() {
    golden("journal.txt", &render_journal(&entries()));
    golden("journal_empty.txt", &render_journal(&[]));
}

#[test]
fn tc_is_unchanged() {
    golden(
        "tc_show.txt",
        &render_tc(&tc_report(true, serde_json::Value::Null)),
    );
    golden(
        "tc_apply.txt",
        &render_tc(&tc_report(
            false,
            serde_json::json!({"changes": ["a", "b", "c"], "failures": ["b: File exists"]}),
        )),
    );
    golden(
        "tc_pending.txt",
        &render_tc(&tc_report(false, serde_json::Value::Null)),
    );
}

//! A fixed snapshot for the surfaces' unit tests.
//!
//! Every metric family has rows, and every value is distinct, so the golden test catches a
//! family that disappears as well as two fields swapped.

use crate::{
    model::{
        Class, Priority,
        controllers::{Controller, Feature, Gap},
    },
    sampling::{
        memory::MemoryUsage,
        psi::{NodePressure, Pressure},
    },
    surfaces::snapshot::{
        CapacityView, CgroupNet, CgroupUsage, ClassMemory, ClassNet, ClassReclaim, ClassUsage,
        Directions, FilesystemUsage, InterfaceTraffic, NetworkSnapshot, NetworkView,
        ProtectionView, ReclaimStatsView, ReclaimTotals, SamplerHealth, Snapshot, TcHealth,
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
            last_tick_unix: 0.0,
            consecutive_read_failures: 0,
            journal_failing: false,
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
            journal_write_failures_total: 2,
            thresholds: None,
            controller_gaps: vec![Gap {
                controller: Controller::Memory,
                feature: Some(Feature::MemoryLimits),
                cgroup: Some("/sys/fs/cgroup/kubepods.slice".into()),
                explain: "memory controller not enabled in /sys/fs/cgroup/kubepods.slice/cgroup.subtree_control: offline memory limits are off (enable it with \"+memory\")".into(),
            }],
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
            clamped: false,
            memory_floor_bytes: 0,
            parents: Vec::new(),
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
        filesystems: vec![
            FilesystemUsage {
                mountpoint: "/".into(),
                size_bytes: 100 << 30,
                avail_bytes: 40 << 30,
                used_ratio: 0.55,
                age_seconds: 2.5,
            },
            FilesystemUsage {
                mountpoint: "/data1".into(),
                size_bytes: 4 << 40,
                avail_bytes: 200 << 30,
                used_ratio: 0.93,
                age_seconds: 7.5,
            },
        ],
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

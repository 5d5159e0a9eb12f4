//! Protection: the ladder's stage and what it holds (scheduling, freeze, dry run), the node
//! readings it decides on, the actions it took, and the offline capacity (SPEC §2).

use prometheus_client::encoding::DescriptorEncoder;

use super::encode::{Fmt, Labels, counter, flag, gauge, one};
use crate::{
    model::controllers::{Feature, features_off},
    policy::ladder::Stage,
    surfaces::snapshot::{CapacityView, ParentState, ProtectionView},
};

pub(super) fn encode(enc: &mut DescriptorEncoder, p: &ProtectionView, c: &CapacityView) -> Fmt {
    ladder(enc, p)?;
    capacity(enc, c)
}

fn ladder(enc: &mut DescriptorEncoder, p: &ProtectionView) -> Fmt {
    let stage_rows: Vec<(Labels, f64)> = Stage::ALL
        .iter()
        .map(|st| {
            (
                vec![("stage", st.name().to_string())],
                flag(p.stage == st.name()),
            )
        })
        .collect();
    gauge(
        enc,
        "enforcer_ladder_stage",
        "Protection ladder stage (1 for the current one).",
        &stage_rows,
    )?;
    gauge(
        enc,
        "enforcer_scheduling_open",
        "1 while this node takes new offline work.",
        &one(flag(p.scheduling_open)),
    )?;
    gauge(
        enc,
        "enforcer_node_sick",
        "1 when all offline work is gone and the node is still unhealthy (page).",
        &one(flag(p.node_sick)),
    )?;
    gauge(
        enc,
        "enforcer_offline_frozen",
        "1 while offline work is frozen.",
        &one(flag(p.frozen)),
    )?;
    gauge(
        enc,
        "enforcer_dry_run",
        "1 when actions are journaled but not applied.",
        &one(flag(p.dry_run)),
    )?;
    gauge(
        enc,
        "enforcer_node_memory_used_ratio",
        "Node memory in use (1 - MemAvailable/MemTotal).",
        &one(p.node_memory_used_ratio),
    )?;
    gauge(
        enc,
        "enforcer_direct_reclaim_stall_ratio",
        "Seconds stalled in direct reclaim per second, over the window.",
        &one(p.direct_reclaim_stall_ratio),
    )?;
    counter(
        enc,
        "enforcer_offline_killed",
        "Offline units killed by the protection ladder (alert).",
        &one(p.offline_killed_total as f64),
    )?;
    counter(
        enc,
        "enforcer_actions",
        "Actions decided on cgroups (applied, dry-run, failed or refused).",
        &one(p.actions_total as f64),
    )?;
    counter(
        enc,
        "enforcer_actions_refused",
        "Actions the choke point refused (target not offline).",
        &one(p.refused_total as f64),
    )?;
    counter(
        enc,
        "enforcer_journal_write_failures",
        "Journal entries that could not be written (full or read-only file system); protection went on.",
        &one(p.journal_write_failures_total as f64),
    )?;
    let off = features_off(&p.controller_gaps);
    let feature_rows: Vec<(Labels, f64)> = Feature::ALL
        .iter()
        .map(|f| {
            (
                vec![("feature", f.as_str().to_string())],
                flag(!off.contains(f)),
            )
        })
        .collect();
    gauge(
        enc,
        "enforcer_feature_enabled",
        "1 when the host's controllers let the enforcer do this to offline cgroups; 0 when one is missing or not delegated (the status's controller_gaps say which and where).",
        &feature_rows,
    )
}

fn capacity(enc: &mut DescriptorEncoder, c: &CapacityView) -> Fmt {
    let which = |k: &str| vec![("value", k.to_string())];
    gauge(
        enc,
        "enforcer_offline_capacity_cpu_cores",
        "CPU the offline side may use (SPEC §2): the rule's target and the limit applied (moved gradually).",
        &[
            (which("target"), c.target_cpu_cores),
            (which("applied"), c.applied_cpu_cores),
        ],
    )?;
    gauge(
        enc,
        "enforcer_offline_capacity_memory_bytes",
        "Memory the offline side may use (SPEC §2): target and applied.",
        &[
            (which("target"), c.target_memory_bytes as f64),
            (which("applied"), c.applied_memory_bytes as f64),
        ],
    )?;
    gauge(
        enc,
        "enforcer_capacity_clamped",
        "1 while the capacity rule leaves offline memory no more than its floor (the floor is applied, never 0).",
        &one(flag(c.clamped)),
    )?;
    // What the kernel has on each offline parent, read back from cgroupfs (never what the
    // daemon believes it wrote). A handful of parents per node: a bounded label.
    let per_parent = |value: &dyn Fn(&ParentState) -> f64| -> Vec<(Labels, f64)> {
        c.parents
            .iter()
            .map(|p| (vec![("parent", format!("/{}", p.path))], value(p)))
            .collect()
    };
    gauge(
        enc,
        "enforcer_offline_parent_frozen",
        "1 while the kernel has this offline parent frozen or freezing (read back from cgroupfs).",
        &per_parent(&|p| flag(p.frozen)),
    )?;
    gauge(
        enc,
        "enforcer_offline_parent_cpu_quota_cores",
        "The CPU quota in force on this offline parent, read back from cgroupfs (+Inf: none).",
        &per_parent(&|p| p.cpu_quota_cores.unwrap_or(f64::INFINITY)),
    )?;
    gauge(
        enc,
        "enforcer_offline_parent_memory_limit_bytes",
        "The memory limit in force on this offline parent, read back from cgroupfs: cgroup2's memory.high (or memory.max when lower), v1's memory.limit_in_bytes (+Inf: none).",
        &per_parent(&|p| p.memory_limit_bytes.map_or(f64::INFINITY, |b| b as f64)),
    )
}

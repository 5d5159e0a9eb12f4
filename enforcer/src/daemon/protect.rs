//! The protection ladder wired to the node: signals from the samplers, decisions from the
//! pure [`Ladder`], actions through the actuator choke point.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use crate::{
    actuators::journal::{Entry, JournalError, Outcome},
    actuators::{Actuator, Operation, Request, cgroupfs},
    config::ProtectionConfig,
    model::{
        Class,
        index::{CgroupEntry, CgroupIndex},
        layout::CgroupLayout,
    },
    policy::{
        ladder::{Action, Decision, Ladder, OfflineUnit, Signals, Stage, Trigger},
        usage::UsageTracker,
        window::RateWindow,
    },
    surfaces::snapshot::ProtectionView,
};

/// What the ladder needs of the model, captured under the state lock only when the
/// ladder is engaged, so that actions (a kill waits for its cgroup to empty) run without it.
#[derive(Debug, Default, Clone)]
pub struct NodeView {
    /// Offline parents (relative paths).
    pub roots: Vec<String>,
    /// Offline units with their relative path.
    pub units: Vec<(OfflineUnit, String)>,
}

impl NodeView {
    pub fn capture(index: &CgroupIndex, usage: &UsageTracker) -> NodeView {
        NodeView {
            roots: offline_roots(index)
                .iter()
                .map(|e| e.path.to_string())
                .collect(),
            units: offline_units(index)
                .into_iter()
                .map(|e| {
                    let unit = OfflineUnit {
                        id: e.id,
                        priority: e.priority.unwrap_or(crate::model::Priority::P3),
                        cpu_cores: usage.cgroup(e.id).map_or(0.0, |(_, cores)| cores),
                        memory_bytes: 0,
                    };
                    (unit, e.path.to_string())
                })
                .collect(),
        }
    }
}

pub struct Protector {
    ladder: Ladder,
    actuator: Actuator,
    layout: CgroupLayout,
    cpu_root: PathBuf,
    state_dir: PathBuf,
    throttle_cpu_share: f64,
    enabled: bool,
    stall_window: RateWindow,
    /// Units a dry run "killed": they stay out of the candidates, so the dry run goes on to
    /// the decisions a real run would make next.
    dry_run_killed: HashSet<u64>,
    /// What each offline parent returns to when the ladder steps down: the capacity rule's
    /// values `(cores, bytes)`, or no limit when capacity is off.
    pub restore_to: Option<(f64, u64)>,
    pub view: ProtectionView,
}

/// Node memory in use (1 − MemAvailable / MemTotal), from /proc/meminfo.
pub fn node_memory_used() -> f64 {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return 0.0;
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
    };
    match (field("MemTotal:"), field("MemAvailable:")) {
        (Some(total), Some(avail)) if total > 0.0 => (1.0 - avail / total).clamp(0.0, 1.0),
        _ => 0.0,
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// The top cgroups of a class: those whose parent is of another class. For offline these
/// are the parents the limits go on (the BestEffort slice, `yarn`); summing a class's
/// hierarchical memory over them counts nothing twice.
pub fn class_roots(index: &CgroupIndex, class: Class) -> Vec<&CgroupEntry> {
    let members: HashSet<&str> = index
        .iter()
        .filter(|e| e.class == class)
        .map(|e| &*e.path)
        .collect();
    let mut roots: Vec<&CgroupEntry> = index
        .iter()
        .filter(|e| e.class == class && !e.path.is_empty() && !members.contains(parent(&e.path)))
        .collect();
    roots.sort_by(|a, b| a.path.cmp(&b.path));
    roots
}

/// Offline parents: the cgroups the offline limits go on.
pub fn offline_roots(index: &CgroupIndex) -> Vec<&CgroupEntry> {
    class_roots(index, Class::Offline)
}

/// Offline units, the things evicted one at a time: children of an offline parent (a pod,
/// a Yarn container), or an offline parent with no offline children.
pub fn offline_units(index: &CgroupIndex) -> Vec<&CgroupEntry> {
    let roots: HashSet<&str> = offline_roots(index).iter().map(|e| &*e.path).collect();
    let has_offline_child: HashSet<&str> = index
        .iter()
        .filter(|e| e.class == Class::Offline)
        .map(|e| parent(&e.path))
        .collect();
    index
        .iter()
        .filter(|e| e.class == Class::Offline)
        .filter(|e| {
            roots.contains(parent(&e.path))
                || (roots.contains(&*e.path) && !has_offline_child.contains(&*e.path))
        })
        .collect()
}

pub fn memory_usage(dirs: &cgroupfs::CgroupDirs) -> Option<u64> {
    let dir = dirs.memory.as_ref()?;
    let file = if dirs.memory_is_v2 {
        "memory.current"
    } else {
        "memory.usage_in_bytes"
    };
    std::fs::read_to_string(dir.join(file))
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl Protector {
    pub fn new(
        config: &ProtectionConfig,
        actuator: Actuator,
        layout: CgroupLayout,
        cpu_root: &Path,
        state_dir: &Path,
        window_ns: u64,
    ) -> Protector {
        let dry_run = actuator.dry_run();
        let p = Protector {
            ladder: Ladder::new(config.ladder.clone()),
            actuator,
            layout,
            cpu_root: cpu_root.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            throttle_cpu_share: config.throttle_cpu_share,
            enabled: config.enabled,
            stall_window: RateWindow::new(window_ns),
            dry_run_killed: HashSet::new(),
            restore_to: None,
            view: ProtectionView {
                enabled: config.enabled,
                dry_run,
                stage: "normal".into(),
                scheduling_open: true,
                thresholds: Some(config.ladder.clone()),
                ..Default::default()
            },
        };
        // A restarted daemon starts from Normal: say so to the schedulers' readers.
        if !dry_run {
            p.write_gate(true, None);
        }
        p
    }

    pub fn stage(&self) -> Stage {
        self.ladder.stage()
    }

    pub fn actuator_mut(&mut self) -> &mut Actuator {
        &mut self.actuator
    }

    /// Whether the ladder is engaged (a trigger holds or a stage is active), i.e. whether
    /// it needs a [`NodeView`] this tick.
    fn engaged(&self, signals: &Signals) -> bool {
        self.ladder.stage() != Stage::Normal || self.ladder.trigger(signals).is_some()
    }

    /// One tick: feed the ladder and carry out what it decides. `capture` is called (at
    /// most once) when the ladder needs the model.
    pub fn tick(
        &mut self,
        at_ns: u64,
        node_cpu: f64,
        direct_stall_ns_total: u64,
        online_cpus: u32,
        capture: impl FnOnce() -> NodeView,
    ) -> Result<(), JournalError> {
        self.stall_window.push(at_ns, direct_stall_ns_total);
        let node_memory = node_memory_used();
        let mut signals = Signals {
            at_ns,
            node_cpu,
            node_memory,
            reclaim_stall_per_second: self.stall_window.rate(),
            offline: Vec::new(),
        };
        self.view.node_memory_used_ratio = node_memory;
        self.view.direct_reclaim_stall_ratio = signals.reclaim_stall_per_second;
        if !self.enabled || !self.engaged(&signals) {
            self.view.explain = self.ladder.explain(at_ns);
            return Ok(());
        }
        let mut view = capture();
        // Only units that still have processes can be victims.
        view.units.retain(|(unit, path)| {
            !self.dry_run_killed.contains(&unit.id)
                && !cgroupfs::pids(&self.cpu_root.join(path)).is_empty()
        });
        for (unit, path) in &mut view.units {
            unit.memory_bytes =
                memory_usage(&cgroupfs::CgroupDirs::resolve(&self.layout, path)).unwrap_or(0);
        }
        signals.offline = view.units.iter().map(|(u, _)| u.clone()).collect();
        let decisions = self.ladder.step(&signals);
        for d in &decisions {
            self.execute(d, &view, online_cpus)?;
        }
        self.view.stage = self.ladder.stage().name().to_string();
        self.view.frozen = self.ladder.frozen();
        self.view.explain = self.ladder.explain(at_ns);
        Ok(())
    }

    fn request(
        &mut self,
        d: &Decision,
        target: &str,
        op: Operation,
    ) -> Result<Outcome, JournalError> {
        let outcome = self.actuator.apply(&Request {
            stage: d.stage.name().to_string(),
            target: target.to_string(),
            op,
            reason: serde_json::to_value(d.trigger).unwrap_or_default(),
        })?;
        self.view.actions_total += 1;
        if outcome == Outcome::Refused {
            self.view.refused_total += 1;
        }
        Ok(outcome)
    }

    fn execute(
        &mut self,
        d: &Decision,
        view: &NodeView,
        online_cpus: u32,
    ) -> Result<(), JournalError> {
        tracing::warn!(stage = ?d.stage, action = ?d.action, trigger = ?d.trigger, "protection ladder");
        let roots = &view.roots;
        match &d.action {
            Action::SchedulingGate { open } => {
                self.view.scheduling_open = *open;
                self.node_event(
                    d,
                    if *open {
                        "open_scheduling"
                    } else {
                        "stop_scheduling"
                    },
                )?;
                if !self.actuator.dry_run() {
                    self.write_gate(*open, Some(d.trigger));
                }
            }
            Action::ThrottleOffline => {
                let per_root =
                    self.throttle_cpu_share * f64::from(online_cpus) / roots.len().max(1) as f64;
                for root in roots {
                    self.request(
                        d,
                        root,
                        Operation::CpuLimit {
                            cores: Some(per_root),
                        },
                    )?;
                    let dirs = cgroupfs::CgroupDirs::resolve(&self.layout, root);
                    // Stop memory growth where the root has a memory cgroup: limit to use.
                    if let Some(used) = memory_usage(&dirs) {
                        self.request(d, root, Operation::MemoryLimit { bytes: Some(used) })?;
                    }
                }
            }
            Action::FreezeOffline => {
                for root in roots {
                    self.request(d, root, Operation::Freeze)?;
                }
            }
            Action::ThawOffline => {
                for root in roots {
                    self.request(d, root, Operation::Thaw)?;
                }
            }
            Action::RestoreOffline => {
                // Back to the capacity rule's values (SPEC §2), or no limit without it.
                let (cores, bytes) = match self.restore_to {
                    Some((c, b)) => (Some(c), Some(b)),
                    None => (None, None),
                };
                for root in roots {
                    self.request(d, root, Operation::CpuLimit { cores })?;
                    let dirs = cgroupfs::CgroupDirs::resolve(&self.layout, root);
                    if dirs.memory.is_some() {
                        self.request(d, root, Operation::MemoryLimit { bytes })?;
                    }
                }
            }
            Action::Kill { id, priority } => {
                let Some((_, path)) = view.units.iter().find(|(u, _)| u.id == *id) else {
                    tracing::warn!(id, "victim vanished before the kill");
                    return Ok(());
                };
                let path = path.clone();
                let outcome = self.request(d, &path, Operation::Kill)?;
                if outcome == Outcome::DryRun {
                    self.dry_run_killed.insert(*id);
                }
                if outcome == Outcome::Applied {
                    self.view.offline_killed_total += 1;
                    tracing::error!(target = %path, priority = %priority, "ALERT: offline unit killed to protect online work");
                }
            }
            Action::DeclareSick => {
                self.view.node_sick = true;
                tracing::error!(trigger = ?d.trigger, "ALERT: node sick: no offline work left and still unhealthy; online work is never killed");
                self.node_event(d, "declare_sick")?;
            }
            Action::ClearSick => {
                self.view.node_sick = false;
                self.node_event(d, "clear_sick")?;
            }
        }
        Ok(())
    }

    /// Journals a node-wide action (no cgroup target).
    fn node_event(&mut self, d: &Decision, action: &str) -> Result<(), JournalError> {
        let dry = self.actuator.dry_run();
        let journal = self.actuator.journal_mut();
        let seq = journal.next_seq();
        journal.append(&Entry {
            at: crate::clock::unix_now(),
            seq,
            stage: d.stage.name().to_string(),
            action: action.to_string(),
            target: None,
            class: None,
            priority: None,
            reason: serde_json::json!({ "trigger": d.trigger }),
            outcome: if dry {
                Outcome::DryRun
            } else {
                Outcome::Applied
            },
            detail: None,
        })
    }

    /// `<state_dir>/scheduling`: "open", or "closed <trigger>" — read by the Yarn
    /// NodeManager health script (deploy/nm-health-check.sh). Written atomically.
    fn write_gate(&self, open: bool, trigger: Option<Trigger>) {
        let path = self.state_dir.join("scheduling");
        let text = if open {
            "open\n".to_string()
        } else {
            format!(
                "closed {}\n",
                serde_json::to_string(&trigger).unwrap_or_default()
            )
        };
        let tmp = self.state_dir.join(".scheduling.tmp");
        let result = std::fs::create_dir_all(&self.state_dir)
            .and_then(|()| std::fs::write(&tmp, text))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            tracing::error!("{}: cannot write the scheduling gate: {e}", path.display());
        }
    }
}

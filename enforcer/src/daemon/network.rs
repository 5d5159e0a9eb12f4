//! The network controller, on the sampler thread: every tick it reads the cgroup_skb
//! counters, accounts them per class, and moves the offline limits with online use; when a
//! limit moves past its dead band, and every `reconcile_interval` in any case, it runs a tc
//! pass (survey, choke point, apply). It also answers `enforcer tc show|apply`.

use std::{
    collections::HashMap,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::Mutex,
    time::Instant,
};

use super::state::NodeState;
use crate::{
    actuators::journal::JournalError,
    actuators::{
        Actuator,
        tc::reconcile::{Applied, Limits, Mode, Reconciler, Role, Survey, Topology},
    },
    config::NetworkConfig,
    model::{
        Class,
        classify::RuleSet,
        index::CgroupIndex,
        netns::{self, CgroupLine, Namespace},
    },
    policy::{
        bandwidth::{OfflineLimit, needs_write, over_share},
        shaping::{BondShape, CLASS_OFFLINE, CLASS_ONLINE},
        usage::UsageTracker,
        window::RateWindow,
    },
    sampling::{
        net::{NetClassifier, NetSampler},
        programs::Programs,
    },
    surfaces::snapshot::{Directions, InterfaceTraffic, NetworkView, TcReport, TcRequest},
};

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

pub type TcReply = std::sync::mpsc::Sender<Result<TcReport, String>>;

pub struct NetworkController {
    config: NetworkConfig,
    sampler: NetSampler,
    classifier: Option<NetClassifier>,
    reconciler: Option<Reconciler>,
    /// The cgroup2 mount when the controller keeps its own index.
    unified_root: Option<PathBuf>,
    cgroup_line: CgroupLine,
    egress: OfflineLimit,
    ingress: OfflineLimit,
    /// Limits in force in the kernel (set by the last pass that left nothing pending).
    applied: (Option<u64>, Option<u64>),
    namespaces: Vec<Namespace>,
    scanner: netns::Scanner,
    last_pass: Option<Instant>,
    links: HashMap<(u64, u32), (RateWindow, RateWindow)>,
    window_ns: u64,
    last_at_ns: Option<u64>,
    view: NetworkView,
    reported_missing: bool,
}

const GBIT: f64 = 125_000_000.0;

impl NetworkController {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: NetworkConfig,
        programs: &mut Programs,
        state_dir: &Path,
        unified_root: Option<PathBuf>,
        cgroup_line: CgroupLine,
        window_ns: u64,
        dry_run: bool,
    ) -> anyhow::Result<NetworkController> {
        let sampler = programs.net_sampler()?;
        let (classifier, reconciler) = if config.shaping {
            let topology = Topology {
                interface: config.interface.clone(),
                host_netns: config
                    .netns
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/proc/self/ns/net")),
                offline_interfaces: config.offline_interfaces.clone(),
            };
            let reconciler = Reconciler::new(topology, Some(state_dir.join("network.json")))
                .map_err(|e| anyhow::anyhow!("network.netns: {e}"))?;
            (Some(programs.net_classifier()?), Some(reconciler))
        } else {
            (None, None)
        };
        Ok(NetworkController {
            view: NetworkView {
                enabled: true,
                shaping: config.shaping,
                dry_run,
                interface: config.interface.clone(),
                capacity_bytes_per_second: config.rule.capacity,
                ..Default::default()
            },
            config,
            sampler,
            classifier,
            reconciler,
            unified_root,
            cgroup_line,
            egress: OfflineLimit::default(),
            ingress: OfflineLimit::default(),
            applied: (None, None),
            namespaces: Vec::new(),
            scanner: netns::Scanner::default(),
            last_pass: None,
            links: HashMap::new(),
            window_ns,
            last_at_ns: None,
            reported_missing: false,
        })
    }

    /// After SIGHUP: the name pattern may have changed.
    pub fn reload(&mut self, config: &NetworkConfig) {
        if let Some(r) = &mut self.reconciler {
            r.set_offline_interfaces(config.offline_interfaces.clone());
        }
        self.config.offline_interfaces = config.offline_interfaces.clone();
        self.config.rule = config.rule;
        self.config.host_limit = config.host_limit;
        self.view.capacity_bytes_per_second = config.rule.capacity;
    }

    /// Reads the counters and accounts them per class.
    fn account(&mut self, state: &Mutex<NodeState>) {
        let reading = match self.sampler.read() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                return;
            }
        };
        let mut rx = HashMap::with_capacity(reading.per_cgroup.len());
        let mut tx = HashMap::with_capacity(reading.per_cgroup.len());
        for (&id, c) in &reading.per_cgroup {
            rx.insert(id, c.rx_bytes);
            tx.insert(id, c.tx_bytes);
        }
        let mut guard = state.lock().unwrap();
        let st = &mut *guard;
        let index = st.net.index.as_ref().unwrap_or(&st.index);
        let class_of = |id| index.get(id).map(|e| (e.class, e.priority));
        st.net.rx.update(reading.at_ns, 0, &rx, class_of);
        st.net.tx.update(reading.at_ns, 0, &tx, class_of);
        let rate = |t: &UsageTracker, class: Class| -> f64 {
            t.classes()
                .filter(|((c, _), _)| *c == class)
                .map(|(_, totals)| totals.window.per_second())
                .sum()
        };
        self.view.online_rate = Directions {
            egress: rate(&st.net.tx, Class::Online),
            ingress: rate(&st.net.rx, Class::Online),
        };
        self.view.offline_rate = Directions {
            egress: rate(&st.net.tx, Class::Offline),
            ingress: rate(&st.net.rx, Class::Offline),
        };
    }

    /// One tick.
    pub fn tick(
        &mut self,
        at_ns: u64,
        state: &Mutex<NodeState>,
        actuator: &mut Actuator,
        programs: &Programs,
        rules: &RuleSet,
    ) -> Result<(), JournalError> {
        self.account(state);
        let rule = &self.config.rule;
        let egress = self
            .egress
            .update(rule, at_ns, self.view.online_rate.egress);
        let ingress = self
            .ingress
            .update(rule, at_ns, self.view.online_rate.ingress);
        self.view.offline_limit_target = Directions {
            egress: egress as f64,
            ingress: ingress as f64,
        };
        let in_force = self.applied.0.unwrap_or(egress);
        let over = over_share(
            self.view.offline_rate.egress,
            in_force,
            self.config.over_share_tolerance,
        ) || over_share(
            self.view.offline_rate.ingress,
            self.applied.1.unwrap_or(ingress),
            self.config.over_share_tolerance,
        );
        if over && !self.view.offline_over_share {
            tracing::warn!(
                offline_egress_gbit = self.view.offline_rate.egress / GBIT,
                limit_gbit = in_force as f64 / GBIT,
                "offline traffic above its share"
            );
        }
        if let Some(last) = self.last_at_ns
            && self.view.offline_over_share
        {
            self.view.offline_over_share_seconds_total += at_ns.saturating_sub(last) as f64 / 1e9;
        }
        self.view.offline_over_share = over;
        self.last_at_ns = Some(at_ns);

        let due = self
            .last_pass
            .is_none_or(|t| t.elapsed() >= self.config.reconcile_interval);
        // Without the bond there is nothing a moved limit could change before the next
        // full pass looks for it again.
        let moved = self.view.interface_present
            && (needs_write(self.applied.0, egress, self.config.dead_band)
                || needs_write(self.applied.1, ingress, self.config.dead_band));
        if due {
            self.rescan(state, rules);
        }
        if self.reconciler.is_some() && (due || moved) {
            self.pass(actuator, programs, (egress, ingress), due)?;
        }
        self.publish(state);
        Ok(())
    }

    /// The cgroup2 index (when the controller keeps its own), the classifier map, the
    /// namespaces.
    fn rescan(&mut self, state: &Mutex<NodeState>, rules: &RuleSet) {
        let mut guard = state.lock().unwrap();
        let st = &mut *guard;
        if let (Some(index), Some(root)) = (st.net.index.as_mut(), &self.unified_root) {
            match crate::model::layout::walk(root) {
                Ok(dirs) => {
                    let gone = index.refresh(dirs, rules).removed;
                    for &id in &gone {
                        st.net.rx.forget(id, (Class::System, None));
                        st.net.tx.forget(id, (Class::System, None));
                    }
                    self.sampler.forget(gone);
                }
                Err(e) => tracing::error!("{}: {e}", root.display()),
            }
        }
        if let Some(classifier) = &mut self.classifier {
            let index = st.net.index.as_ref().unwrap_or(&st.index);
            let wanted: HashMap<u64, u32> = index
                .iter()
                .filter_map(|e| {
                    let minor = match e.class {
                        Class::Online => CLASS_ONLINE,
                        Class::Offline => CLASS_OFFLINE,
                        // The host class is the default: no entry needed.
                        Class::System => return None,
                    };
                    Some((e.id, crate::model::tc::classid(minor)))
                })
                .collect();
            if let Err(e) = classifier.sync(&wanted) {
                tracing::error!("{e}");
            }
        }
        drop(guard);
        if let Some(r) = &self.reconciler {
            self.namespaces =
                self.scanner
                    .scan(Path::new("/proc"), r.host_inode(), &self.cgroup_line, rules);
        }
    }

    fn limits(&self, (egress, ingress): (u64, u64)) -> Limits {
        Limits {
            bond: BondShape {
                capacity: self.config.rule.capacity,
                host_limit: self.config.host_limit,
                offline_limit: egress,
            },
            offline_ingress: ingress,
        }
    }

    fn pass(
        &mut self,
        actuator: &mut Actuator,
        programs: &Programs,
        limits: (u64, u64),
        full: bool,
    ) -> Result<(), JournalError> {
        let started = Instant::now();
        let prog_id = programs.classifier_id().unwrap_or(0);
        let shape = self.limits(limits);
        let Some(reconciler) = self.reconciler.as_mut() else {
            return Ok(());
        };
        let survey = reconciler.survey(&self.namespaces, &shape, prog_id, Mode::Shape);
        if full {
            self.last_pass = Some(Instant::now());
        }
        if !survey.bond_present {
            if !self.reported_missing {
                tracing::warn!(
                    interface = %self.config.interface,
                    "network.interface: no such interface; nothing to shape until it appears"
                );
                self.reported_missing = true;
            }
        } else {
            self.reported_missing = false;
        }
        let fd = programs.classifier_fd().map(|f| f.as_raw_fd());
        let result = execute(reconciler, actuator, &survey, fd, limits, "shape");
        self.note(&survey, started, &result);
        if let Ok(Some(applied)) = &result
            && applied.failures.is_empty()
            && survey.bond_present
        {
            self.applied = (Some(limits.0), Some(limits.1));
        } else if survey.pending() == 0 && survey.bond_present {
            self.applied = (Some(limits.0), Some(limits.1));
        }
        result.map(drop)
    }

    fn note(
        &mut self,
        survey: &Survey,
        started: Instant,
        result: &Result<Option<Applied>, JournalError>,
    ) {
        let tc = &mut self.view.tc;
        tc.passes_total += 1;
        tc.last_pass_seconds = started.elapsed().as_secs_f64();
        tc.managed = survey
            .interfaces
            .iter()
            .filter(|i| i.role != Role::Released)
            .count();
        tc.conflicts = survey
            .interfaces
            .iter()
            .flat_map(|i| i.conflicts.iter().map(move |c| format!("{}: {c}", i.name)))
            .collect();
        if let Ok(Some(applied)) = result {
            tc.changes_total += applied.changes.len() as u64;
            tc.failures_total += applied.failures.len() as u64;
            if let Some(f) = applied.failures.last() {
                tc.last_error = Some(f.clone());
            }
        }
        tc.last_error = survey.errors.last().cloned().or(tc.last_error.take());
        self.view.interface_present = survey.bond_present;
        // Per-interface rates from the byte counters of this pass.
        let now_ns = crate::clock::monotonic_ns();
        let managed: std::collections::BTreeSet<(u64, u32)> = survey
            .interfaces
            .iter()
            .filter(|i| i.wanted.is_some())
            .map(|i| (i.netns, i.ifindex))
            .collect();
        let window_ns = self.window_ns.max(2_000_000_000);
        let mut seen = Vec::new();
        self.view.interfaces = survey
            .links
            .iter()
            .map(|l| {
                let key = (l.netns, l.ifindex);
                seen.push(key);
                let (rx, tx) = self
                    .links
                    .entry(key)
                    .or_insert_with(|| (RateWindow::new(window_ns), RateWindow::new(window_ns)));
                rx.push(now_ns, l.rx_bytes);
                tx.push(now_ns, l.tx_bytes);
                InterfaceTraffic {
                    name: l.name.clone(),
                    namespace: l.namespace.clone(),
                    kind: l.kind.clone(),
                    class: l.class.clone(),
                    shaped: managed.contains(&key),
                    rx_bytes_total: l.rx_bytes,
                    tx_bytes_total: l.tx_bytes,
                    rx_bytes_per_second: rx.per_second(),
                    tx_bytes_per_second: tx.per_second(),
                }
            })
            .collect();
        if !survey.links.is_empty() {
            self.links.retain(|k, _| seen.contains(k));
        }
    }

    fn publish(&mut self, state: &Mutex<NodeState>) {
        self.view.offline_limit = Directions {
            egress: self.applied.0.unwrap_or(0) as f64,
            ingress: self.applied.1.unwrap_or(0) as f64,
        };
        state.lock().unwrap().network = self.view.clone();
    }

    /// `enforcer tc show|apply`: a survey now, applied unless asked not to.
    pub fn request(
        &mut self,
        req: TcRequest,
        actuator: &mut Actuator,
        programs: &Programs,
    ) -> Result<TcReport, String> {
        let limits = (
            self.egress.current().unwrap_or(0),
            self.ingress.current().unwrap_or(0),
        );
        let prog_id = programs.classifier_id().unwrap_or(0);
        let shape = self.limits(limits);
        let Some(reconciler) = self.reconciler.as_mut() else {
            return Err("network shaping is off (network.shaping = false)".into());
        };
        let survey = reconciler.survey(&self.namespaces, &shape, prog_id, Mode::Shape);
        let dry_run = req.dry_run || actuator.dry_run();
        let applied = if req.apply && !dry_run {
            let fd = programs.classifier_fd().map(|f| f.as_raw_fd());
            execute(reconciler, actuator, &survey, fd, limits, "operator")
                .map_err(|e| e.to_string())?
        } else {
            reconciler.discard();
            None
        };
        Ok(TcReport {
            interface: self.config.interface.clone(),
            limits: Directions {
                egress: limits.0 as f64,
                ingress: limits.1 as f64,
            },
            survey,
            applied,
            dry_run,
        })
    }

    /// Removes everything enforcer installed (SIGTERM).
    pub fn shutdown(&mut self, actuator: &mut Actuator) -> Result<(), JournalError> {
        let shape = self.limits((0, 0));
        let Some(reconciler) = self.reconciler.as_mut() else {
            return Ok(());
        };
        let survey = reconciler.survey(&self.namespaces, &shape, 0, Mode::RemoveAll);
        if survey.pending() > 0 {
            tracing::info!(changes = survey.pending(), "removing enforcer's tc objects");
        }
        execute(reconciler, actuator, &survey, None, (0, 0), "shutdown").map(drop)
    }
}

/// Runs a survey's plan through the choke point: interfaces whose owner is not offline are
/// refused, the whole pass is journaled before and after, and a dry run stops after the
/// journal. Returns what was applied (None: nothing was pending, or dry run).
fn execute(
    reconciler: &mut Reconciler,
    actuator: &mut Actuator,
    survey: &Survey,
    prog_fd: Option<std::os::fd::RawFd>,
    limits: (u64, u64),
    why: &str,
) -> Result<Option<Applied>, JournalError> {
    if survey.pending() == 0 {
        reconciler.discard();
        return Ok(None);
    }
    let reason = serde_json::json!({
        "why": why,
        "offline_limit_egress_bytes_per_second": limits.0,
        "offline_limit_ingress_bytes_per_second": limits.1,
    });
    let allowed = actuator.authorize_network(survey, reason)?;
    let Some(allowed) = allowed else {
        reconciler.discard();
        return Ok(None);
    };
    let applied = reconciler.apply(survey, prog_fd, &|r| {
        allowed.contains(&(r.netns, r.name.clone()))
    });
    actuator.network_outcome(&applied)?;
    Ok(Some(applied))
}

//! The network controller, on the sampler thread: every tick it reads the cgroup_skb
//! counters, accounts them per class, and moves the offline limits with online use; when a
//! limit moves past its dead band, and every `reconcile_interval` in any case, it runs a tc
//! pass (survey, choke point, apply). It also answers `enforcer tc show|apply`.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

mod pass;
mod traffic;

use super::state::NodeState;
use crate::{
    actuators::journal::JournalError,
    actuators::{
        Actuator,
        tc::reconcile::{Reconciler, Topology},
    },
    config::NetworkConfig,
    model::{
        Class,
        classify::RuleSet,
        netns::{self, CgroupLine, Namespace},
    },
    policy::{
        bandwidth::{OfflineLimit, needs_write, over_share},
        shaping::{CLASS_OFFLINE, CLASS_ONLINE},
        window::RateWindow,
    },
    sampling::{
        net::{NetClassifier, NetSampler},
        programs::Programs,
    },
    surfaces::snapshot::{Directions, NetworkView, TcReport},
};

pub type TcReply = std::sync::mpsc::Sender<Result<TcReport, String>>;

pub struct NetworkController {
    config: NetworkConfig,
    sampler: NetSampler,
    classifier: Option<NetClassifier>,
    reconciler: Option<Reconciler>,
    cgroup_line: CgroupLine,
    egress: OfflineLimit,
    ingress: OfflineLimit,
    /// Limits in force in the kernel (set by the last pass that left nothing pending).
    applied: (Option<u64>, Option<u64>),
    namespaces: Vec<Namespace>,
    scanner: netns::Scanner,
    /// When the classifier map and the namespaces were last brought up to date, the index
    /// versions they were made from, and when those last changed.
    scanned: Option<(Instant, (u64, u64))>,
    changed_at: Option<Instant>,
    last_pass: Option<Instant>,
    links: HashMap<(u64, u32), (RateWindow, RateWindow)>,
    window_ns: u64,
    last_at_ns: Option<u64>,
    view: NetworkView,
    reported_missing: bool,
}

const GBIT: f64 = 125_000_000.0;

/// The classifier map and the namespaces follow the indexes: they are made again when a
/// cgroup came, went or was classified anew (a new container is a new cgroup), and at
/// least this often for what no cgroup event says (a process unsharing a namespace in a
/// cgroup it already had). Reading `/proc` for 2,500 processes every second was a third of
/// the idle cost of a 500-pod node.
const RESCAN_UNCHANGED: Duration = Duration::from_secs(10);

/// After a change, every pass looks again for this long: a container's cgroup comes first
/// and its processes (and namespace) a moment later.
const RESCAN_AFTER_CHANGE: Duration = Duration::from_secs(5);

impl NetworkController {
    pub fn new(
        config: NetworkConfig,
        programs: &mut Programs,
        state_dir: &Path,
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
            cgroup_line,
            egress: OfflineLimit::default(),
            ingress: OfflineLimit::default(),
            applied: (None, None),
            namespaces: Vec::new(),
            scanner: netns::Scanner::default(),
            scanned: None,
            changed_at: None,
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
        let pods = st.pods.clone();
        // Discovery keeps the cgroup2 index and drops the removed cgroups' figures; their
        // map entries are the sampler's, dropped here.
        self.sampler.forget(std::mem::take(&mut st.forget.net));
        let versions = (
            st.index.version(),
            st.net.index.as_ref().map_or(0, |i| i.version()),
        );
        let now = Instant::now();
        if self.scanned.is_none_or(|(_, v)| v != versions) {
            self.changed_at = Some(now);
        }
        let settled = self
            .changed_at
            .is_some_and(|t| now.duration_since(t) >= RESCAN_AFTER_CHANGE);
        if settled
            && self
                .scanned
                .is_some_and(|(at, _)| now.duration_since(at) < RESCAN_UNCHANGED)
        {
            return;
        }
        self.scanned = Some((now, versions));
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
            self.namespaces = self.scanner.scan(
                Path::new("/proc"),
                r.host_inode(),
                &self.cgroup_line,
                rules,
                &pods,
            );
        }
    }

    fn publish(&mut self, state: &Mutex<NodeState>) {
        self.view.offline_limit = Directions {
            egress: self.applied.0.unwrap_or(0) as f64,
            ingress: self.applied.1.unwrap_or(0) as f64,
        };
        state.lock().unwrap().network = self.view.clone();
    }
}

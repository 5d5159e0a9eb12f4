//! Reconciling tc state with what the shaping policy wants, namespace by namespace.
//!
//! A pass first *surveys*: it enters the host namespace (the one holding the bond) and every
//! pod namespace, lists links, finds the bond, the macvlan subinterfaces on it and the IFBs
//! enforcer made, reads what is installed on each, and plans the difference
//! ([`crate::policy::shaping::plan`]). Nothing is changed by a survey: `enforcer tc show`
//! and `enforcer tc apply --dry-run` stop there. *Applying* creates missing IFBs, runs the
//! planned operations in order, deletes IFBs nobody needs, and records what enforcer now
//! owns in its state file, so that a restarted daemon (even after `kill -9`) adopts its own
//! objects instead of duplicating them, and shutdown removes exactly those.
//!
//! Interfaces are tracked by (namespace inode, ifindex), never by name: a renamed
//! interface keeps its shaping, a deleted one is forgotten.

use std::{
    collections::{BTreeSet, HashMap},
    os::fd::RawFd,
    path::PathBuf,
    time::Instant,
};

use super::{
    client::{Link, NsConn, TcError},
    codec::QdiscInfo,
    owned::record,
};
mod discover;

pub use super::owned::Owned;
pub use crate::model::tc::survey::{Applied, InterfaceReport, LinkSample, Role, Survey};
use crate::{
    model::{
        Class,
        netns::Namespace,
        tc::{RootQdisc, TcOp, survey::LinkOp},
    },
    policy::shaping::{self, BondShape, Plan},
};
use discover::{is_sub, read_installed};

/// Prefix of the IFB devices enforcer creates (`eifb<ifindex of the subinterface>`).
pub const IFB_PREFIX: &str = "eifb";

/// What to find and how to shape it.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The bond's name.
    pub interface: String,
    /// A path entering the namespace that holds the bond.
    pub host_netns: PathBuf,
    /// Subinterfaces whose name matches are offline wherever they are.
    pub offline_interfaces: Option<regex::Regex>,
}

/// The figures of one pass, bytes per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub bond: BondShape,
    /// Offline ingress limit, shared by the offline subinterfaces' IFBs.
    pub offline_ingress: u64,
}

/// Runs passes. Holds a private single-threaded runtime for the netlink connections, which
/// live only for the length of a pass.
pub struct Reconciler {
    topology: Topology,
    /// Taken out for the length of a pass (the pass borrows the rest of `self`).
    runtime: Option<tokio::runtime::Runtime>,
    owned: Owned,
    state_path: Option<PathBuf>,
    /// Connections of the last survey, used by the apply that follows it.
    conns: HashMap<u64, NsConn>,
    host_inode: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Shape as the limits say.
    Shape,
    /// Remove everything enforcer owns (shutdown).
    RemoveAll,
}

impl Reconciler {
    pub fn new(topology: Topology, state_path: Option<PathBuf>) -> Result<Reconciler, TcError> {
        let host_inode = crate::model::netns::inode(&topology.host_netns).map_err(|source| {
            TcError::Namespace {
                path: topology.host_netns.display().to_string(),
                source,
            }
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(TcError::Netlink)?;
        let owned = state_path.as_deref().map(Owned::load).unwrap_or_default();
        Ok(Reconciler {
            topology,
            runtime: Some(runtime),
            owned,
            state_path,
            conns: HashMap::new(),
            host_inode,
        })
    }

    pub fn host_inode(&self) -> u64 {
        self.host_inode
    }

    pub fn owned(&self) -> &Owned {
        &self.owned
    }

    pub fn set_offline_interfaces(&mut self, pattern: Option<regex::Regex>) {
        self.topology.offline_interfaces = pattern;
    }

    /// Reads every namespace and plans; changes nothing.
    pub fn survey(
        &mut self,
        namespaces: &[Namespace],
        limits: &Limits,
        classifier_prog_id: u32,
        mode: Mode,
    ) -> Survey {
        let started = Instant::now();
        self.conns.clear();
        let mut survey = Survey::default();
        let host = Namespace {
            inode: self.host_inode,
            path: self.topology.host_netns.clone(),
            owner: "host".into(),
            class: Class::System,
            priority: None,
            processes: 0,
        };
        let runtime = self.runtime.take().expect("one pass at a time");
        let mut bond: Option<u32> = None;
        // The host first: the bond's ifindex tells which pod macvlans hang off it.
        let pods: Vec<&Namespace> = namespaces
            .iter()
            .filter(|n| n.inode != self.host_inode)
            .collect();
        let all = std::iter::once(&host).chain(pods.iter().copied());
        let mut subs_total = 0usize;
        let mut per_ns: Vec<(&Namespace, Vec<Link>, Vec<QdiscInfo>)> = Vec::new();
        runtime.block_on(async {
            for ns in all {
                let read = async {
                    let conn = NsConn::open(&ns.path)?;
                    let links = conn.links().await?;
                    let qdiscs = conn.qdiscs().await?;
                    Ok::<_, TcError>((conn, links, qdiscs))
                };
                match read.await {
                    Ok((conn, links, qdiscs)) => {
                        if ns.inode == self.host_inode {
                            bond = links
                                .iter()
                                .find(|l| l.name == self.topology.interface)
                                .map(|l| l.ifindex);
                            if bond.is_none() {
                                // Without the bond there is nothing to shape anywhere.
                                per_ns.push((ns, links, qdiscs));
                                self.conns.insert(ns.inode, conn);
                                break;
                            }
                        }
                        let in_host = ns.inode == self.host_inode;
                        let b = bond.unwrap_or(0);
                        subs_total += links
                            .iter()
                            .filter(|l| is_sub(l, b, in_host) && self.offline(ns, l).is_some())
                            .count();
                        per_ns.push((ns, links, qdiscs));
                        self.conns.insert(ns.inode, conn);
                    }
                    Err(e) if ns.inode == self.host_inode => {
                        survey.errors.push(format!("host namespace: {e}"));
                        break;
                    }
                    // A pod namespace that went away between the scan and now.
                    Err(e) => tracing::debug!(netns = ns.inode, "skipped: {e}"),
                }
            }
            survey.bond_present = bond.is_some();
            let share = |total: u64| total / subs_total.max(1) as u64;
            let sub_egress = share(limits.bond.offline_limit);
            let sub_ingress = share(limits.offline_ingress);
            for (ns, links, qdiscs) in &per_ns {
                let conn = &self.conns[&ns.inode];
                let in_host = ns.inode == self.host_inode;
                let mut reports = Vec::new();
                if let Some(b) = bond {
                    self.plan_namespace(
                        ns,
                        links,
                        qdiscs,
                        b,
                        (sub_egress, sub_ingress),
                        limits,
                        classifier_prog_id,
                        mode,
                        &mut reports,
                        &mut survey.links,
                    );
                } else if in_host {
                    self.plan_released(ns, links, qdiscs, &mut reports);
                }
                if let Err(e) = read_installed(conn, &mut reports).await {
                    survey.errors.push(format!("{}: {e}", ns.owner));
                    continue;
                }
                for r in &mut reports {
                    let owns_ingress = self.owned.ingress.contains(&(r.netns, r.ifindex));
                    let Plan { ops, conflicts } =
                        shaping::plan(r.ifindex, &r.installed, r.wanted.as_ref(), owns_ingress);
                    let names: HashMap<u32, String> =
                        links.iter().map(|l| (l.ifindex, l.name.clone())).collect();
                    let ifb_name = format!("{IFB_PREFIX}{}", r.ifindex);
                    let name_of =
                        |i: u32| names.get(&i).cloned().unwrap_or_else(|| ifb_name.clone());
                    r.changes = r
                        .link
                        .iter()
                        .map(|l| match l {
                            LinkOp::CreateIfb => format!("ip link add name {} up type ifb", r.name),
                            LinkOp::DeleteIfb => format!("ip link del {}", r.name),
                        })
                        .chain(ops.iter().map(|o| {
                            format!(
                                "tc {}",
                                o.tc_args(&r.name, &name_of, "bpf name enforcer_classify")
                                    .join(" ")
                            )
                        }))
                        .collect();
                    r.conflicts = conflicts.iter().map(ToString::to_string).collect();
                    r.ops = ops;
                }
                survey.interfaces.extend(reports);
            }
        });
        self.runtime = Some(runtime);
        survey.seconds = started.elapsed().as_secs_f64();
        survey
    }

    /// Applies what the last survey planned. `prog_fd` is the classifier's fd; `allowed`
    /// says, per interface, whether the choke point let it through.
    pub fn apply(
        &mut self,
        survey: &Survey,
        prog_fd: Option<RawFd>,
        allowed: &dyn Fn(&InterfaceReport) -> bool,
    ) -> Applied {
        let mut applied = Applied::default();
        let runtime = self.runtime.take().expect("one pass at a time");
        let before = self.owned.clone();
        runtime.block_on(async {
            // IFBs first: the redirects point at them.
            let mut created: HashMap<(u64, String), u32> = HashMap::new();
            for r in survey.interfaces.iter().filter(|r| allowed(r)) {
                let Some(conn) = self.conns.get(&r.netns) else {
                    continue;
                };
                if r.link == Some(LinkOp::CreateIfb) {
                    match conn.add_ifb(&r.name).await {
                        Ok(index) => {
                            created.insert((r.netns, r.name.clone()), index);
                            self.owned.ifbs.insert((r.netns, index, r.name.clone()));
                            applied
                                .changes
                                .push(format!("ip link add name {} up type ifb", r.name));
                        }
                        Err(e) => applied.failures.push(format!("{}: {e}", r.name)),
                    }
                }
            }
            for r in survey.interfaces.iter().filter(|r| allowed(r)) {
                let Some(conn) = self.conns.get(&r.netns) else {
                    continue;
                };
                let ifindex = if r.ifindex == 0 {
                    match created.get(&(r.netns, r.name.clone())) {
                        Some(&i) => i,
                        None => continue,
                    }
                } else {
                    r.ifindex
                };
                let ifb_of_this = created
                    .get(&(r.netns, format!("{IFB_PREFIX}{}", r.ifindex)))
                    .copied();
                for op in &r.ops {
                    let op = fill(op, ifindex, ifb_of_this, prog_fd);
                    let line = format!("{} on {}", describe(&op), r.name);
                    match conn.apply(&op).await {
                        Ok(()) => {
                            record(&mut self.owned, r, ifindex, &op);
                            applied.changes.push(line);
                        }
                        Err(e) => {
                            applied.failures.push(format!("{line}: {e}"));
                            // The rest of this interface's plan depends on this step.
                            break;
                        }
                    }
                }
                if r.link == Some(LinkOp::DeleteIfb) {
                    match conn.delete_link(r.ifindex).await {
                        Ok(()) => {
                            self.owned
                                .ifbs
                                .retain(|(n, i, _)| !(*n == r.netns && *i == r.ifindex));
                            applied.changes.push(format!("ip link del {}", r.name));
                        }
                        Err(e) => applied.failures.push(format!("{}: {e}", r.name)),
                    }
                }
            }
        });
        self.runtime = Some(runtime);
        self.conns.clear();
        // Objects on interfaces or namespaces that no longer exist are no longer owned.
        self.adopt(survey);
        if self.owned != before
            && let Some(path) = &self.state_path
            && let Err(e) = self.owned.save(path)
        {
            applied.failures.push(format!(
                "{}: cannot record what enforcer owns: {e}",
                path.display()
            ));
        }
        applied
    }

    /// Drops the connections of a survey that will not be applied.
    pub fn discard(&mut self) {
        self.conns.clear();
    }

    /// Keeps the record in step with what the survey saw: enforcer's HTB roots are its own
    /// even without a record (the `ef00:` handle says so); records of interfaces that are
    /// gone from namespaces that were read are dropped.
    fn adopt(&mut self, survey: &Survey) {
        let seen: BTreeSet<(u64, u32)> = survey
            .links
            .iter()
            .map(|l| (l.netns, l.ifindex))
            .chain(survey.interfaces.iter().map(|r| (r.netns, r.ifindex)))
            .collect();
        let read: BTreeSet<u64> = survey.links.iter().map(|l| l.netns).collect();
        let gone = |n: u64, i: u32| read.contains(&n) && !seen.contains(&(n, i));
        self.owned.ingress.retain(|&(n, i)| !gone(n, i));
        self.owned.roots.retain(|(n, i, _)| !gone(*n, *i));
        for r in &survey.interfaces {
            if matches!(r.installed.root, RootQdisc::Htb { .. }) && r.wanted.is_some() {
                self.owned
                    .roots
                    .insert((r.netns, r.ifindex, r.name.clone()));
            }
        }
    }
}

/// An operation as planned, completed with what is known only when applying.
fn fill(op: &TcOp, ifindex: u32, new_ifb: Option<u32>, prog_fd: Option<RawFd>) -> TcOp {
    let mut op = op.clone();
    match &mut op {
        TcOp::ReplaceRoot { ifindex: i, .. }
        | TcOp::DeleteRoot { ifindex: i }
        | TcOp::AddIngress { ifindex: i }
        | TcOp::DeleteIngress { ifindex: i }
        | TcOp::AddClass { ifindex: i, .. }
        | TcOp::ChangeClass { ifindex: i, .. }
        | TcOp::DeleteClass { ifindex: i, .. }
        | TcOp::DeleteFilter { ifindex: i, .. } => *i = ifindex,
        TcOp::SetClassifier {
            ifindex: i,
            prog_fd: fd,
            ..
        } => {
            *i = ifindex;
            *fd = prog_fd.unwrap_or(-1) as u32;
        }
        TcOp::AddRedirect {
            ifindex: i,
            target_ifindex,
            ..
        } => {
            *i = ifindex;
            if *target_ifindex == 0 {
                *target_ifindex = new_ifb.unwrap_or(0);
            }
        }
    }
    op
}

/// A short description for the journal.
fn describe(op: &TcOp) -> String {
    use crate::model::tc::{handle_str, rate_str};
    match op {
        TcOp::ReplaceRoot { default_minor, .. } => {
            format!("htb root ef00: default {default_minor:x}")
        }
        TcOp::DeleteRoot { .. } => "delete root qdisc".into(),
        TcOp::AddIngress { .. } => "ingress qdisc".into(),
        TcOp::DeleteIngress { .. } => "delete ingress qdisc".into(),
        TcOp::AddClass { class, .. } | TcOp::ChangeClass { class, .. } => format!(
            "{} class {} rate {} ceil {}",
            if matches!(op, TcOp::AddClass { .. }) {
                "add"
            } else {
                "change"
            },
            handle_str(class.classid),
            rate_str(class.rate),
            rate_str(class.ceil)
        ),
        TcOp::DeleteClass { classid, .. } => format!("delete class {}", handle_str(*classid)),
        TcOp::SetClassifier { replace, .. } => {
            format!(
                "{} cgroup classifier",
                if *replace { "replace" } else { "add" }
            )
        }
        TcOp::AddRedirect { target_ifindex, .. } => {
            format!("redirect ingress to ifindex {target_ifindex}")
        }
        TcOp::DeleteFilter { parent, prio, .. } => {
            format!("delete filter {} prio {prio}", handle_str(*parent))
        }
    }
}

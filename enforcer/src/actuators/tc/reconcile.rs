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
    decode::QdiscInfo,
    owned::record,
};
mod apply;
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
                            .filter(|l| {
                                Self::is_sub(l, b, in_host) && self.offline(ns, l).is_some()
                            })
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
                if let Err(e) = Self::read_installed(conn, &mut reports).await {
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
}

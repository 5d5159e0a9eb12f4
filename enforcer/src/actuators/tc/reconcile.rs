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
    path::{Path, PathBuf},
    time::Instant,
};

use serde::{Deserialize, Serialize};

use super::{
    client::{Link, NsConn, TcError},
    codec::{QdiscInfo, TcOp},
};
use crate::{
    model::{
        Class,
        netns::Namespace,
        tc::{
            Filter, HANDLE_MAJOR, INGRESS_HANDLE, INGRESS_PARENT, InterfaceTc, ROOT_HANDLE,
            ROOT_PARENT, RootQdisc,
        },
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

/// Why enforcer manages an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Role {
    /// The bond: online, host and offline classes.
    Bond,
    /// An offline macvlan subinterface: `owner` is the cgroup owning its pod namespace
    /// (empty on the host), `by_pattern` says it is offline by the configured name pattern
    /// rather than by its owner's class.
    Offline { owner: String, by_pattern: bool },
    /// The IFB carrying an offline subinterface's ingress.
    Ifb { of: String },
    /// enforcer's objects on an interface it no longer wants to shape.
    Released,
}

/// One interface of a pass: what is installed, what is wanted, the plan between.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InterfaceReport {
    pub netns: u64,
    /// `host`, or the cgroup owning the pod namespace.
    pub namespace: String,
    /// 0 for an IFB still to be created.
    pub ifindex: u32,
    pub name: String,
    #[serde(flatten)]
    pub role: Role,
    pub installed: InterfaceTc,
    pub wanted: Option<InterfaceTc>,
    /// The planned changes, as `tc` commands.
    pub changes: Vec<String>,
    /// Why parts of it are left alone.
    pub conflicts: Vec<String>,
    #[serde(skip)]
    ops: Vec<TcOp>,
    #[serde(skip)]
    link: Option<LinkOp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LinkOp {
    CreateIfb,
    DeleteIfb,
}

/// A link seen in a pass, for per-interface byte rates.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkSample {
    pub netns: u64,
    pub namespace: String,
    pub name: String,
    pub ifindex: u32,
    /// `bond`, `macvlan`.
    pub kind: String,
    /// Whose traffic it carries: `node` for the bond, else the namespace owner's class.
    pub class: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The result of a survey.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Survey {
    pub bond_present: bool,
    pub interfaces: Vec<InterfaceReport>,
    pub links: Vec<LinkSample>,
    /// Namespaces that could not be read (gone between the scan and the pass, ...).
    pub errors: Vec<String>,
    pub seconds: f64,
}

impl Survey {
    /// Planned operations (tc and link), over all interfaces.
    pub fn pending(&self) -> usize {
        self.interfaces
            .iter()
            .map(|i| i.ops.len() + usize::from(i.link.is_some()))
            .sum()
    }

    pub fn conflicts(&self) -> usize {
        self.interfaces.iter().map(|i| i.conflicts.len()).sum()
    }
}

/// What applying did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    pub changes: Vec<String>,
    pub failures: Vec<String>,
}

/// What enforcer installed, persisted so that it survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    /// `(netns inode, ifindex)` with enforcer's `ingress` qdisc.
    pub ingress: BTreeSet<(u64, u32)>,
    /// `(netns inode, ifindex, name)` of IFBs enforcer created.
    pub ifbs: BTreeSet<(u64, u32, String)>,
    /// `(netns inode, ifindex, name)` with enforcer's HTB root.
    pub roots: BTreeSet<(u64, u32, String)>,
}

impl Owned {
    fn load(path: &Path) -> Owned {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "{}: unreadable ({e}); starting without a record",
                    path.display()
                );
                Owned::default()
            }),
            Err(_) => Owned::default(),
        }
    }

    /// Written to a temporary file, fsynced and renamed: a crash leaves the old record or
    /// the new one, never half of one.
    fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }
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

fn root_of(qdiscs: &[QdiscInfo], ifindex: u32) -> (RootQdisc, bool, bool) {
    let mut root = RootQdisc::Default {
        qdisc: "noqueue".into(),
    };
    let (mut ingress, mut clsact) = (false, false);
    for q in qdiscs.iter().filter(|q| q.ifindex == ifindex) {
        if q.parent == ROOT_PARENT {
            root = match (q.handle, q.kind.as_str(), q.htb_default) {
                (0, kind, _) => RootQdisc::Default { qdisc: kind.into() },
                (ROOT_HANDLE, "htb", Some(d)) => RootQdisc::Htb { default_minor: d },
                (handle, kind, _) => RootQdisc::Foreign {
                    qdisc: kind.into(),
                    handle,
                },
            };
        } else if q.parent == INGRESS_PARENT {
            ingress = true;
            clsact = q.kind == "clsact";
        }
    }
    (root, ingress, clsact)
}

fn is_sub(link: &Link, bond: u32, in_host: bool) -> bool {
    link.kind.as_deref() == Some("macvlan")
        && link.parent == Some(bond)
        && link.parent_netnsid.is_some() != in_host
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

    /// Why a subinterface is offline, if it is.
    fn offline(&self, ns: &Namespace, link: &Link) -> Option<Role> {
        let by_pattern = self
            .topology
            .offline_interfaces
            .as_ref()
            .is_some_and(|p| p.is_match(&link.name));
        let in_pod = ns.inode != self.host_inode;
        let by_owner = in_pod && ns.class == Class::Offline;
        // A pattern never overrides an online owner: the choke point refuses that too.
        (by_owner || (by_pattern && ns.class != Class::Online)).then(|| Role::Offline {
            owner: if in_pod {
                ns.owner.clone()
            } else {
                String::new()
            },
            by_pattern: by_pattern && !by_owner,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_namespace(
        &self,
        ns: &Namespace,
        links: &[Link],
        qdiscs: &[QdiscInfo],
        bond: u32,
        (sub_egress, sub_ingress): (u64, u64),
        limits: &Limits,
        prog_id: u32,
        mode: Mode,
        reports: &mut Vec<InterfaceReport>,
        samples: &mut Vec<LinkSample>,
    ) {
        let in_host = ns.inode == self.host_inode;
        let shape = mode == Mode::Shape;
        let report = |link: &Link, role: Role, wanted: Option<InterfaceTc>| {
            let (root, ingress, clsact) = root_of(qdiscs, link.ifindex);
            let mut installed = InterfaceTc {
                root,
                ingress,
                ..Default::default()
            };
            if clsact {
                // Somebody's clsact (Cilium, ...): its ingress hook is not enforcer's.
                installed.filters.push(Filter::Other {
                    parent: INGRESS_HANDLE,
                    prio: 0,
                    handle: 0,
                    filter: "clsact".into(),
                });
            }
            InterfaceReport {
                netns: ns.inode,
                namespace: ns.owner.clone(),
                ifindex: link.ifindex,
                name: link.name.clone(),
                role,
                installed,
                wanted,
                changes: Vec::new(),
                conflicts: Vec::new(),
                ops: Vec::new(),
                link: None,
            }
        };
        let mut wanted_ifbs = BTreeSet::new();
        for link in links {
            if in_host && link.ifindex == bond {
                samples.push(sample(ns, link, "bond", "node"));
                let wanted = shape.then(|| shaping::bond(&limits.bond, prog_id));
                reports.push(report(link, Role::Bond, wanted));
                continue;
            }
            if !is_sub(link, bond, in_host) {
                continue;
            }
            let role = self.offline(ns, link);
            let class = if role.is_some() {
                "offline"
            } else {
                ns.class.as_str()
            };
            samples.push(sample(ns, link, "macvlan", class));
            match role.filter(|_| shape) {
                Some(role) => {
                    let ifb_name = format!("{IFB_PREFIX}{}", link.ifindex);
                    let ifb = links.iter().find(|l| l.name == ifb_name);
                    let ifb_index = ifb.map_or(0, |l| l.ifindex);
                    let sub = report(
                        link,
                        role,
                        Some(shaping::shaped(sub_egress, Some(ifb_index))),
                    );
                    wanted_ifbs.insert(ifb_name.clone());
                    let ifb_role = Role::Ifb {
                        of: link.name.clone(),
                    };
                    let wanted = Some(shaping::shaped(sub_ingress, None));
                    match ifb {
                        Some(l) => reports.push(report(l, ifb_role, wanted)),
                        None => {
                            let mut r = report(
                                &Link {
                                    ifindex: 0,
                                    name: ifb_name,
                                    kind: Some("ifb".into()),
                                    parent: None,
                                    parent_netnsid: None,
                                    mac: Vec::new(),
                                    rx_bytes: 0,
                                    tx_bytes: 0,
                                    up: false,
                                },
                                ifb_role,
                                wanted,
                            );
                            r.link = Some(LinkOp::CreateIfb);
                            reports.push(r);
                        }
                    }
                    // The IFB first, as applying does: the subinterface's redirect names it.
                    reports.push(sub);
                }
                None => {
                    let (root, ..) = root_of(qdiscs, link.ifindex);
                    let owns = self.owned.ingress.contains(&(ns.inode, link.ifindex));
                    if matches!(root, RootQdisc::Htb { .. }) || owns {
                        reports.push(report(link, Role::Released, None));
                    }
                }
            }
        }
        // IFBs enforcer made that no subinterface needs any more.
        for link in links {
            let recorded = self
                .owned
                .ifbs
                .contains(&(ns.inode, link.ifindex, link.name.clone()));
            if recorded && !wanted_ifbs.contains(&link.name) {
                let mut r = report(link, Role::Released, None);
                r.link = Some(LinkOp::DeleteIfb);
                reports.push(r);
            }
        }
    }

    /// The bond is gone (or was renamed): release whatever enforcer still has in the host
    /// namespace.
    fn plan_released(
        &self,
        ns: &Namespace,
        links: &[Link],
        qdiscs: &[QdiscInfo],
        reports: &mut Vec<InterfaceReport>,
    ) {
        for link in links {
            let (root, ingress, _) = root_of(qdiscs, link.ifindex);
            let ifb = self
                .owned
                .ifbs
                .contains(&(ns.inode, link.ifindex, link.name.clone()));
            if matches!(root, RootQdisc::Htb { .. }) || ifb {
                reports.push(InterfaceReport {
                    netns: ns.inode,
                    namespace: ns.owner.clone(),
                    ifindex: link.ifindex,
                    name: link.name.clone(),
                    role: Role::Released,
                    installed: InterfaceTc {
                        root,
                        ingress,
                        ..Default::default()
                    },
                    wanted: None,
                    changes: Vec::new(),
                    conflicts: Vec::new(),
                    ops: Vec::new(),
                    link: ifb.then_some(LinkOp::DeleteIfb),
                });
            }
        }
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

fn record(owned: &mut Owned, r: &InterfaceReport, ifindex: u32, op: &TcOp) {
    let key = (r.netns, ifindex);
    match op {
        TcOp::ReplaceRoot { .. } => {
            owned.roots.insert((r.netns, ifindex, r.name.clone()));
        }
        TcOp::DeleteRoot { .. } => owned.roots.retain(|(n, i, _)| (*n, *i) != key),
        TcOp::AddIngress { .. } => {
            owned.ingress.insert(key);
        }
        TcOp::DeleteIngress { .. } => {
            owned.ingress.remove(&key);
        }
        _ => {}
    }
}

fn sample(ns: &Namespace, link: &Link, kind: &str, class: &str) -> LinkSample {
    LinkSample {
        netns: ns.inode,
        namespace: ns.owner.clone(),
        name: link.name.clone(),
        ifindex: link.ifindex,
        kind: kind.into(),
        class: class.into(),
        rx_bytes: link.rx_bytes,
        tx_bytes: link.tx_bytes,
    }
}

/// Reads classes and filters of the interfaces whose qdiscs are enforcer's kind.
async fn read_installed(conn: &NsConn, reports: &mut [InterfaceReport]) -> Result<(), TcError> {
    let with_htb: Vec<usize> = (0..reports.len())
        .filter(|&i| matches!(reports[i].installed.root, RootQdisc::Htb { .. }))
        .collect();
    let indexes: Vec<u32> = with_htb.iter().map(|&i| reports[i].ifindex).collect();
    let mut slots: Vec<(u32, u32)> = indexes.iter().map(|&i| (i, ROOT_HANDLE)).collect();
    let with_ingress: Vec<usize> = (0..reports.len())
        .filter(|&i| reports[i].installed.ingress && reports[i].ifindex != 0)
        .collect();
    slots.extend(
        with_ingress
            .iter()
            .map(|&i| (reports[i].ifindex, INGRESS_HANDLE)),
    );
    let (classes, filters) =
        futures_util::future::join(conn.classes(&indexes), conn.filters(&slots)).await;
    let (classes, filters) = (classes?, filters?);
    for (k, &i) in with_htb.iter().enumerate() {
        reports[i].installed.classes = classes[k]
            .iter()
            .filter(|c| (c.classid >> 16) as u16 == HANDLE_MAJOR)
            .copied()
            .collect();
    }
    for (k, &i) in with_htb.iter().chain(with_ingress.iter()).enumerate() {
        reports[i]
            .installed
            .filters
            .extend(filters[k].iter().cloned());
    }
    Ok(())
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

//! Finding, in one namespace, what enforcer manages: the bond, the macvlan subinterfaces on
//! it (offline by their namespace's owner or by name), their IFBs, and what enforcer still
//! owns on interfaces it no longer wants; and reading what is installed on them.

use std::collections::BTreeSet;

use super::{
    super::{
        client::{Link, NsConn, TcError},
        decode::QdiscInfo,
    },
    IFB_PREFIX, InterfaceReport, Limits, LinkOp, LinkSample, Mode, Reconciler, Role,
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
    policy::shaping::{self, offline_interface},
};

pub(super) fn root_of(qdiscs: &[QdiscInfo], ifindex: u32) -> (RootQdisc, bool, bool) {
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

impl Reconciler {
    /// A pod macvlan of the bond: in a pod namespace its parent is the bond in another
    /// namespace (a link-netnsid is present); on the host, the bond itself.
    pub(super) fn is_sub(link: &Link, bond: u32, in_host: bool) -> bool {
        link.kind.as_deref() == Some("macvlan")
            && link.parent == Some(bond)
            && link.parent_netnsid.is_some() != in_host
    }

    /// Reads classes and filters of the interfaces whose qdiscs are enforcer's kind.
    pub(super) async fn read_installed(
        conn: &NsConn,
        reports: &mut [InterfaceReport],
    ) -> Result<(), TcError> {
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

    /// Why a subinterface is offline, if it is.
    pub(super) fn offline(&self, ns: &Namespace, link: &Link) -> Option<Role> {
        let by_pattern = self
            .topology
            .offline_interfaces
            .as_ref()
            .is_some_and(|p| p.is_match(&link.name));
        let in_pod = ns.inode != self.host_inode;
        let by_owner = in_pod && ns.class == Class::Offline;
        offline_interface(in_pod.then_some(ns.class), by_pattern).then(|| Role::Offline {
            owner: if in_pod {
                ns.owner.clone()
            } else {
                String::new()
            },
            by_pattern: by_pattern && !by_owner,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn plan_namespace(
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
            if !Self::is_sub(link, bond, in_host) {
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
    pub(super) fn plan_released(
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
}

//! Network shaping as pure data: what tc state each interface should have (SPEC §3), and
//! the smallest list of operations that turns what is installed into that. Reconcile, never
//! reapply: an interface that already matches yields no operation at all.
//!
//! On `bond0`, one HTB root `ef00:` (default class: host):
//! - `ef00:1`  the link (rate = ceil = capacity);
//! - `ef00:10` online: guaranteed what host and offline do not take, may use the whole link;
//! - `ef00:20` host: capped at `host_limit` (10 Gbit/s by default);
//! - `ef00:30` offline: rate = ceil = the offline limit the daemon sets every tick.
//!
//! Packets are classified by the cgroup of the socket that sent them, with a cls_bpf filter
//! running enforcer's classifier (see `enforcer-ebpf/src/net.rs`): it covers offline pods
//! behind macvlans and offline work on the host network (Yarn containers) alike, and it
//! does not depend on addresses that change with every pod. Unknown senders and forwarded
//! traffic (no socket) fall to the host class.
//!
//! On each offline macvlan subinterface: an HTB root with one class at the interface's share
//! of the offline egress limit, and an `ingress` qdisc whose u32 match-all filter redirects
//! to an IFB (`eifb<ifindex>`, in the same namespace) shaped to its share of the offline
//! ingress limit.

use crate::model::{
    Class,
    tc::{
        Filter, HtbClass, INGRESS_HANDLE, InterfaceTc, ROOT_HANDLE, RootQdisc, TcOp, classid,
        htb_class,
    },
};

/// Whether an interface is an offline subinterface to shape: its namespace's owner is
/// offline, or the operator's name pattern says so and its owner is not online (on the host
/// there is no owner). A pattern never makes an online pod's interface offline. The survey
/// and the choke point both ask this one rule, the choke point with the rules in force.
pub fn offline_interface(owner: Option<Class>, name_matches: bool) -> bool {
    match owner {
        None | Some(Class::System) => name_matches,
        Some(Class::Offline) => true,
        Some(Class::Online) => false,
    }
}

pub const CLASS_LINK: u16 = 0x1;
pub const CLASS_ONLINE: u16 = 0x10;
pub const CLASS_HOST: u16 = 0x20;
pub const CLASS_OFFLINE: u16 = 0x30;
/// The one class of a subinterface or IFB root.
pub const CLASS_SHAPED: u16 = 0x1;
/// Priority (and handle) of enforcer's filters.
pub const FILTER_PRIO: u16 = 1;
pub const CLASSIFIER_HANDLE: u32 = 1;
/// Name the classifier filter carries (shown by `tc filter show`).
pub const CLASSIFIER_NAME: &str = "enforcer_classify";
/// Smallest rate enforcer sets on any class (HTB refuses 0).
pub const MIN_RATE: u64 = 125_000; // 1 Mbit/s

/// The bond's figures, bytes per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BondShape {
    pub capacity: u64,
    pub host_limit: u64,
    pub offline_limit: u64,
}

/// `bond0`'s wanted state.
pub fn bond(shape: &BondShape, classifier_prog_id: u32) -> InterfaceTc {
    let cap = shape.capacity.max(MIN_RATE);
    let offline = shape.offline_limit.clamp(MIN_RATE, cap);
    let host_ceil = shape.host_limit.clamp(MIN_RATE, cap);
    // The host is guaranteed a tenth of its cap (heartbeats, kubelet, ssh); online is
    // guaranteed the rest of what offline does not get, so guarantees add up to the link.
    let host_rate = (host_ceil / 10).max(MIN_RATE);
    let online_rate = cap.saturating_sub(offline + host_rate).max(MIN_RATE);
    let parent = classid(CLASS_LINK);
    InterfaceTc {
        root: RootQdisc::Htb {
            default_minor: CLASS_HOST,
        },
        ingress: false,
        classes: vec![
            htb_class(parent, ROOT_HANDLE, cap, cap, 0),
            htb_class(classid(CLASS_ONLINE), parent, online_rate, cap, 0),
            htb_class(classid(CLASS_HOST), parent, host_rate, host_ceil, 1),
            htb_class(classid(CLASS_OFFLINE), parent, offline, offline, 2),
        ],
        filters: vec![Filter::Classify {
            parent: ROOT_HANDLE,
            prio: FILTER_PRIO,
            handle: CLASSIFIER_HANDLE,
            prog_id: classifier_prog_id,
            name: CLASSIFIER_NAME.into(),
        }],
    }
}

/// A single-class HTB root shaping everything to `rate` (egress of an offline subinterface,
/// or an IFB carrying its ingress), plus, for a subinterface, the ingress redirect.
pub fn shaped(rate: u64, redirect_to: Option<u32>) -> InterfaceTc {
    let rate = rate.max(MIN_RATE);
    InterfaceTc {
        root: RootQdisc::Htb {
            default_minor: CLASS_SHAPED,
        },
        ingress: redirect_to.is_some(),
        classes: vec![htb_class(classid(CLASS_SHAPED), ROOT_HANDLE, rate, rate, 0)],
        filters: redirect_to
            .map(|target_ifindex| Filter::Redirect {
                parent: INGRESS_HANDLE,
                prio: FILTER_PRIO,
                target_ifindex,
            })
            .into_iter()
            .collect(),
    }
}

/// Why an interface is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// Its root qdisc is somebody else's (not the kernel default, not enforcer's `ef00:`).
    ForeignRoot { qdisc: String, handle: u32 },
    /// Its ingress qdisc carries filters that are not enforcer's.
    ForeignIngress,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conflict::ForeignRoot { qdisc, handle } => write!(
                f,
                "root qdisc {qdisc} {} is not enforcer's: left untouched",
                crate::model::tc::handle_str(*handle)
            ),
            Conflict::ForeignIngress => {
                write!(
                    f,
                    "ingress qdisc has filters that are not enforcer's: left untouched"
                )
            }
        }
    }
}

/// The plan for one interface: operations in the order they must run, and what was left
/// alone. `prog_fd` of a classifier operation is 0 here; the executor fills in the fd of the
/// loaded program.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub ops: Vec<TcOp>,
    pub conflicts: Vec<Conflict>,
}

fn class_ops(ifindex: u32, installed: &[HtbClass], wanted: &[HtbClass], ops: &mut Vec<TcOp>) {
    // Wanted classes are listed parents first.
    for w in wanted {
        match installed.iter().find(|i| i.classid == w.classid) {
            Some(i) if i == w => {}
            Some(_) => ops.push(TcOp::ChangeClass { ifindex, class: *w }),
            None => ops.push(TcOp::AddClass { ifindex, class: *w }),
        }
    }
    // Classes of enforcer's HTB nobody wants any more, children first.
    let mut stale: Vec<&HtbClass> = installed
        .iter()
        .filter(|i| !wanted.iter().any(|w| w.classid == i.classid))
        .collect();
    stale.sort_by_key(|c| c.parent == ROOT_HANDLE);
    for c in stale {
        ops.push(TcOp::DeleteClass {
            ifindex,
            classid: c.classid,
        });
    }
}

fn filter_op(ifindex: u32, f: &Filter, replace: bool) -> Option<TcOp> {
    match f {
        Filter::Classify {
            parent,
            prio,
            handle,
            name,
            ..
        } => Some(TcOp::SetClassifier {
            ifindex,
            parent: *parent,
            prio: *prio,
            handle: *handle,
            prog_fd: 0,
            name: name.clone(),
            replace,
        }),
        Filter::Redirect {
            prio,
            target_ifindex,
            ..
        } => Some(TcOp::AddRedirect {
            ifindex,
            prio: *prio,
            target_ifindex: *target_ifindex,
        }),
        Filter::Other { .. } => None,
    }
}

fn filter_ops(ifindex: u32, installed: &[Filter], wanted: &[Filter], ops: &mut Vec<TcOp>) {
    for w in wanted {
        let same_slot = installed
            .iter()
            .find(|i| i.parent() == w.parent() && i.prio() == w.prio());
        match (same_slot, w) {
            (Some(i), _) if i == w => {}
            // A classifier can be switched to another program in place.
            (Some(Filter::Classify { .. }), Filter::Classify { .. }) => {
                ops.extend(filter_op(ifindex, w, true))
            }
            (Some(i), _) => {
                ops.push(TcOp::DeleteFilter {
                    ifindex,
                    parent: i.parent(),
                    prio: i.prio(),
                });
                ops.extend(filter_op(ifindex, w, false));
            }
            (None, _) => ops.extend(filter_op(ifindex, w, false)),
        }
    }
    // enforcer's own kinds of filter in a slot nobody wants any more; others stay.
    for i in installed {
        let ours = matches!(i, Filter::Classify { .. } | Filter::Redirect { .. });
        let wanted_slot = wanted
            .iter()
            .any(|w| w.parent() == i.parent() && w.prio() == i.prio());
        if ours && !wanted_slot {
            ops.push(TcOp::DeleteFilter {
                ifindex,
                parent: i.parent(),
                prio: i.prio(),
            });
        }
    }
}

/// The operations that turn `installed` into `wanted` on interface `ifindex`. `wanted =
/// None` removes what enforcer installed (its HTB root; its ingress qdisc when
/// `owns_ingress`).
pub fn plan(
    ifindex: u32,
    installed: &InterfaceTc,
    wanted: Option<&InterfaceTc>,
    owns_ingress: bool,
) -> Plan {
    let mut out = Plan::default();
    let ops = &mut out.ops;
    let Some(wanted) = wanted else {
        if matches!(installed.root, RootQdisc::Htb { .. }) {
            ops.push(TcOp::DeleteRoot { ifindex });
        }
        if installed.ingress && owns_ingress {
            ops.push(TcOp::DeleteIngress { ifindex });
        }
        return out;
    };
    let egress = |f: &&Filter| f.parent() != INGRESS_HANDLE;
    let ingress = |f: &&Filter| f.parent() == INGRESS_HANDLE;
    let wanted_egress: Vec<Filter> = wanted.filters.iter().filter(egress).cloned().collect();
    let wanted_ingress: Vec<Filter> = wanted.filters.iter().filter(ingress).cloned().collect();

    // Egress: the root qdisc, its classes, its filters.
    match (&installed.root, &wanted.root) {
        (RootQdisc::Foreign { qdisc, handle }, _) => out.conflicts.push(Conflict::ForeignRoot {
            qdisc: qdisc.clone(),
            handle: *handle,
        }),
        (
            RootQdisc::Htb {
                default_minor: have,
            },
            RootQdisc::Htb {
                default_minor: want,
            },
        ) if have == want => {
            let installed_egress: Vec<Filter> =
                installed.filters.iter().filter(egress).cloned().collect();
            class_ops(ifindex, &installed.classes, &wanted.classes, ops);
            filter_ops(ifindex, &installed_egress, &wanted_egress, ops);
        }
        (have, RootQdisc::Htb { default_minor }) => {
            // HTB has no change operation for its root: a different default class means a
            // fresh hierarchy.
            if matches!(have, RootQdisc::Htb { .. }) {
                ops.push(TcOp::DeleteRoot { ifindex });
            }
            ops.push(TcOp::ReplaceRoot {
                ifindex,
                default_minor: *default_minor,
            });
            class_ops(ifindex, &[], &wanted.classes, ops);
            filter_ops(ifindex, &[], &wanted_egress, ops);
        }
        (RootQdisc::Htb { .. }, _) => ops.push(TcOp::DeleteRoot { ifindex }),
        _ => {}
    }

    // Ingress: the qdisc and its redirect.
    let installed_ingress: Vec<Filter> =
        installed.filters.iter().filter(ingress).cloned().collect();
    let foreign_ingress = installed_ingress
        .iter()
        .any(|f| matches!(f, Filter::Other { .. }));
    match (installed.ingress, wanted.ingress) {
        (true, true) if foreign_ingress && !owns_ingress => {
            out.conflicts.push(Conflict::ForeignIngress)
        }
        (true, true) => filter_ops(ifindex, &installed_ingress, &wanted_ingress, ops),
        (false, true) => {
            ops.push(TcOp::AddIngress { ifindex });
            filter_ops(ifindex, &[], &wanted_ingress, ops);
        }
        (true, false) if owns_ingress => ops.push(TcOp::DeleteIngress { ifindex }),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GBIT: u64 = 125_000_000;

    fn bond_shape(offline_gbit: f64) -> BondShape {
        BondShape {
            capacity: 20 * GBIT,
            host_limit: 10 * GBIT,
            offline_limit: (offline_gbit * GBIT as f64) as u64,
        }
    }

    #[test]
    fn bond_classes_add_up_to_the_link_and_cap_the_host() {
        let tc = bond(&bond_shape(2.0), 7);
        let rate = |minor| {
            let c = tc
                .classes
                .iter()
                .find(|c| c.classid == classid(minor))
                .unwrap();
            (c.rate, c.ceil)
        };
        assert_eq!(rate(CLASS_LINK), (20 * GBIT, 20 * GBIT));
        assert_eq!(
            rate(CLASS_HOST),
            (GBIT, 10 * GBIT),
            "host capped at 10 Gbit/s"
        );
        assert_eq!(
            rate(CLASS_OFFLINE),
            (2 * GBIT, 2 * GBIT),
            "offline hard-capped"
        );
        assert_eq!(
            rate(CLASS_ONLINE),
            (17 * GBIT, 20 * GBIT),
            "online may use the link"
        );
        assert_eq!(
            tc.root,
            RootQdisc::Htb {
                default_minor: CLASS_HOST
            }
        );
    }

    #[test]
    fn a_fresh_interface_gets_root_then_classes_then_filter() {
        let wanted = bond(&bond_shape(2.0), 7);
        let p = plan(5, &InterfaceTc::default(), Some(&wanted), false);
        assert!(p.conflicts.is_empty());
        assert!(matches!(
            p.ops[0],
            TcOp::ReplaceRoot {
                ifindex: 5,
                default_minor: CLASS_HOST
            }
        ));
        assert!(
            matches!(p.ops[1], TcOp::AddClass { class, .. } if class.classid == classid(CLASS_LINK))
        );
        assert_eq!(
            p.ops
                .iter()
                .filter(|o| matches!(o, TcOp::AddClass { .. }))
                .count(),
            4
        );
        assert!(matches!(
            p.ops.last(),
            Some(TcOp::SetClassifier { replace: false, .. })
        ));
    }

    #[test]
    fn an_interface_that_matches_needs_nothing() {
        let wanted = bond(&bond_shape(2.0), 7);
        assert_eq!(plan(5, &wanted, Some(&wanted), true), Plan::default());
        let sub = shaped(12_500_000, Some(9));
        assert_eq!(plan(6, &sub, Some(&sub), true), Plan::default());
    }

    #[test]
    fn a_new_offline_limit_changes_one_class_in_place() {
        let installed = bond(&bond_shape(2.0), 7);
        let wanted = bond(&bond_shape(1.0), 7);
        let p = plan(5, &installed, Some(&wanted), true);
        let changed: Vec<u32> = p
            .ops
            .iter()
            .map(|o| match o {
                TcOp::ChangeClass { class, .. } => class.classid,
                other => panic!("only class changes expected, got {other:?}"),
            })
            .collect();
        // Offline shrinks, online's guarantee grows by as much.
        assert_eq!(changed, vec![classid(CLASS_ONLINE), classid(CLASS_OFFLINE)]);
    }

    #[test]
    fn a_restarted_daemon_points_the_filter_at_its_new_program() {
        let installed = bond(&bond_shape(2.0), 7);
        let wanted = bond(&bond_shape(2.0), 8);
        let p = plan(5, &installed, Some(&wanted), true);
        assert_eq!(p.ops.len(), 1);
        assert!(matches!(
            p.ops[0],
            TcOp::SetClassifier { replace: true, .. }
        ));
    }

    #[test]
    fn a_foreign_root_is_never_touched() {
        let installed = InterfaceTc {
            root: RootQdisc::Foreign {
                qdisc: "tbf".into(),
                handle: 0x1_0000,
            },
            ..Default::default()
        };
        let p = plan(5, &installed, Some(&bond(&bond_shape(2.0), 7)), false);
        assert!(p.ops.is_empty());
        assert_eq!(p.conflicts.len(), 1);
        assert!(
            plan(5, &installed, None, false).ops.is_empty(),
            "removal leaves it too"
        );
    }

    #[test]
    fn a_foreign_ingress_is_left_alone_but_egress_still_shaped() {
        let installed = InterfaceTc {
            ingress: true,
            filters: vec![Filter::Other {
                parent: INGRESS_HANDLE,
                prio: 5,
                handle: 1,
                filter: "flower".into(),
            }],
            ..Default::default()
        };
        let p = plan(6, &installed, Some(&shaped(1_000_000, Some(9))), false);
        assert_eq!(p.conflicts, vec![Conflict::ForeignIngress]);
        assert!(matches!(p.ops[0], TcOp::ReplaceRoot { .. }));
        assert!(
            !p.ops
                .iter()
                .any(|o| matches!(o, TcOp::AddIngress { .. } | TcOp::AddRedirect { .. }))
        );
    }

    #[test]
    fn a_subinterface_gets_egress_class_and_ingress_redirect() {
        let p = plan(
            6,
            &InterfaceTc::default(),
            Some(&shaped(12_500_000, Some(9))),
            false,
        );
        let kinds: Vec<&str> = p
            .ops
            .iter()
            .map(|o| match o {
                TcOp::ReplaceRoot { .. } => "root",
                TcOp::AddClass { .. } => "class",
                TcOp::AddIngress { .. } => "ingress",
                TcOp::AddRedirect {
                    target_ifindex: 9, ..
                } => "redirect",
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(kinds, ["root", "class", "ingress", "redirect"]);
    }

    #[test]
    fn a_redirect_to_a_recreated_ifb_is_replaced() {
        let p = plan(
            6,
            &shaped(1_000_000, Some(9)),
            Some(&shaped(1_000_000, Some(11))),
            true,
        );
        assert!(matches!(
            p.ops[0],
            TcOp::DeleteFilter {
                prio: FILTER_PRIO,
                ..
            }
        ));
        assert!(matches!(
            p.ops[1],
            TcOp::AddRedirect {
                target_ifindex: 11,
                ..
            }
        ));
    }

    #[test]
    fn removal_takes_exactly_what_enforcer_owns() {
        let installed = shaped(1_000_000, Some(9));
        let ops = plan(6, &installed, None, true).ops;
        assert_eq!(
            ops,
            vec![
                TcOp::DeleteRoot { ifindex: 6 },
                TcOp::DeleteIngress { ifindex: 6 }
            ]
        );
        // An ingress qdisc enforcer did not create stays.
        let ops = plan(6, &installed, None, false).ops;
        assert_eq!(ops, vec![TcOp::DeleteRoot { ifindex: 6 }]);
        // A kernel default root is nothing to remove.
        assert!(plan(6, &InterfaceTc::default(), None, true).ops.is_empty());
    }

    #[test]
    fn a_changed_default_class_rebuilds_the_root() {
        let installed = shaped(1_000_000, None);
        let mut wanted = installed.clone();
        wanted.root = RootQdisc::Htb { default_minor: 0x2 };
        let ops = plan(6, &installed, Some(&wanted), true).ops;
        assert!(matches!(ops[0], TcOp::DeleteRoot { .. }));
        assert!(matches!(
            ops[1],
            TcOp::ReplaceRoot {
                default_minor: 0x2,
                ..
            }
        ));
    }
}

//! The tc reconciler as a library against the real kernel: a fresh topology is programmed,
//! a second pass changes nothing, removal leaves exactly what was there before.

use enforcer::{
    actuators::tc::reconcile::{Limits, Mode, Reconciler, Topology},
    model::{Class, netns::Namespace},
    policy::shaping::BondShape,
};
use enforcer_tests::{net::NetTopology, require_root};

fn namespaces(t: &NetTopology, offline: &[bool]) -> Vec<Namespace> {
    t.pods
        .iter()
        .zip(offline)
        .map(|(p, &off)| Namespace {
            inode: enforcer::model::netns::inode(
                &std::path::Path::new("/run/netns").join(p.ns.name()),
            )
            .unwrap(),
            path: std::path::Path::new("/run/netns").join(p.ns.name()),
            owner: format!("pod-{}", p.dev),
            class: if off { Class::Offline } else { Class::Online },
            priority: None,
            processes: 1,
        })
        .collect()
}

#[test]
fn reconcile_programs_then_changes_nothing_then_removes_exactly_its_own() {
    require_root();
    let t = NetTopology::new(40, &["mvoff0", "mvon0"], &["mvhost0"]);
    let before = NetTopology::tc_state(&t.host);
    let mut r = Reconciler::new(
        Topology {
            interface: "bond0".into(),
            host_netns: t.host_path(),
            offline_interfaces: None,
        },
        None,
    )
    .unwrap();
    let ns = namespaces(&t, &[true, false]);
    let limits = Limits {
        bond: BondShape {
            capacity: 125_000_000,
            host_limit: 62_500_000,
            offline_limit: 12_500_000,
        },
        offline_ingress: 12_500_000,
    };
    let s = r.survey(&ns, &limits, 0, Mode::Shape);
    assert!(s.bond_present, "{s:?}");
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    println!("{}", serde_json::to_string_pretty(&s).unwrap());
    let applied = r.apply(&s, None, &|_| true);
    println!("{applied:?}");
    assert!(
        applied.failures.iter().all(|f| f.contains("classifier")),
        "{:?}",
        applied.failures
    );
    let s2 = r.survey(&ns, &limits, 0, Mode::Shape);
    let pending: Vec<_> = s2
        .interfaces
        .iter()
        .filter(|i| !i.changes.is_empty())
        .map(|i| (&i.name, &i.changes))
        .collect();
    println!("{pending:?}");
    println!("{}", NetTopology::tc_state(&t.host));
    println!("{}", NetTopology::tc_state(&t.pods[0].ns));
    r.discard();
    let s3 = r.survey(&ns, &limits, 0, Mode::RemoveAll);
    let applied = r.apply(&s3, None, &|_| true);
    println!("{applied:?}");
    assert_eq!(NetTopology::tc_state(&t.host), before);
}

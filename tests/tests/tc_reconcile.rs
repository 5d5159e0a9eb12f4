//! The tc reconciler as a library against the real kernel, through interface churn: a
//! subinterface appearing, being renamed (still offline, or no longer), disappearing, and
//! the bond itself disappearing. Each pass changes only what differs; a second pass
//! changes nothing; what enforcer created and no longer needs is removed.

use std::{os::fd::AsRawFd, process::Command};

use enforcer::{
    actuators::tc::reconcile::{Limits, Mode, Reconciler, Survey, Topology},
    policy::shaping::BondShape,
    sampling::programs::{ProgramOptions, Programs},
};
use enforcer_common::CgroupMode;
use enforcer_tests::{TempDir, cgroup::mount_point, net::NetTopology, netns::Netns, require_root};

const LIMITS: Limits = Limits {
    bond: BondShape {
        capacity: 125_000_000,
        host_limit: 62_500_000,
        offline_limit: 12_500_000,
    },
    offline_ingress: 12_500_000,
};

struct Harness {
    reconciler: Reconciler,
    programs: Programs,
}

impl Harness {
    fn pass(&mut self) -> Survey {
        let id = self.programs.classifier_id().unwrap();
        let survey = self.reconciler.survey(&[], &LIMITS, id, Mode::Shape);
        assert!(survey.errors.is_empty(), "{:?}", survey.errors);
        let fd = self.programs.classifier_fd().map(|f| f.as_raw_fd());
        let applied = self.reconciler.apply(&survey, fd, &|_| true);
        assert!(applied.failures.is_empty(), "{:?}", applied.failures);
        survey
    }

    /// Interfaces with pending changes in a fresh survey (none means in sync).
    fn pending(&mut self) -> Vec<(String, Vec<String>)> {
        let id = self.programs.classifier_id().unwrap();
        let s = self.reconciler.survey(&[], &LIMITS, id, Mode::Shape);
        self.reconciler.discard();
        s.interfaces
            .into_iter()
            .filter(|i| !i.changes.is_empty())
            .map(|i| (i.name, i.changes))
            .collect()
    }
}

fn ifindex(ns: &Netns, dev: &str) -> u64 {
    let out = Command::new("ip")
        .args(["-n", ns.name(), "-j", "link", "show", "dev", dev])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["ifindex"].as_u64().unwrap()
}

fn links(ns: &Netns) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", ns.name(), "-j", "link", "show"])
        .output()
        .unwrap();
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    v.iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect()
}

fn root_kind(ns: &Netns, dev: &str) -> String {
    NetTopology::qdiscs(ns)
        .into_iter()
        .find(|q| q["dev"] == dev && q["root"] == true)
        .map(|q| q["kind"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn reconcile_follows_interfaces_appearing_renamed_and_disappearing() {
    require_root();
    let t = NetTopology::new(45, &[], &["mvp0", "mvp1", "mvx0"]);
    let state = TempDir::new("enforcer-tc-state");
    let topology = Topology {
        interface: "bond0".into(),
        host_netns: t.host_path(),
        offline_interfaces: Some(regex::Regex::new("^mvp").unwrap()),
    };
    let programs = Programs::load(&ProgramOptions {
        cpu_mode: CgroupMode::V1Cpu,
        memory_mode: CgroupMode::V1Cpu,
        cgroup_map_entries: 16_384,
        network: Some(mount_point("unified").expect("cgroup2")),
    })
    .expect("load programs");
    let state_file = state.path().join("network.json");
    let mut h = Harness {
        reconciler: Reconciler::new(topology.clone(), Some(state_file.clone())).unwrap(),
        programs,
    };

    // The bond and both offline subinterfaces, with their IFBs; mvx0 is not offline.
    h.pass();
    let ifb = |dev: &str| format!("eifb{}", ifindex(&t.host, dev));
    let (ifb0, ifb1) = (ifb("mvp0"), ifb("mvp1"));
    for dev in ["bond0", "mvp0", "mvp1", ifb0.as_str(), ifb1.as_str()] {
        assert_eq!(root_kind(&t.host, dev), "htb", "{dev}");
    }
    assert_eq!(root_kind(&t.host, "mvx0"), "noqueue");
    assert_eq!(h.pending(), vec![], "a second pass has nothing to do");

    // A restarted reconciler adopts its own objects from the state file: nothing to do.
    let recorded = std::fs::read_to_string(&state_file).expect("state recorded");
    assert!(recorded.contains(&ifb0), "{recorded}");
    h.reconciler = Reconciler::new(topology, Some(state_file.clone())).unwrap();
    assert_eq!(h.pending(), vec![]);

    // Renamed but still offline: tracked by ifindex, nothing to do.
    t.host.ip(&["link", "set", "mvp1", "name", "mvp9"]);
    assert_eq!(h.pending(), vec![]);

    // Renamed out of the pattern: released, its IFB deleted.
    t.host.ip(&["link", "set", "mvp0", "name", "mvq0"]);
    h.pass();
    assert_eq!(root_kind(&t.host, "mvq0"), "noqueue");
    assert!(
        !NetTopology::qdiscs(&t.host)
            .iter()
            .any(|q| q["dev"] == "mvq0" && q["kind"] == "ingress")
    );
    assert!(!links(&t.host).contains(&ifb0), "{:?}", links(&t.host));

    // A new subinterface appears: programmed on the next pass. The offline share is split
    // between two subinterfaces now, so the existing one (and its IFB) only get their class
    // changed in place.
    t.host.ip(&[
        "link", "add", "link", "bond0", "name", "mvp2", "type", "macvlan", "mode", "bridge",
    ]);
    t.host.ip(&["link", "set", "mvp2", "up"]);
    let pending = h.pending();
    let ifb2 = ifb("mvp2");
    let created: Vec<&str> = pending
        .iter()
        .filter(|(_, c)| !c.iter().all(|c| c.starts_with("tc class change")))
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(created, vec![ifb2.as_str(), "mvp2"], "{pending:?}");
    for (name, changes) in pending.iter().filter(|(n, _)| *n == "mvp9" || *n == ifb1) {
        assert_eq!(changes.len(), 1, "{name}: {changes:?}");
        assert!(
            changes[0].contains("rate 50000000bit"),
            "{name}: {changes:?}"
        );
    }
    h.pass();
    assert_eq!(root_kind(&t.host, &ifb2), "htb");

    // A subinterface disappears: its IFB goes with it, and the record.
    t.host.ip(&["link", "del", "mvp9"]);
    h.pass();
    assert!(!links(&t.host).contains(&ifb1));
    assert!(
        !std::fs::read_to_string(&state_file)
            .unwrap()
            .contains(&ifb1)
    );

    // The bond disappears (its macvlans with it): the remaining IFB is removed.
    t.host.ip(&["link", "del", "bond0"]);
    let s = h.pass();
    assert!(!s.bond_present);
    assert!(
        !links(&t.host).iter().any(|l| l.starts_with("eifb")),
        "{:?}",
        links(&t.host)
    );
    assert_eq!(root_kind(&t.host, "mvx0"), "", "mvx0 went with the bond");
}

//! tc as the real daemon programs it, in namespaces this test makes: `bond0` (a veth) with
//! macvlan subinterfaces moved into pod namespaces, pods' processes in test cgroups the
//! configuration classifies as offline or online. `tc` and `ip` read back what the daemon
//! installed; restarts, dry runs and shutdown leave exactly what they should.

use std::{process::Command, time::Duration};

use enforcer_tests::{
    daemon::{Daemon, metric_value},
    net::NetTopology,
    netns::Netns,
    pods::{CoLocated, SMALL_LINK, class_line, has_link, ifb_of, root_qdisc, wait_until},
    require_root,
};

#[test]
fn the_daemon_programs_bond_and_offline_subinterfaces_reconciles_and_cleans_up() {
    require_root();
    let node = CoLocated::new(41, true);
    let t = &node.t;
    // An operator's qdisc on another interface, which enforcer must never touch.
    t.host.ip(&[
        "link", "add", "other0", "type", "veth", "peer", "name", "other1",
    ]);
    t.host.ip(&["link", "set", "other0", "up"]);
    NetTopology::tc(
        &t.host,
        &[
            "qdisc", "add", "dev", "other0", "root", "handle", "5:", "tbf", "rate", "1mbit",
            "burst", "10k", "latency", "50ms",
        ],
    );
    let untouched = NetTopology::tc(&t.host, &["qdisc", "show", "dev", "other0"]);

    // The name pattern matches the online pod's macvlan too: it must not make it offline.
    let daemon = Daemon::start(
        "",
        &node.config(&format!(
            "{SMALL_LINK}policy = \"static\"\noffline_limit = \"100mbit\"\noffline_interfaces = '^mv'"
        )),
    );

    let (off_pod, on_pod) = (&t.pods[0], &t.pods[1]);
    let ifb = ifb_of(off_pod);
    let programmed = wait_until(Duration::from_secs(10), || {
        root_qdisc(&t.host, "bond0")["kind"] == "htb"
            && has_link(&off_pod.ns, &ifb)
            && root_qdisc(&off_pod.ns, &ifb)["kind"] == "htb"
    });
    assert!(programmed, "not programmed:\n{}", daemon.log());

    // bond0: HTB ef00: (default: host), link / online / host / offline classes, the
    // cgroup classifier.
    let bond = root_qdisc(&t.host, "bond0");
    assert_eq!(
        (bond["handle"].as_str(), bond["options"]["default"].as_str()),
        (Some("ef00:"), Some("0x20")),
        "{bond}"
    );
    let link = class_line(&t.host, "bond0", "ef00:1");
    assert!(link.contains("rate 1Gbit ceil 1Gbit"), "{link}");
    let online = class_line(&t.host, "bond0", "ef00:10");
    assert!(
        online.contains("parent ef00:1 prio 0") && online.contains("ceil 1Gbit"),
        "{online}"
    );
    let host = class_line(&t.host, "bond0", "ef00:20");
    assert!(
        host.contains("prio 1") && host.contains("ceil 500Mbit"),
        "{host}"
    );
    let offline = class_line(&t.host, "bond0", "ef00:30");
    assert!(
        offline.contains("prio 2") && offline.contains("rate 100Mbit ceil 100Mbit"),
        "{offline}"
    );
    let filters: serde_json::Value = serde_json::from_str(&NetTopology::tc(
        &t.host,
        &["-j", "filter", "show", "dev", "bond0", "parent", "ef00:"],
    ))
    .unwrap();
    let bpf = filters
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "bpf" && f["options"]["handle"].is_string())
        .unwrap_or_else(|| panic!("no bpf filter: {filters}"));
    assert!(
        bpf["options"]["bpf_name"]
            .as_str()
            .is_some_and(|n| n.contains("net_classify"))
            || bpf.to_string().contains("enforcer_classify"),
        "{bpf}"
    );
    assert!(
        bpf["options"]["direct-action"].is_null(),
        "not direct-action: {bpf}"
    );

    // The offline pod's macvlan: egress class at the offline limit, ingress redirected to
    // its IFB shaped the same.
    let mv = root_qdisc(&off_pod.ns, "mvoff0");
    assert_eq!(mv["kind"], "htb", "{mv}");
    assert!(class_line(&off_pod.ns, "mvoff0", "ef00:1").contains("rate 100Mbit ceil 100Mbit"));
    let qdiscs = NetTopology::qdiscs(&off_pod.ns);
    assert!(
        qdiscs
            .iter()
            .any(|q| q["dev"] == "mvoff0" && q["kind"] == "ingress"),
        "{qdiscs:?}"
    );
    let redirect = NetTopology::tc(&off_pod.ns, &["filter", "show", "dev", "mvoff0", "ingress"]);
    assert!(
        redirect.contains(&format!("Egress Redirect to device {ifb}")),
        "{redirect}"
    );
    assert!(class_line(&off_pod.ns, &ifb, "ef00:1").contains("rate 100Mbit ceil 100Mbit"));
    // The online pod's macvlan is not enforcer's business, whatever its name.
    assert_eq!(root_qdisc(&on_pod.ns, "mvon0")["kind"], "noqueue");
    assert!(
        !NetTopology::qdiscs(&on_pod.ns)
            .iter()
            .any(|q| q["kind"] == "ingress")
    );

    // Reconcile, not reapply: later passes change nothing.
    let before: Vec<String> = [&t.host, &off_pod.ns, &on_pod.ns]
        .iter()
        .map(|n| NetTopology::tc_state(n))
        .collect();
    let changes =
        |d: &Daemon| metric_value(&d.scrape(), "enforcer_tc_changes_total").unwrap_or(-1.0);
    let changes_before = changes(&daemon);
    std::thread::sleep(Duration::from_millis(2500));
    let after: Vec<String> = [&t.host, &off_pod.ns, &on_pod.ns]
        .iter()
        .map(|n| NetTopology::tc_state(n))
        .collect();
    assert_eq!(before, after, "a pass changed what was already right");
    assert_eq!(
        changes(&daemon),
        changes_before,
        "{:#?}",
        daemon.journal().iter().rev().take(2).collect::<Vec<_>>()
    );
    assert!(metric_value(&daemon.scrape(), "enforcer_tc_passes_total").unwrap() >= 2.0);
    let dry = daemon.cli(&["tc", "apply", "--dry-run", "--output", "json"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    let pending: usize = report["survey"]["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["changes"].as_array().unwrap().len())
        .sum();
    assert_eq!(pending, 0, "{report}");
    let show = daemon.cli(&["tc", "show"]);
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.contains("mvoff0") && show.contains("in sync"),
        "{show}"
    );

    // Stopping removes exactly what enforcer installed.
    let status = daemon.stop();
    assert!(status.is_some_and(|s| s.success()), "clean exit");
    assert_eq!(root_qdisc(&t.host, "bond0")["kind"], "noqueue");
    assert_eq!(root_qdisc(&off_pod.ns, "mvoff0")["kind"], "noqueue");
    assert!(
        !NetTopology::qdiscs(&off_pod.ns)
            .iter()
            .any(|q| q["kind"] == "ingress")
    );
    assert!(!has_link(&off_pod.ns, &ifb), "the IFB is gone");
    assert_eq!(
        NetTopology::tc(&t.host, &["qdisc", "show", "dev", "other0"]),
        untouched
    );
}

/// tc's view with program ids masked (a restarted daemon loads its classifier anew).
fn masked_state(ns: &Netns) -> String {
    let re = regex::Regex::new(r"\bid \d+|tag [0-9a-f]+").unwrap();
    re.replace_all(&NetTopology::tc_state(ns), "<prog>")
        .into_owned()
}

fn classifier_programs() -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show", "name", "net_classify"])
        .output()
        .expect("bpftool");
    let text = String::from_utf8_lossy(&out.stdout);
    // One JSON object per program (or an array, depending on the bpftool version).
    let values: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&text)
        .into_iter::<serde_json::Value>()
        .flatten()
        .flat_map(|v| match v {
            serde_json::Value::Array(a) => a,
            other => vec![other],
        })
        .collect();
    values.iter().filter_map(|v| v["id"].as_u64()).collect()
}

#[test]
fn a_daemon_killed_with_sigkill_converges_without_duplicates_and_keeps_its_journal() {
    require_root();
    let node = CoLocated::new(44, true);
    let t = &node.t;
    let mut daemon = Daemon::start(
        "",
        &node.config(&format!(
            "{SMALL_LINK}{}",
            "policy = \"static\"\noffline_limit = \"100mbit\""
        )),
    );
    let ifb = ifb_of(&t.pods[0]);
    assert!(
        wait_until(Duration::from_secs(10), || has_link(&t.pods[0].ns, &ifb)
            && root_qdisc(&t.pods[0].ns, &ifb)["kind"] == "htb"),
        "not programmed:\n{}",
        daemon.log()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let before: Vec<String> = [&t.host, &t.pods[0].ns]
        .iter()
        .map(|n| masked_state(n))
        .collect();
    let journal_before = daemon.journal();
    assert!(journal_before.iter().any(|e| e.action == "tc_reconcile"));
    let old_programs = classifier_programs();
    let filter_prog = || -> Option<u64> {
        let f = NetTopology::tc(
            &t.host,
            &["filter", "show", "dev", "bond0", "parent", "ef00:"],
        );
        let id = f.split(" id ").nth(1)?.split_whitespace().next()?;
        id.parse().ok()
    };
    let killed_prog = filter_prog().expect("the classifier filter names its program");

    daemon.kill9_and_restart();
    // The new daemon's first pass points the classifier at its own program and changes
    // nothing else.
    let new_programs = || {
        classifier_programs()
            .into_iter()
            .filter(|id| !old_programs.contains(id))
            .collect::<Vec<_>>()
    };
    let filter_on_new = || {
        let f = NetTopology::tc(
            &t.host,
            &["filter", "show", "dev", "bond0", "parent", "ef00:"],
        );
        new_programs()
            .iter()
            .any(|id| f.contains(&format!(" id {id} ")))
    };
    assert!(
        wait_until(Duration::from_secs(10), filter_on_new),
        "the classifier still runs the old program:\n{}",
        daemon.log()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let after: Vec<String> = [&t.host, &t.pods[0].ns]
        .iter()
        .map(|n| masked_state(n))
        .collect();
    assert_eq!(before, after, "a restart changed (or duplicated) tc state");
    assert_eq!(
        NetTopology::qdiscs(&t.pods[0].ns)
            .iter()
            .filter(|q| q["kind"] == "ingress")
            .count(),
        1
    );
    // The killed daemon's program is gone with its last reference (the replaced filter).
    assert!(
        wait_until(Duration::from_secs(5), || !classifier_programs()
            .contains(&killed_prog)),
        "program {killed_prog} still loaded: {:?}",
        classifier_programs()
    );
    assert_eq!(new_programs().len(), 1, "{:?}", classifier_programs());
    // The journal kept everything and goes on after it.
    let journal = daemon.journal();
    assert_eq!(&journal[..journal_before.len()], &journal_before[..]);
    let last_seq = journal_before.iter().map(|e| e.seq).max().unwrap();
    let replaced = journal[journal_before.len()..]
        .iter()
        .find(|e| e.action == "tc_reconcile" && e.reason.to_string().contains("filter replace"))
        .expect("the classifier replacement is journaled");
    assert!(replaced.seq > last_seq);
    assert!(daemon.stop().is_some_and(|s| s.success()));
    assert_eq!(root_qdisc(&t.host, "bond0")["kind"], "noqueue");
    assert!(!has_link(&t.pods[0].ns, &ifb));
}

#[test]
fn a_dry_run_daemon_shows_and_journals_the_shaping_but_installs_nothing() {
    require_root();
    let node = CoLocated::new(46, false);
    let t = &node.t;
    let before: Vec<String> = [&t.host, &t.pods[0].ns]
        .iter()
        .map(|n| NetTopology::tc_state(n))
        .collect();
    let daemon = Daemon::start_with_flags(
        "",
        &node.config(&format!(
            "{SMALL_LINK}{}",
            "policy = \"static\"\noffline_limit = \"100mbit\""
        )),
        &["--dry-run"],
    );
    assert!(
        wait_until(Duration::from_secs(10), || daemon.journal().iter().any(
            |e| e.action == "tc_reconcile"
                && e.outcome == enforcer::actuators::journal::Outcome::DryRun
                && e.reason.to_string().contains("mvoff0")
        )),
        "no dry-run pass journaled:\n{}",
        daemon.log()
    );
    let show = daemon.cli(&["tc", "apply", "--dry-run"]);
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.contains("tc qdisc replace dev bond0 root handle ef00: htb default 20"),
        "{show}"
    );
    assert!(show.contains("dry run:"), "{show}");
    let after: Vec<String> = [&t.host, &t.pods[0].ns]
        .iter()
        .map(|n| NetTopology::tc_state(n))
        .collect();
    assert_eq!(before, after, "a dry run installed something");
    assert!(daemon.stop().is_some_and(|s| s.success()));
    assert!(!daemon_left_anything(t));
}

fn daemon_left_anything(t: &NetTopology) -> bool {
    NetTopology::qdiscs(&t.host)
        .iter()
        .any(|q| q["kind"] == "htb")
        || t.pods.iter().any(|p| {
            NetTopology::qdiscs(&p.ns)
                .iter()
                .any(|q| q["kind"] == "htb" || q["kind"] == "ingress")
        })
}

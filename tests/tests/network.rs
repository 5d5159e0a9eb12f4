//! Network shaping by the real daemon, in namespaces this test makes: `bond0` (a veth) with
//! macvlan subinterfaces moved into pod namespaces, pods' processes in test cgroups that the
//! configuration classifies as offline or online. `tc` and `ip` read back what the daemon
//! installed; iperf3 measures what the shaping does. Every load is bounded in time.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use enforcer_tests::{
    cgroup::{TestCgroup, spawn_in},
    daemon::{Daemon, metric_value},
    net::{NetTopology, iperf3_client, iperf3_received_bps, iperf3_server},
    netns::Netns,
    process::ChildGuard,
    require_root, unique_name,
};

/// A pod's cgroup, in the cpu hierarchy (the one the daemon's index uses on this host) and
/// in cgroup2 (the one sockets are charged to), with the same name.
struct PodCgroup {
    name: String,
    cpu: TestCgroup,
    unified: TestCgroup,
}

impl PodCgroup {
    fn new(prefix: &str) -> PodCgroup {
        let name = unique_name(prefix);
        PodCgroup {
            cpu: TestCgroup::create("cpu", &name),
            unified: TestCgroup::create("unified", &name),
            name,
        }
    }

    /// `program args` inside `ns`, in this cgroup.
    fn spawn(&self, ns: &Netns, program: &str, args: &[&str]) -> ChildGuard {
        let mut c = ns.command(program);
        c.args(args);
        self.run(c)
    }

    /// `command`, started in this cgroup.
    fn run(&self, command: Command) -> ChildGuard {
        spawn_in(&[&self.cpu, &self.unified], command)
    }
}

/// Rules: `enf-off-*` cgroups are offline P3, `enf-on-*` online.
fn rules(off: &PodCgroup, on: &PodCgroup) -> String {
    format!(
        "[classify]\nappend_defaults = true\n\
         [[classify.rules]]\nname = \"test-offline\"\nmatch = '{}'\nclass = \"offline\"\npriority = \"P3\"\n\
         [[classify.rules]]\nname = \"test-online\"\nmatch = '{}'\nclass = \"online\"\n",
        off.name, on.name
    )
}

fn network_section(t: &NetTopology, extra: &str) -> String {
    format!(
        "[network]\nnetns = \"{}\"\ncapacity = \"1gbit\"\nhost_limit = \"500mbit\"\nceiling = \"1gbit\"\nfloor = \"10mbit\"\n{extra}\n",
        t.host_path().display()
    )
}

fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

fn root_qdisc(ns: &Netns, dev: &str) -> serde_json::Value {
    NetTopology::qdiscs(ns)
        .into_iter()
        .find(|q| q["dev"] == dev && q["root"] == true)
        .unwrap_or_else(|| panic!("no root qdisc on {dev}"))
}

fn has_link(ns: &Netns, dev: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns.name(), "link", "show", "dev", dev])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `class htb ef00:30 ... rate 100Mbit ceil 100Mbit` as `tc -d class show` prints it.
fn class_line(ns: &Netns, dev: &str, classid: &str) -> String {
    NetTopology::tc(ns, &["-d", "class", "show", "dev", dev])
        .lines()
        .find(|l| l.starts_with(&format!("class htb {classid} ")))
        .unwrap_or_else(|| panic!("no class {classid} on {dev}"))
        .to_string()
}

fn ifb_of(pod: &enforcer_tests::net::Pod) -> String {
    let out = Command::new("ip")
        .args(["-n", pod.ns.name(), "-j", "link", "show", "dev", &pod.dev])
        .output()
        .expect("ip link");
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
    format!("eifb{}", links[0]["ifindex"])
}

#[test]
fn the_daemon_programs_bond_and_offline_subinterfaces_reconciles_and_cleans_up() {
    require_root();
    let t = NetTopology::new(41, &["mvoff0", "mvon0"], &[]);
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

    let off = PodCgroup::new("enf-off");
    let on = PodCgroup::new("enf-on");
    let _off_pod = off.spawn(&t.pods[0].ns, "sleep", &["120"]);
    let _on_pod = on.spawn(&t.pods[1].ns, "sleep", &["120"]);
    // The name pattern matches the online pod's macvlan too: it must not make it offline.
    let daemon = Daemon::start(
        "",
        &format!(
            "{}\n{}",
            network_section(
                &t,
                "policy = \"static\"\noffline_limit = \"100mbit\"\noffline_interfaces = '^mv'"
            ),
            rules(&off, &on)
        ),
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

const MBIT: f64 = 1e6;

/// A rate as tc prints it (`401351Kbit`, `100Mbit`, `1Gbit`) in Mbit/s.
fn tc_rate_mbit(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = text.split_at(split);
    let scale = match unit {
        "bit" => 1e-6,
        "Kbit" => 1e-3,
        "Mbit" => 1.0,
        "Gbit" => 1e3,
        _ => return None,
    };
    n.parse::<f64>().ok().map(|v| v * scale)
}

/// The limit in force, bytes per second, from the metrics.
fn offline_limit(daemon: &Daemon) -> f64 {
    metric_value(
        &daemon.scrape(),
        r#"enforcer_network_offline_limit_bytes_per_second{direction="egress"}"#,
    )
    .unwrap_or(0.0)
}

/// Offline and online iperf3 floods at the same time for `seconds`: bits per second each
/// received.
fn floods(t: &NetTopology, off: &PodCgroup, on: &PodCgroup, seconds: u32) -> (f64, f64) {
    let _s1 = iperf3_server(&t.wire, 5201, seconds + 20);
    let _s2 = iperf3_server(&t.wire, 5202, seconds + 20);
    let offline = off.run(iperf3_client(
        &t.pods[0].ns,
        &t.wire_addr,
        5201,
        seconds,
        &[],
    ));
    let online = on.run(iperf3_client(
        &t.pods[1].ns,
        &t.wire_addr,
        5202,
        seconds,
        &[],
    ));
    (iperf3_received_bps(offline), iperf3_received_bps(online))
}

#[test]
fn shaping_is_real_and_follows_a_raised_limit() {
    require_root();
    let t = NetTopology::new(42, &["mvoff0", "mvon0"], &[]);
    let off = PodCgroup::new("enf-off");
    let on = PodCgroup::new("enf-on");
    let _off_pod = off.spawn(&t.pods[0].ns, "sleep", &["120"]);
    let _on_pod = on.spawn(&t.pods[1].ns, "sleep", &["120"]);
    let section = |limit: &str| {
        format!(
            "[network]\nnetns = \"{}\"\ncapacity = \"10gbit\"\nhost_limit = \"5gbit\"\nceiling = \"5gbit\"\npolicy = \"static\"\noffline_limit = \"{limit}\"\n{}",
            t.host_path().display(),
            rules(&off, &on)
        )
    };
    let daemon = Daemon::start("", &section("100mbit"));
    assert!(
        wait_until(Duration::from_secs(10), || (offline_limit(&daemon)
            - 12.5e6)
            .abs()
            < 1.0),
        "limit never in force:\n{}",
        daemon.log()
    );
    let (offline, online) = floods(&t, &off, &on, 5);
    eprintln!(
        "limit 100 Mbit/s: offline {:.1} Mbit/s, online {:.1} Mbit/s",
        offline / MBIT,
        online / MBIT
    );
    assert!(
        (90.0 * MBIT..=110.0 * MBIT).contains(&offline),
        "offline {offline} bit/s, wanted 100 Mbit/s ± 10%"
    );
    assert!(
        online > 5.0 * offline,
        "online starved: {online} bit/s next to offline {offline} bit/s"
    );

    // Raise the limit: a reloaded configuration, and the rate follows.
    std::fs::write(
        &daemon.config,
        std::fs::read_to_string(&daemon.config)
            .unwrap()
            .replace(&section("100mbit"), &section("300mbit")),
    )
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || (offline_limit(&daemon) - 37.5e6)
            .abs()
            < 1.0),
        "raised limit never in force:\n{}",
        daemon.log()
    );
    assert!(class_line(&t.host, "bond0", "ef00:30").contains("rate 300Mbit ceil 300Mbit"));
    assert!(class_line(&t.pods[0].ns, "mvoff0", "ef00:1").contains("rate 300Mbit ceil 300Mbit"));
    let (offline, online) = floods(&t, &off, &on, 5);
    eprintln!(
        "limit 300 Mbit/s: offline {:.1} Mbit/s, online {:.1} Mbit/s",
        offline / MBIT,
        online / MBIT
    );
    assert!(
        (270.0 * MBIT..=330.0 * MBIT).contains(&offline),
        "offline {offline} bit/s, wanted 300 Mbit/s ± 10%"
    );
    assert!(
        online > 2.0 * offline,
        "online starved: {online} bit/s next to offline {offline} bit/s"
    );
}

#[test]
fn an_online_burst_shrinks_the_offline_share_within_a_second() {
    require_root();
    let t = NetTopology::new(43, &["mvoff0", "mvon0"], &[]);
    let off = PodCgroup::new("enf-off");
    let on = PodCgroup::new("enf-on");
    let _off_pod = off.spawn(&t.pods[0].ns, "sleep", &["120"]);
    let _on_pod = on.spawn(&t.pods[1].ns, "sleep", &["120"]);
    // offline = 1 Gbit/s x 0.9 - online, between 50 Mbit/s and 900 Mbit/s.
    let daemon = Daemon::start(
        "",
        &format!(
            "[network]\nnetns = \"{}\"\ncapacity = \"1gbit\"\npolicy = \"dynamic\"\nwatermark = 0.9\nceiling = \"900mbit\"\nfloor = \"50mbit\"\nhost_limit = \"500mbit\"\n{}",
            t.host_path().display(),
            rules(&off, &on)
        ),
    );
    let idle = 900.0 * MBIT / 8.0;
    assert!(
        wait_until(Duration::from_secs(10), || (offline_limit(&daemon) - idle)
            .abs()
            < idle * 0.01),
        "idle limit never in force ({}):\n{}",
        offline_limit(&daemon),
        daemon.log()
    );
    let _server = iperf3_server(&t.wire, 5202, 30);
    // The clock starts when online bytes flow, as the online macvlan's own counter (an
    // observer independent of enforcer) shows them: not when iperf3 is launched.
    let tx_bytes = || -> u64 {
        let out = Command::new("ip")
            .args([
                "-n",
                t.pods[1].ns.name(),
                "-j",
                "-s",
                "link",
                "show",
                "dev",
                "mvon0",
            ])
            .output()
            .expect("ip -s link");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
        v[0]["stats64"]["tx"]["bytes"].as_u64().unwrap_or(0)
    };
    let base = tx_bytes();
    let online = on.run(iperf3_client(
        &t.pods[1].ns,
        &t.wire_addr,
        5202,
        4,
        &["-b", "500M"],
    ));
    assert!(
        wait_until(Duration::from_secs(5), || tx_bytes() > base + 1_000_000),
        "online traffic never started"
    );
    let started = Instant::now();
    let dropped = wait_until(Duration::from_secs(3), || {
        offline_limit(&daemon) < idle * 0.9
    });
    let elapsed = started.elapsed();
    eprintln!(
        "offline limit dropped below 90% of its idle value {elapsed:?} after online traffic started"
    );
    assert!(
        dropped && elapsed < Duration::from_secs(1),
        "limit still {} after {elapsed:?}",
        offline_limit(&daemon)
    );
    // tc itself shows the smaller offline class.
    let class = class_line(&t.host, "bond0", "ef00:30");
    let ceil_mbit = class
        .split_whitespace()
        .skip_while(|w| *w != "ceil")
        .nth(1)
        .and_then(tc_rate_mbit)
        .unwrap_or_else(|| panic!("no ceil in {class}"));
    assert!(ceil_mbit < 810.0, "{class}");
    // With the window full of online traffic: 900 - 500 = 400 Mbit/s (± 15%).
    assert!(
        wait_until(Duration::from_secs(3), || (offline_limit(&daemon) * 8.0
            / MBIT
            - 400.0)
            .abs()
            < 60.0),
        "limit {} Mbit/s with 500 Mbit/s online",
        offline_limit(&daemon) * 8.0 / MBIT
    );
    // The operator sees it too: `enforcer top` lists the online cgroup's traffic.
    let top = daemon.cli(&["top", "-n", "1"]);
    let top = String::from_utf8_lossy(&top.stdout);
    let row = top
        .lines()
        .skip_while(|l| !l.starts_with("network bond0"))
        .find(|l| l.ends_with(&on.name) && l.contains("online"))
        .unwrap_or_else(|| panic!("online cgroup not in top's network table:\n{top}"));
    assert!(row.contains("Mbit"), "{row}");
    let online_bps = iperf3_received_bps(online);
    eprintln!("online sent {:.0} Mbit/s", online_bps / MBIT);
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
    let t = NetTopology::new(44, &["mvoff0", "mvon0"], &[]);
    let off = PodCgroup::new("enf-off");
    let on = PodCgroup::new("enf-on");
    let _off_pod = off.spawn(&t.pods[0].ns, "sleep", &["120"]);
    let _on_pod = on.spawn(&t.pods[1].ns, "sleep", &["120"]);
    let mut daemon = Daemon::start(
        "",
        &format!(
            "{}\n{}",
            network_section(&t, "policy = \"static\"\noffline_limit = \"100mbit\""),
            rules(&off, &on)
        ),
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
    let t = NetTopology::new(46, &["mvoff0"], &[]);
    let off = PodCgroup::new("enf-off");
    let on = PodCgroup::new("enf-on");
    let _off_pod = off.spawn(&t.pods[0].ns, "sleep", &["120"]);
    let before: Vec<String> = [&t.host, &t.pods[0].ns]
        .iter()
        .map(|n| NetTopology::tc_state(n))
        .collect();
    let daemon = Daemon::start_with_flags(
        "",
        &format!(
            "{}\n{}",
            network_section(&t, "policy = \"static\"\noffline_limit = \"100mbit\""),
            rules(&off, &on)
        ),
        &["--dry-run"],
    );
    assert!(
        wait_until(Duration::from_secs(10), || daemon.journal().iter().any(
            |e| e.action == "tc_reconcile"
                && e.outcome == enforcer::surfaces::journal::Outcome::DryRun
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
    assert!(!daemon_left_anything(&t));
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

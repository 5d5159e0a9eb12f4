//! Pods, not cgroups: a private containerd runs real pod sandboxes through CRI with the
//! labels kubelet copies onto them (YuniKorn's `queue`, a debug namespace, a Burstable
//! online pod), in kubelet's cgroupfs-driver layout below this test's own cgroup. The daemon
//! reads them from the runtime: classification by pod, `enforcer pods`, pod names in
//! `cgroups`, `top` (on a pty) and the journal, victims debug > P3 > P1 that are pods, never
//! the online one; the runtime stopped and restarted; no runtime at all.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use enforcer::actuators::journal::{Entry, Outcome};
use enforcer_tests::{
    TempDir,
    cgroup_root::CgroupRoot,
    containerd::{Containerd, write_pause_image},
    cri::{Cri, PodGuard},
    daemon::{Daemon, metric_value},
    kubelet::{PodPlan, TestPod, plan_test_pod},
    require_root, wait_until,
};

const PAUSE_IMAGE: &str = "docker.io/library/enforcer-test-pause:busybox";
/// Idle until stopped (`sh` as PID 1 ignores SIGTERM unless it traps it).
const IDLE: &[&str] = &[
    "/bin/busybox",
    "sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 1; done",
];
/// One core's worth of CPU until stopped, for at most 60 s.
const HOG: &[&str] = &[
    "/bin/busybox",
    "sh",
    "-c",
    "trap 'exit 0' TERM; end=$(($(date +%s) + 60)); while [ $(date +%s) -lt $end ]; do :; done",
];

/// A node: the cgroup root kubelet would be given, a private containerd with the pause
/// image, and a CRI client. Dropped in reverse order of the fields' use: pods (held by the
/// test) first, then containerd, then the cgroups.
struct Node {
    cri: Cri,
    containerd: Containerd,
    root: CgroupRoot,
    tmp: TempDir,
}

impl Node {
    fn start() -> Node {
        Node::start_with_cni(None)
    }

    fn start_with_cni(plugin: Option<(&str, &str)>) -> Node {
        let tmp = TempDir::new("enforcer-cri-pods");
        let pause = write_pause_image(tmp.path(), PAUSE_IMAGE);
        let root = CgroupRoot::new();
        let containerd = Containerd::start_with_cni(PAUSE_IMAGE, plugin);
        containerd.import(&pause);
        let cri = Cri::connect(&containerd.socket).expect("CRI client");
        Node {
            cri,
            containerd,
            root,
            tmp,
        }
    }

    fn run(&self, pod: TestPod<'_>) -> RunningPod {
        let plan = plan_test_pod(&pod, &self.root.rel, &self.tmp.path().join("logs"))
            .expect("the pod's CRI requests");
        let guard = PodGuard::run(&self.cri, &plan.sandbox)
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e:#}\n{}", self.containerd.log()));
        let id = self
            .cri
            .create_container(&guard.id, &plan.container, &plan.sandbox)
            .unwrap_or_else(|e| panic!("CreateContainer: {e:#}\n{}", self.containerd.log()));
        self.cri
            .start_container(&id)
            .unwrap_or_else(|e| panic!("StartContainer: {e:#}\n{}", self.containerd.log()));
        RunningPod {
            full_name: format!("{}/{}", pod.namespace, pod.name),
            plan,
            guard,
        }
    }

    /// `[runtime]` for a daemon reading this node's containerd.
    fn runtime_section(&self) -> String {
        format!(
            "[runtime]\nsocket = \"{}\"\nrefresh_interval = \"300ms\"\ntimeout = \"250ms\"\n",
            self.containerd.socket.display()
        )
    }
}

struct RunningPod {
    full_name: String,
    plan: PodPlan,
    guard: PodGuard,
}

impl RunningPod {
    /// The processes in the pod's cgroup and below, in the cpu hierarchy.
    fn pids(&self) -> usize {
        let mount = enforcer_tests::cgroup::mount_point("cpu").expect("a cpu hierarchy");
        count_pids(&mount.join(&self.plan.cgroup_parent))
    }
}

fn count_pids(dir: &Path) -> usize {
    let own = std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let below: usize = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| count_pids(&e.path()))
        .sum();
    own + below
}

fn json(out: std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// The daemon's view of one pod (`enforcer pods --output json`).
fn pod_view(daemon: &Daemon, full_name: &str) -> Option<serde_json::Value> {
    let v = json(daemon.cli(&["pods", "--output", "json"]));
    v["pods"]
        .as_array()?
        .iter()
        .find(|p| {
            format!(
                "{}/{}",
                p["namespace"].as_str().unwrap_or(""),
                p["name"].as_str().unwrap_or("")
            ) == full_name
        })
        .cloned()
}

fn classified(daemon: &Daemon, pod: &RunningPod) -> (String, String, String) {
    let Some(p) = pod_view(daemon, &pod.full_name) else {
        return Default::default();
    };
    let s = |k: &str| p[k].as_str().unwrap_or("").to_string();
    (s("class"), s("priority"), s("rule"))
}

fn pods_of_the_spec(node: &Node, command: &'static [&'static str]) -> [RunningPod; 4] {
    [
        // A debug namespace: debug, whatever its queue says.
        node.run(TestPod {
            namespace: "debug-alice",
            name: "notebook",
            qos: "besteffort",
            labels: &[("queue", "root.P1")],
            image: PAUSE_IMAGE,
            command,
            own_network: false,
        }),
        node.run(TestPod {
            namespace: "spark",
            name: "spark-123-exec-1",
            qos: "besteffort",
            labels: &[
                ("queue", "root.P1"),
                ("spark-role", "executor"),
                ("spark-app-selector", "spark-123"),
            ],
            image: PAUSE_IMAGE,
            command,
            own_network: false,
        }),
        node.run(TestPod {
            namespace: "spark",
            name: "spark-456-exec-1",
            qos: "besteffort",
            labels: &[("queue", "root.P3"), ("spark-role", "executor")],
            image: PAUSE_IMAGE,
            command,
            own_network: false,
        }),
        node.run(TestPod {
            namespace: "web",
            name: "frontend",
            qos: "burstable",
            labels: &[("app", "frontend")],
            image: PAUSE_IMAGE,
            command,
            own_network: false,
        }),
    ]
}

#[test]
fn pods_are_classified_by_their_labels_and_named_everywhere() {
    require_root();
    let node = Node::start();
    let [debug, p1, p3, online] = pods_of_the_spec(&node, IDLE);
    let daemon = Daemon::start("", &node.runtime_section());
    let want = [
        (&debug, ("offline", "debug", "pod-debug-namespace")),
        (&p1, ("offline", "P1", "pod-besteffort")),
        (&p3, ("offline", "P3", "pod-besteffort")),
        (&online, ("online", "", "pod-burstable")),
    ];
    for (pod, (class, priority, rule)) in want {
        let want = (class.to_string(), priority.to_string(), rule.to_string());
        assert!(
            wait_until(Duration::from_secs(15), || classified(&daemon, pod) == want),
            "{}: {:?}, want {want:?}\n{}",
            pod.full_name,
            pod_view(&daemon, &pod.full_name),
            daemon.log()
        );
    }
    let view = pod_view(&daemon, &p1.full_name).unwrap();
    assert_eq!(view["uid"], p1.plan.uid.as_str());
    assert_eq!(view["qos"], "besteffort");
    assert_eq!(view["labels"]["spark-app-selector"], "spark-123");
    assert_eq!(view["containers"], serde_json::json!(["main"]));
    assert!(
        view["cgroup"]
            .as_str()
            .is_some_and(|c| c.ends_with(&p1.plan.cgroup_parent)),
        "{view:#}"
    );
    let runtime = &json(daemon.cli(&["pods", "--output", "json"]))["runtime"];
    assert_eq!(runtime["up"], true, "{runtime:#}");
    assert!(
        runtime["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("containerd")),
        "{runtime:#}"
    );
    // containerd 1.6 has no event stream: said once, polled.
    assert!(
        wait_until(Duration::from_secs(5), || daemon
            .log()
            .contains("no container event stream")),
        "{}",
        daemon.log()
    );
    assert_eq!(
        json(daemon.cli(&["pods", "--output", "json"]))["runtime"]["events"],
        false
    );

    // `cgroups` names the pod of the pod's cgroup and of its containers.
    let cgroups = json(daemon.cli(&["cgroups", "--output", "json"]));
    let of_p1: Vec<&serde_json::Value> = cgroups
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["path"]
                .as_str()
                .is_some_and(|p| p.contains(&format!("pod{}", p1.plan.uid)))
        })
        .collect();
    assert!(of_p1.len() >= 2, "the pod and its containers: {of_p1:#?}");
    for c in &of_p1 {
        assert_eq!(c["pod"], p1.full_name.as_str(), "{c:#}");
        assert_eq!(c["pod_uid"], p1.plan.uid.as_str(), "{c:#}");
        assert_eq!(
            (c["class"].as_str(), c["priority"].as_str()),
            (Some("offline"), Some("P1")),
            "{c:#}"
        );
    }
    assert!(of_p1.iter().any(|c| c["container"] == "main"), "{of_p1:#?}");
    // The text table of `pods`, and `top` on a pseudo-terminal, show pod names.
    let table = String::from_utf8(daemon.cli(&["pods"]).stdout).unwrap();
    for pod in [&debug, &p1, &p3, &online] {
        assert!(table.contains(&pod.full_name), "{table}");
    }
    assert!(table.contains("MEMORY") && table.contains("RX"), "{table}");
    // Each pod's memory is read from its cgroup when the view is asked for: its running
    // container is charged there.
    for pod in [&debug, &p1, &p3, &online] {
        let v = pod_view(&daemon, &pod.full_name).expect("the pod is listed");
        assert!(
            v["memory_bytes"].as_u64().is_some_and(|b| b > 0),
            "no memory for {}: {v:#}",
            pod.full_name
        );
    }
    let top = top_on_a_pty(&daemon);
    assert!(
        top.contains("spark/spark-123-exec-1"),
        "top shows no pod names:\n{top}"
    );
    let status = String::from_utf8(daemon.cli(&["status"]).stdout).unwrap();
    assert!(
        status.contains("pods: runtime") && status.contains("up, containerd"),
        "{status}"
    );
    let metrics = daemon.scrape();
    assert_eq!(metric_value(&metrics, "enforcer_runtime_up"), Some(1.0));
    assert_eq!(metric_value(&metrics, "enforcer_runtime_pods"), Some(4.0));
}

/// `enforcer top -n 1` run under `script` (util-linux): a real pseudo-terminal.
fn top_on_a_pty(daemon: &Daemon) -> String {
    let bin = enforcer_tests::daemon::enforcer_bin();
    let line = format!(
        "{} top -n 1 --rows 200 --socket {}",
        bin.display(),
        daemon.socket.display()
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("COLUMNS", "250")
        .output()
        .expect("script (util-linux)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const LADDER: &str = r#"
[ladder]
cpu_trigger = 0.45
cpu_recover = 0.30
sustain = "300ms"
throttle_after = "0s"
freeze_after = "1s"
evict_after = "2s"
evict_cooldown = "1s"
recover_hold = "1500ms"
throttle_cpu_share = 0.05
"#;

fn kills(journal: &[Entry]) -> Vec<Entry> {
    journal
        .iter()
        .filter(|e| e.action == "kill" && e.outcome == Outcome::Applied)
        .cloned()
        .collect()
}

#[test]
fn under_overload_the_victims_are_pods_debug_then_p3_then_p1_never_the_online_one() {
    require_root();
    let node = Node::start();
    let [debug, p1, p3, online] = pods_of_the_spec(&node, HOG);
    let daemon = Daemon::start("", &format!("{}{LADDER}", node.runtime_section()));
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(45), || kills(&daemon.journal()).len()
            >= 3),
        "three kills never came:\n{:#?}\n{}",
        daemon.journal(),
        daemon.log()
    );
    let kills = kills(&daemon.journal());
    let order: Vec<Option<&str>> = kills.iter().map(|e| e.pod.as_deref()).collect();
    assert_eq!(
        order[..3],
        [
            Some(debug.full_name.as_str()),
            Some(p3.full_name.as_str()),
            Some(p1.full_name.as_str())
        ],
        "{kills:#?}"
    );
    for (k, pod) in kills.iter().zip([&debug, &p3, &p1]) {
        assert!(
            k.target
                .as_deref()
                .is_some_and(|t| t.ends_with(&pod.plan.cgroup_parent)),
            "a kill's target is the pod's cgroup: {k:#?}"
        );
        assert_eq!(k.pod_uid.as_deref(), Some(pod.plan.uid.as_str()));
        assert!(k.rule.is_some(), "{k:#?}");
    }
    assert_eq!(
        kills
            .iter()
            .map(|k| k.priority.as_deref())
            .collect::<Vec<_>>()[..3],
        [Some("debug"), Some("P3"), Some("P1")]
    );
    // The killed pods are empty and their sandboxes no longer ready; the online one runs.
    for pod in [&debug, &p3, &p1] {
        assert!(
            wait_until(Duration::from_secs(10), || pod.pids() == 0),
            "{} still has {} processes",
            pod.full_name,
            pod.pids()
        );
        assert!(
            wait_until(Duration::from_secs(10), || node
                .cri
                .pod_sandbox_ready(&pod.guard.id)
                .is_ok_and(|ready| !ready)),
            "{}: CRI still reports its sandbox ready",
            pod.full_name
        );
    }
    assert!(online.pids() >= 2, "the online pod lost its processes");
    assert!(
        node.cri.pod_sandbox_ready(&online.guard.id).unwrap(),
        "the online pod's sandbox is not ready"
    );
    let journal = daemon.journal();
    assert!(
        !journal.iter().any(|e| e.outcome != Outcome::Refused
            && e.target
                .as_deref()
                .is_some_and(|t| t.contains(&online.plan.uid))),
        "an action on the online pod: {journal:#?}"
    );
    let explain = String::from_utf8(daemon.cli(&["explain"]).stdout).unwrap();
    assert!(explain.contains(&p1.full_name), "{explain}");
    eprintln!("three pods killed in {:?}", started.elapsed());

    // Billing: once kubelet has removed them, each killed pod's usage record says it was
    // killed, with the kill's journal sequence number.
    for (pod, kill) in [debug, p3, p1].into_iter().zip(&kills) {
        let RunningPod { plan, guard, .. } = pod;
        // The kernel's CPU time of the killed pod (its cgroup outlives the kill).
        let acct = enforcer_tests::cgroup::mount_point("cpuacct").expect("a cpuacct hierarchy");
        let kernel_s =
            std::fs::read_to_string(acct.join(&plan.cgroup_parent).join("cpuacct.usage"))
                .expect("cpuacct.usage")
                .trim()
                .parse::<f64>()
                .unwrap()
                / 1e9;
        drop(guard);
        enforcer_tests::cgroup_root::remove_pod_cgroup(&plan.cgroup_parent);
        let mut record = None;
        assert!(
            wait_until(Duration::from_secs(15), || {
                record = daemon.ledger().into_iter().rfind(|r| {
                    r.id == plan.uid && r.status != enforcer::model::usage::UsageStatus::Running
                });
                record.is_some()
            }),
            "no ended record of {}:\n{:#?}",
            plan.uid,
            daemon.ledger()
        );
        let record = record.unwrap();
        assert_eq!(
            (record.status, record.killed_seq),
            (enforcer::model::usage::UsageStatus::Killed, Some(kill.seq)),
            "{record:#?}"
        );
        assert!(
            kernel_s > 0.0 && (record.cpu_seconds - kernel_s).abs() <= kernel_s * 0.01,
            "the killed hog's CPU: {record:#?} vs the kernel's {kernel_s} s"
        );
    }
}

#[test]
fn the_runtime_stopped_keeps_the_pods_and_restarted_refreshes_them() {
    require_root();
    let mut node = Node::start();
    let p1 = node.run(TestPod {
        namespace: "spark",
        name: "spark-789-exec-1",
        qos: "besteffort",
        labels: &[("queue", "root.P1")],
        image: PAUSE_IMAGE,
        command: IDLE,
        own_network: false,
    });
    let daemon = Daemon::start("", &node.runtime_section());
    let want = (
        "offline".to_string(),
        "P1".to_string(),
        "pod-besteffort".to_string(),
    );
    assert!(
        wait_until(Duration::from_secs(15), || classified(&daemon, &p1) == want),
        "{:?}\n{}",
        pod_view(&daemon, &p1.full_name),
        daemon.log()
    );
    node.containerd.stop();
    assert!(
        wait_until(Duration::from_secs(10), || metric_value(
            &daemon.scrape(),
            "enforcer_runtime_up"
        ) == Some(0.0)),
        "the runtime is still reported up"
    );
    // A rescan of the tree meanwhile changes nothing: the last list is kept.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        classified(&daemon, &p1),
        want,
        "the classification was lost"
    );
    assert!(metric_value(&daemon.scrape(), "enforcer_runtime_errors_total").unwrap_or(0.0) >= 1.0);
    let warnings = daemon
        .log()
        .lines()
        .filter(|l| l.contains("keeping the last"))
        .count();
    assert_eq!(
        warnings,
        1,
        "one warning while it is down:\n{}",
        daemon.log()
    );

    node.containerd.restart();
    // The test's own client connected to the old process; kubelet reconnects too.
    node.cri = Cri::connect(&node.containerd.socket).expect("CRI client");
    // The CRI plugin answers "not initialized" for a moment after the socket is back.
    assert!(
        wait_until(Duration::from_secs(20), || node.cri.version().is_ok()),
        "CRI never ready after the restart"
    );
    let p2 = node.run(TestPod {
        namespace: "spark",
        name: "spark-789-exec-2",
        qos: "besteffort",
        labels: &[("queue", "root.P2")],
        image: PAUSE_IMAGE,
        command: IDLE,
        own_network: false,
    });
    let want2 = (
        "offline".to_string(),
        "P2".to_string(),
        "pod-besteffort".to_string(),
    );
    assert!(
        wait_until(Duration::from_secs(40), || classified(&daemon, &p2)
            == want2),
        "a pod started after the restart: {:?}\n{}",
        pod_view(&daemon, &p2.full_name),
        daemon.log()
    );
    assert_eq!(
        metric_value(&daemon.scrape(), "enforcer_runtime_up"),
        Some(1.0)
    );
    assert_eq!(classified(&daemon, &p1), want);
}

#[test]
fn without_a_runtime_socket_pods_are_classified_by_path_and_said_once() {
    require_root();
    let root = CgroupRoot::new();
    let uid = "0a1b2c3d-0000-4000-8000-000000000001";
    let pod = root.child("cpu", &format!("kubepods/besteffort/pod{uid}"));
    let tmp = TempDir::new("enforcer-no-runtime");
    let socket = tmp.path().join("containerd.sock");
    let daemon = Daemon::start(
        "",
        &format!("[runtime]\nsocket = \"{}\"\n", socket.display()),
    );
    let rel = format!("{}/kubepods/besteffort/pod{uid}", root.rel);
    assert!(pod.dir().exists());
    assert!(
        wait_until(Duration::from_secs(15), || {
            let cgroups = json(daemon.cli(&["cgroups", "--output", "json"]));
            cgroups.as_array().unwrap().iter().any(|c| {
                c["path"] == rel.as_str()
                    && c["class"] == "offline"
                    && c["priority"] == "P3"
                    && c["rule"] == "kubepods-besteffort"
                    && c.get("pod").is_none()
            })
        }),
        "the BestEffort cgroup is not offline P3 by its path"
    );
    std::thread::sleep(Duration::from_secs(1));
    let said = daemon
        .log()
        .lines()
        .filter(|l| l.contains("no container runtime socket"))
        .count();
    assert_eq!(said, 1, "{}", daemon.log());
    assert_eq!(
        metric_value(&daemon.scrape(), "enforcer_runtime_up"),
        Some(0.0)
    );
}

/// A CNI plugin for the test, as the macvlan plugin does it: a macvlan of `bond0` in the
/// test's node namespace `host`, moved into the pod's namespace as its interface, with one
/// address of the test's /24. DEL has nothing to do: the namespace's removal takes it.
fn macvlan_plugin(host: &str, net: u8) -> String {
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("ip (iproute2)");
    format!(
        r#"#!/bin/sh
case "$CNI_COMMAND" in
VERSION) echo '{{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0"]}}'; exit 0 ;;
ADD) ;;
*) exit 0 ;;
esac
cat >/dev/null
NS=$(basename "$CNI_NETNS")
DEV=mv$(echo "$CNI_CONTAINERID" | cut -c1-8)
{ip} -n {host} link add link bond0 name "$DEV" type macvlan mode bridge || exit 1
{ip} -n {host} link set "$DEV" netns "$NS" || exit 1
{ip} -n "$NS" link set "$DEV" name "$CNI_IFNAME" || exit 1
{ip} -n "$NS" addr add 10.213.{net}.21/24 dev "$CNI_IFNAME" || exit 1
{ip} -n "$NS" link set "$CNI_IFNAME" up
{ip} -n "$NS" link set lo up
printf '{{"cniVersion":"0.4.0","interfaces":[{{"name":"%s","sandbox":"%s"}}],"ips":[{{"version":"4","address":"10.213.{net}.21/24","interface":0}}]}}' "$CNI_IFNAME" "$CNI_NETNS"
"#
    )
}

/// The root qdisc's kind on `dev` inside the namespace of process `pid`, if any.
fn root_qdisc_kind(pid: i32, dev: &str) -> Option<String> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["tc", "-j", "qdisc", "show", "dev", dev])
        .output()
        .ok()?;
    let qdiscs: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    qdiscs
        .as_array()?
        .iter()
        .find(|q| q["root"] == true)
        .and_then(|q| q["kind"].as_str())
        .map(str::to_string)
}

/// An operator debugging an offline pod from the host (`nsenter -n -t PID`, a process of
/// the host's system cgroups inside the pod's namespace) does not lift its shaping: the
/// namespace is the sandbox's, so the pod's, whoever is in it.
#[test]
fn an_offline_pods_shaping_survives_a_process_entering_its_namespace() {
    require_root();
    const NET: u8 = 77;
    let topology = enforcer_tests::net::NetTopology::new(NET, &[], &[]);
    let plugin = macvlan_plugin(topology.host.name(), NET);
    let node = Node::start_with_cni(Some(("enforcer-test-macvlan", &plugin)));
    let pod = node.run(TestPod {
        namespace: "spark",
        name: "spark-net-exec-1",
        qos: "besteffort",
        labels: &[("queue", "root.P2")],
        image: PAUSE_IMAGE,
        command: IDLE,
        own_network: true,
    });
    let pid = node
        .cri
        .pod_sandbox_pid(&pod.guard.id)
        .expect("the sandbox's pid");
    let daemon = Daemon::start(
        "",
        &format!(
            "{}[network]\nnetns = \"{}\"\n{}",
            node.runtime_section(),
            topology.host_path().display(),
            enforcer_tests::pods::SMALL_LINK
        ),
    );
    assert!(
        wait_until(Duration::from_secs(20), || root_qdisc_kind(pid, "eth0")
            .as_deref()
            == Some("htb")),
        "the offline pod's interface was never shaped: {:?}\n{:#?}\n{}",
        root_qdisc_kind(pid, "eth0"),
        daemon.journal(),
        daemon.log()
    );
    // The operator enters the namespace from the host, in the test's (system) cgroup.
    let mut enter = Command::new("nsenter");
    enter
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["sleep", "30"]);
    let _debugger = enforcer_tests::process::ChildGuard::spawn(enter);
    // Several namespace scans and tc passes.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert_eq!(
            root_qdisc_kind(pid, "eth0").as_deref(),
            Some("htb"),
            "the shaping was lifted by a process entering the namespace:\n{:#?}",
            daemon.journal()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let journal = daemon.journal();
    assert!(
        !journal.iter().any(|e| e.outcome == Outcome::Refused),
        "{journal:#?}"
    );
}

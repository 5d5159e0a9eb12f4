//! The DaemonSet, run for real: `cargo xtask image` builds the image, a private containerd
//! imports it, and the pod of `deploy/daemonset.yaml` is started through CRI the way kubelet
//! starts it (everything about the pod read from the manifest: host namespaces, privileged,
//! args, env, resources, volumes). Then: the probes' paths and `/metrics` answer, the
//! daemon's programs are loaded and attached, its samples count a CPU hog on the host, and
//! the stop kubelet sends (StopContainer with the grace period: SIGTERM) ends it with exit
//! code 0 well within `terminationGracePeriodSeconds`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use enforcer_tests::{
    TempDir,
    alerting::workspace,
    cgroup::{cpu_hog, spawn_in},
    cgroup_root::CgroupRoot,
    containerd::{Containerd, archive_image_name, write_pause_image},
    cri::{Cri, PodGuard},
    daemon::{free_port, metric_value},
    image::build_image,
    kubelet::{Manifest, Node, plan_pod},
    require_root, unique_name, wait_until,
};

const PAUSE_IMAGE: &str = "docker.io/library/enforcer-test-pause:busybox";
const OFFLINE_P3: &str = r#"enforcer_cpu_seconds_total{class="offline",priority="P3"}"#;

/// What containerd makes of a short image reference (`enforcer:0.1.0`).
fn normalized(image: &str) -> String {
    let (first, rest) = image.split_once('/').unwrap_or(("", image));
    if first.contains('.') || first.contains(':') || first == "localhost" {
        image.to_string()
    } else if first.is_empty() {
        format!("docker.io/library/{rest}")
    } else {
        format!("docker.io/{image}")
    }
}

/// Ids of the loaded programs that are enforcer's CPU sampler (by name).
fn sampler_program_ids() -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .expect("bpftool (Debian bpftool: cargo xtask setup)");
    let progs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool json");
    progs
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            let name = p["name"].as_str().unwrap_or("");
            name == "sched_switch" || name.starts_with("cgroup_attach_t")
        })
        .filter_map(|p| p["id"].as_u64())
        .collect()
}

/// Program ids that have a BPF link (attached), from `bpftool link show`.
fn linked_program_ids() -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["-j", "link", "show"])
        .output()
        .expect("bpftool");
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool json");
    links
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["prog_id"].as_u64())
        .collect()
}

/// GET `path`: (status code, body), or None when nothing answers.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// The per-cgroup CPU series of the cgroup whose path ends with `suffix`.
fn cgroup_cpu_seconds(text: &str, suffix: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with("enforcer_cgroup_cpu_seconds_total{"))
        .find(|l| l.contains(&format!("{suffix}\",")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn the_daemonset_pod_runs_in_containerd_through_cri_and_stops_cleanly() {
    require_root();
    let started = Instant::now();
    let manifest_path = workspace().join("deploy/daemonset.yaml");
    let manifest = Manifest::read(&manifest_path).expect("deploy/daemonset.yaml");
    let container = manifest.container();

    // The image, built as the README says, and named as the manifest references it.
    let archive = build_image().archive;
    let name = archive_image_name(&archive).expect("the archive names its image");
    assert_eq!(
        name,
        normalized(&container.image),
        "deploy/daemonset.yaml references {} but cargo xtask image builds {name}",
        container.image
    );
    let image_built = started.elapsed();

    let tmp = TempDir::new("enforcer-daemonset");
    let pause = write_pause_image(tmp.path(), PAUSE_IMAGE);
    let containerd = Containerd::start(PAUSE_IMAGE);
    // Before the first RunPodSandbox: a missing sandbox image would be pulled.
    containerd.import(&pause);
    containerd.import(&archive);
    let cri = Cri::connect(&containerd.socket).expect("CRI client");
    let version = cri.version().expect("CRI Version");
    assert_eq!(version.runtime_name, "containerd", "{version:?}");
    assert!(
        cri.image_id(&container.image).unwrap().is_some(),
        "the CRI plugin does not see {} after the import",
        container.image
    );

    // The node. The manifest's host paths that would collide with the host (a daemon of the
    // host, another test) are given private directories: the control socket and state
    // (/run/enforcer) and the journal (/var/lib/enforcer). /sys/fs/cgroup, /sys/fs/bpf,
    // tracefs, BTF and /proc stay the host's, as on a node. The ConfigMap is the manifest's,
    // with one change: the metrics address, a free loopback port instead of 0.0.0.0:9977
    // (host network: 9977 may be taken by another daemon on this machine).
    let run_dir = tmp.path().join("host/run/enforcer");
    let journal_dir = tmp.path().join("host/var/lib/enforcer");
    let substitutes: BTreeMap<String, PathBuf> = [
        ("/run/enforcer".to_string(), run_dir.clone()),
        ("/var/lib/enforcer".to_string(), journal_dir.clone()),
        // The node's containerd is the private one: the daemon lists its own pod.
        (
            "/run/containerd".to_string(),
            containerd.dir.path().to_path_buf(),
        ),
    ]
    .into();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let edit = move |_cm: &str, key: &str, content: &str| -> String {
        if key != "enforcer.toml" {
            return content.to_string();
        }
        let mut config: toml::Table = toml::from_str(content).expect("the ConfigMap's TOML");
        config
            .entry("daemon")
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .unwrap()
            .insert("metrics_listen".into(), metrics.to_string().into());
        toml::to_string(&config).unwrap()
    };
    let cgroups = CgroupRoot::new();
    let kubelet_dir = tmp.path().join("kubelet");
    let node = Node {
        kubelet_dir: &kubelet_dir,
        cgroup_root: &cgroups.rel,
        host_path_substitutes: &substitutes,
        edit_config: &edit,
    };
    let plan = plan_pod(&manifest, &node).expect("the pod as kubelet would start it");

    let programs_before = sampler_program_ids();
    let t = Instant::now();
    let pod = PodGuard::run(&cri, &plan.sandbox).unwrap_or_else(|e| {
        panic!(
            "RunPodSandbox: {e:#}\ncontainerd log:\n{}",
            containerd.log()
        )
    });
    let id = cri
        .create_container(&pod.id, &plan.container, &plan.sandbox)
        .unwrap_or_else(|e| panic!("CreateContainer: {e:#}\n{}", containerd.log()));
    cri.start_container(&id)
        .unwrap_or_else(|e| panic!("StartContainer: {e:#}\n{}", containerd.log()));
    let pod_started = t.elapsed();
    let log = || std::fs::read_to_string(&plan.log_path).unwrap_or_default();
    let (status, info) = cri.container_status(&id).expect("ContainerStatus");
    let pid = info["pid"].as_i64().unwrap_or(0) as i32;
    assert!(
        pid > 0 && status.state == 1,
        "the container is not running ({status:?}):\n{}",
        log()
    );

    // The probes kubelet would run, at the paths the manifest gives them.
    let readiness = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("the manifest has an HTTP readiness probe");
    let liveness = container
        .liveness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("the manifest has an HTTP liveness probe");
    assert!(
        manifest.container_port(&readiness.port).is_some(),
        "readiness probe port {:?} names no container port",
        readiness.port
    );
    let ready = wait_until(Duration::from_secs(30), || {
        get(metrics, &readiness.path).is_some_and(|(code, _)| code == 200)
    });
    let time_to_ready = t.elapsed();
    assert!(
        ready,
        "{} never answered 200 on {metrics} within 30 s: {:?}\ncontainer status: {:?}\ncontainer log:\n{}",
        readiness.path,
        get(metrics, &readiness.path),
        cri.container_status(&id).map(|s| s.0),
        log()
    );
    let (code, body) = get(metrics, &liveness.path).expect("liveness answers");
    assert_eq!(code, 200, "{} answered {code}: {body}", liveness.path);
    let metrics_path = manifest
        .pod_meta
        .annotations
        .get("prometheus.io/path")
        .cloned()
        .unwrap_or_else(|| "/metrics".into());
    let (code, text) = get(metrics, &metrics_path).expect("metrics answer");
    assert_eq!(code, 200, "{metrics_path}: {text}");
    assert!(
        text.contains("enforcer_build_info"),
        "{metrics_path} has no enforcer_build_info:\n{text}"
    );

    // It is the container's process: in the pod's cgroup, its binary the image's.
    let proc_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        proc_cgroup.contains(&plan.cgroup_parent),
        "pid {pid} is not in {}:\n{proc_cgroup}",
        plan.cgroup_parent
    );
    assert!(
        Path::new(&format!("/proc/{pid}/root/enforcer")).exists(),
        "pid {pid} does not run the image's /enforcer"
    );

    // Its programs are loaded and attached.
    let ours: Vec<u64> = sampler_program_ids()
        .into_iter()
        .filter(|p| !programs_before.contains(p))
        .collect();
    assert_eq!(
        ours.len(),
        2,
        "sched_switch and cgroup_attach_task loaded by the pod: {ours:?}\n{}",
        log()
    );
    let linked = linked_program_ids();
    assert!(
        ours.iter().all(|p| linked.contains(p)),
        "programs {ours:?} not all attached (links for {linked:?})"
    );
    assert!(metric_value(&text, "enforcer_sampler_program_runs_total").unwrap_or(0.0) > 0.0);
    // The node's runtime through the manifest's mount: the daemon lists its own pod.
    assert!(
        wait_until(Duration::from_secs(15), || {
            let text = get(metrics, &metrics_path).map(|r| r.1).unwrap_or_default();
            metric_value(&text, "enforcer_runtime_up") == Some(1.0)
                && metric_value(&text, "enforcer_runtime_pods").unwrap_or(0.0) >= 1.0
        }),
        "the daemon never read its node's containerd through the manifest's mount:\n{}",
        log()
    );

    // A CPU hog on the host, in a BestEffort pod's cgroup as the cgroupfs driver lays it out
    // (kubepods/besteffort/pod<uid>), which the manifest's configuration (the default rules)
    // classifies offline P3.
    let hog_rel = format!("kubepods/besteffort/pod{}/hog", unique_name("hog"));
    let cpu = cgroups.child("cpu", &hog_rel);
    let acct = cgroups.child("cpuacct", &hog_rel);
    let before = metric_value(&get(metrics, &metrics_path).unwrap().1, OFFLINE_P3).unwrap_or(0.0);
    let mut hog = spawn_in(&[&cpu, &acct], cpu_hog(3.0));
    hog.wait_timeout(Duration::from_secs(15))
        .expect("hog exits");
    std::thread::sleep(Duration::from_millis(400));
    let (_, text) = get(metrics, &metrics_path).unwrap();
    let hog_seconds = acct.cpuacct_usage_ns() as f64 / 1e9;
    // On a busy machine the manifest's configuration may climb the ladder (node CPU over
    // 90%) and squeeze the hog, an offline cgroup: whatever it got, the pod must count it.
    let stages: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("enforcer_ladder_stage{"))
        .filter(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) == Some(1.0))
        .collect();
    assert!(
        hog_seconds > 0.1,
        "the hog ran only {hog_seconds:.2}s (ladder: {stages:?})"
    );
    let counted = cgroup_cpu_seconds(&text, &hog_rel)
        .unwrap_or_else(|| panic!("no per-cgroup series for {hog_rel}:\n{text}"));
    assert!(
        (counted - hog_seconds).abs() <= (hog_seconds * 0.05).max(0.02),
        "the pod counted {counted:.3}s for the hog, cpuacct says {hog_seconds:.3}s (ladder: {stages:?})"
    );
    assert!(
        text.contains(&format!("{hog_rel}\",class=\"offline\",priority=\"P3\"}}")),
        "the hog is not offline P3:\n{text}"
    );
    let class = metric_value(&text, OFFLINE_P3).expect("offline P3 counter") - before;
    assert!(
        class >= hog_seconds * 0.95,
        "offline P3 rose by {class:.3}s, the hog alone used {hog_seconds:.3}s"
    );
    drop(hog);

    // What kubelet does when the pod is deleted (or a rolling update replaces it): the stop
    // signal (SIGTERM, the image's StopSignal) with the grace period, then StopPodSandbox.
    let grace = plan.grace;
    let t = Instant::now();
    cri.stop_container(&id, grace.as_secs() as i64)
        .unwrap_or_else(|e| panic!("StopContainer: {e:#}"));
    let stopped_in = t.elapsed();
    let (status, _) = cri.container_status(&id).expect("ContainerStatus");
    assert_eq!(status.state, 2, "not exited: {status:?}");
    assert_eq!(
        status.exit_code,
        0,
        "exit code {} ({}: {}); container log:\n{}",
        status.exit_code,
        status.reason,
        status.message,
        log()
    );
    assert!(
        stopped_in < grace,
        "SIGTERM took {stopped_in:?}, the grace period is {grace:?}"
    );
    let exited_after = Duration::from_nanos((status.finished_at - status.started_at).max(0) as u64);
    let pod_id = pod.id.clone();
    cri.stop_pod_sandbox(&pod_id).expect("StopPodSandbox");
    assert!(
        wait_until(Duration::from_secs(5), || {
            let now = sampler_program_ids();
            ours.iter().all(|p| !now.contains(p))
        }),
        "programs {ours:?} left loaded after the pod stopped"
    );
    // The shutdown pass journaled to the hostPath volume, which outlives the pod.
    let journal = std::fs::read_to_string(journal_dir.join("journal.jsonl")).unwrap_or_default();
    assert!(
        !journal.is_empty(),
        "no journal in the journal volume ({})",
        journal_dir.display()
    );
    drop(pod);
    eprintln!(
        "daemonset: image {image_built:.1?}, pod started {pod_started:.2?}, ready after {time_to_ready:.2?}, \
         hog {hog_seconds:.3}s counted {counted:.3}s (ladder {stages:?}), SIGTERM → exit 0 in {stopped_in:.2?} (grace {grace:?}; \
         ran {exited_after:.1?}), whole test {:.1?}",
        started.elapsed()
    );
}

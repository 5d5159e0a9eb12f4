//! Per-pod usage for billing, from the kernel: a Spark-like application (a driver and three
//! executors labelled as spark-submit labels them) runs in real containerd pods; the
//! executors burn known CPU and hold known memory for a known time. The ledger's figures are
//! checked against the kernel's own accounting of each pod's cgroup (CPU within 1%) and the
//! memory held (within 5%); `enforcer usage` gives the operators' table; an executor that
//! lives one second is there with its CPU; a pod OOM-killed inside its own limit says so.

use std::{path::PathBuf, time::Duration};

use enforcer::model::usage::{UsageRecord, UsageStatus};
use enforcer_tests::{
    TempDir,
    cgroup::mount_point,
    cgroup_root::{CgroupRoot, remove_pod_cgroup},
    containerd::{Containerd, write_pause_image},
    cri::{Cri, PodGuard},
    daemon::Daemon,
    kubelet::{PodPlan, TestPod, plan_test_pod},
    require_root, unique_name, wait_until,
};
use k8s_cri::v1 as cri;

const PAUSE_IMAGE: &str = "docker.io/library/enforcer-test-pause:busybox";
const MIB: u64 = 1024 * 1024;
/// What each executor holds, and for how long: enough that the pod's own footprint (the
/// shell and its forks, 1–3 MiB over a life that a loaded machine stretches to ~10 s) stays
/// a small part of the 5% the ledger is held to against it.
const HELD_MIB: u64 = 256;
const HELD_SECONDS: u64 = 4;

/// A node: the cgroup root kubelet would be given, a private containerd, a CRI client, and
/// a tmpfs directory (the host's /dev/shm) the pods write their memory into: tmpfs pages
/// are charged to the writer's memory cgroup and stay until removed, so what a pod holds,
/// and for how long, is exact.
struct Node {
    cri: Cri,
    containerd: Containerd,
    root: CgroupRoot,
    shm: ShmDir,
    tmp: TempDir,
}

struct ShmDir(PathBuf);

impl Drop for ShmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct RunningPod {
    name: String,
    plan: PodPlan,
    container: String,
    guard: Option<PodGuard>,
}

impl Node {
    fn start() -> Node {
        let tmp = TempDir::new("enforcer-usage");
        let pause = write_pause_image(tmp.path(), PAUSE_IMAGE);
        let root = CgroupRoot::new();
        let containerd = Containerd::start_with_cni(PAUSE_IMAGE, None);
        containerd.import(&pause);
        let cri = Cri::connect(&containerd.socket).expect("CRI client");
        let shm = ShmDir(PathBuf::from("/dev/shm").join(unique_name("enf-usage")));
        std::fs::create_dir_all(&shm.0).expect("a directory on the host's /dev/shm");
        Node {
            cri,
            containerd,
            root,
            shm,
            tmp,
        }
    }

    fn run(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        script: &str,
        memory_limit: Option<u64>,
    ) -> RunningPod {
        let command = ["/bin/busybox", "sh", "-c", script];
        let pod = TestPod {
            namespace: "spark",
            name,
            qos: "besteffort",
            labels,
            image: PAUSE_IMAGE,
            command: &command,
            own_network: false,
        };
        let mut plan = plan_test_pod(&pod, &self.root.rel, &self.tmp.path().join("logs"))
            .expect("the pod's CRI requests");
        plan.container.mounts.push(cri::Mount {
            container_path: "/data".into(),
            host_path: self.shm.0.display().to_string(),
            ..Default::default()
        });
        if let Some(limit) = memory_limit
            && let Some(r) = plan
                .container
                .linux
                .as_mut()
                .and_then(|l| l.resources.as_mut())
        {
            r.memory_limit_in_bytes = limit as i64;
        }
        let guard = PodGuard::run(&self.cri, &plan.sandbox)
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e:#}\n{}", self.containerd.log()));
        let container = self
            .cri
            .create_container(&guard.id, &plan.container, &plan.sandbox)
            .unwrap_or_else(|e| panic!("CreateContainer: {e:#}\n{}", self.containerd.log()));
        self.cri
            .start_container(&container)
            .unwrap_or_else(|e| panic!("StartContainer: {e:#}\n{}", self.containerd.log()));
        RunningPod {
            name: name.into(),
            plan,
            container,
            guard: Some(guard),
        }
    }

    /// The daemon's runtime section, and the ladder off: on a loaded machine (CI's other
    /// work, a parallel build) the node's CPU crosses the ladder's trigger and it would
    /// throttle or freeze the pods under test, stretching what they hold past the known
    /// figures. The ladder's kills are billed in `cri_pods.rs`.
    fn runtime_section(&self) -> String {
        format!(
            "[runtime]\nsocket = \"{}\"\nrefresh_interval = \"300ms\"\ntimeout = \"250ms\"\n\n[ladder]\nenabled = false\n",
            self.containerd.socket.display()
        )
    }

    /// Waits for the pod's container to exit; returns its exit code and reason.
    fn wait_exited(&self, pod: &RunningPod, within: Duration) -> (i32, String) {
        let mut last = None;
        let exited = wait_until(within, || {
            let Ok((status, _)) = self.cri.container_status(&pod.container) else {
                return false;
            };
            let done = status.state == cri::ContainerState::ContainerExited as i32;
            last = Some((status.exit_code, status.reason.clone()));
            done
        });
        assert!(exited, "{} did not exit in {within:?}", pod.name);
        last.unwrap()
    }

    /// The kernel's CPU time of the pod's cgroup (hierarchical: every container of it).
    fn kernel_cpu_ns(&self, pod: &RunningPod) -> u64 {
        let rel = &pod.plan.cgroup_parent;
        if let Some(acct) = mount_point("cpuacct") {
            return std::fs::read_to_string(acct.join(rel).join("cpuacct.usage"))
                .expect("cpuacct.usage")
                .trim()
                .parse()
                .unwrap();
        }
        let unified = mount_point("unified").expect("a cgroup2 hierarchy");
        let stat = std::fs::read_to_string(unified.join(rel).join("cpu.stat")).unwrap();
        stat.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("usage_usec")
            * 1000
    }

    /// What kubelet does when a pod is deleted: the sandbox goes, then its cgroup.
    fn delete(&self, pod: &mut RunningPod) {
        drop(pod.guard.take());
        remove_pod_cgroup(&pod.plan.cgroup_parent);
    }
}

/// The kernel's memory figure of a pod's cgroup, integrated by the test itself every
/// 20 ms (five times the daemon's tick) from its start until it is stopped: the reference
/// the ledger's integral is held to. It also watches the file the pod holds (from the host:
/// the pod's `/data` is a host tmpfs) and says how long it was there at its full size —
/// the pod's own `sleep` is stretched by whatever else the machine runs. Stopped and
/// joined when dropped.
struct MemoryIntegral {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<(f64, f64, f64)>>,
}

impl MemoryIntegral {
    fn start(pod: &RunningPod, held: PathBuf, held_bytes: u64) -> MemoryIntegral {
        let rel = pod.plan.cgroup_parent.clone();
        let file = match mount_point("memory") {
            Some(m) => m.join(&rel).join("memory.usage_in_bytes"),
            None => mount_point("unified")
                .expect("a memory hierarchy")
                .join(&rel)
                .join("memory.current"),
        };
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let read =
                || -> Option<f64> { std::fs::read_to_string(&file).ok()?.trim().parse().ok() };
            let mut last: Option<(std::time::Instant, f64)> = None;
            let mut byte_seconds = 0.0;
            let (mut full_at, mut held_for) = (None, 0.0);
            // The file's allocated bytes over time (fallocate's ramp included).
            let (mut file_last, mut file_byte_seconds): (Option<(std::time::Instant, f64)>, f64) =
                (None, 0.0);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(bytes) = read() {
                    let now = std::time::Instant::now();
                    if let Some((t, b)) = last {
                        byte_seconds += (b + bytes) / 2.0 * (now - t).as_secs_f64();
                    }
                    last = Some((now, bytes));
                }
                let meta = std::fs::metadata(&held).ok();
                let allocated = meta.as_ref().map_or(0.0, |m| {
                    use std::os::unix::fs::MetadataExt;
                    (m.blocks() * 512) as f64
                });
                let now = std::time::Instant::now();
                if let Some((t, b)) = file_last {
                    file_byte_seconds += (b + allocated) / 2.0 * (now - t).as_secs_f64();
                }
                file_last = Some((now, allocated));
                let full = meta.is_some_and(|m| m.len() >= held_bytes);
                match (full, full_at) {
                    (true, None) => full_at = Some(std::time::Instant::now()),
                    (false, Some(t)) => {
                        held_for += t.elapsed().as_secs_f64();
                        full_at = None;
                    }
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (
                byte_seconds / MIB as f64,
                file_byte_seconds / MIB as f64,
                held_for,
            )
        });
        MemoryIntegral {
            stop,
            thread: Some(thread),
        }
    }

    /// MiB × seconds of the cgroup so far, MiB × seconds of the held file's allocated
    /// blocks, and the seconds it was there at its full size; stops.
    fn finish(mut self) -> (f64, f64, f64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for MemoryIntegral {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until the daemon's pod list says the pod's containers have exited (what kubelet
/// reports before it deletes a completed pod).
fn wait_seen_exited(daemon: &Daemon, pod: &RunningPod) {
    let seen = wait_until(Duration::from_secs(10), || {
        let out = daemon.cli(&["pods", "--output", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["pods"].as_array().is_some_and(|pods| {
            pods.iter()
                .any(|p| p["uid"] == pod.plan.uid.as_str() && p["containers_running"] == 0)
        })
    });
    assert!(seen, "the daemon never saw {}'s container exit", pod.name);
}

fn ended(daemon: &Daemon, uid: &str) -> Option<UsageRecord> {
    daemon
        .ledger()
        .into_iter()
        .rfind(|r| r.id == uid && r.status != UsageStatus::Running)
}

fn wait_ended(daemon: &Daemon, pod: &RunningPod) -> UsageRecord {
    let mut record = None;
    assert!(
        wait_until(Duration::from_secs(15), || {
            record = ended(daemon, &pod.plan.uid);
            record.is_some()
        }),
        "no ended record of {} in the ledger:\n{:#?}\n{}",
        pod.name,
        daemon.ledger(),
        daemon.log()
    );
    record.unwrap()
}

fn within(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= expected * tolerance
}

/// Busy for `seconds` (one core), by the clock.
fn busy(seconds: u64) -> String {
    format!("end=$(($(date +%s) + {seconds})); while [ $(date +%s) -lt $end ]; do :; done")
}

#[test]
fn a_spark_applications_pods_are_billed_from_the_kernel() {
    require_root();
    let node = Node::start();
    let daemon = Daemon::start("usage_flush_interval = \"1s\"", &node.runtime_section());
    let app = [("spark-app-selector", "spark-777"), ("queue", "root.P1")];
    let driver_labels = [app[0], app[1], ("spark-role", "driver")];
    let executor_labels = [app[0], app[1], ("spark-role", "executor")];
    let driver = node.run(
        "spark-777-driver",
        &driver_labels,
        "trap 'exit 0' TERM; while :; do sleep 1; done",
        None,
    );
    let mut executors: Vec<RunningPod> = (1..=3)
        .map(|i| {
            let file = format!("/data/exec-{i}");
            // fallocate takes the pages at once (no ramp of a write under contention), so
            // what is held, and for how long, is known to the tenth of a second.
            let script = format!(
                "{}; /bin/busybox fallocate -l {} {file}; sleep {HELD_SECONDS}; rm {file}",
                busy(3),
                HELD_MIB * MIB
            );
            node.run(
                &format!("spark-777-exec-{i}"),
                &executor_labels,
                &script,
                None,
            )
        })
        .collect();
    // Dynamic allocation's short-lived executor, of another application.
    let short_labels = [
        ("spark-app-selector", "spark-778"),
        ("queue", "root.P1"),
        ("spark-role", "executor"),
    ];
    // One second of one core, then gone (timeout's TERM is its way out, not a failure).
    let mut short = node.run(
        "spark-778-exec-1",
        &short_labels,
        "/bin/busybox timeout 1 /bin/busybox sh -c 'while :; do :; done'; exit 0",
        None,
    );
    let integrals: Vec<MemoryIntegral> = executors
        .iter()
        .enumerate()
        .map(|(i, pod)| {
            let file = node.shm.0.join(format!("exec-{}", i + 1));
            MemoryIntegral::start(pod, file, HELD_MIB * MIB)
        })
        .collect();

    let mut kernel = Vec::new();
    for pod in executors.iter().chain([&short]) {
        let (code, _) = node.wait_exited(pod, Duration::from_secs(40));
        assert_eq!(code, 0, "{} failed", pod.name);
        kernel.push(node.kernel_cpu_ns(pod));
        wait_seen_exited(&daemon, pod);
    }
    let mut reference = Vec::new();
    for (pod, integral) in executors.iter_mut().zip(integrals) {
        reference.push(integral.finish());
        node.delete(pod);
    }
    node.delete(&mut short);

    for ((pod, kernel_ns), reference) in executors.iter().zip(&kernel).zip(&reference) {
        let r = wait_ended(&daemon, pod);
        let kernel_s = *kernel_ns as f64 / 1e9;
        // What the pod allocated, over time: its file's blocks as the host sees them.
        let &(reference, held, held_for) = reference;
        eprintln!(
            "{}: ledger {:.4} CPU s (kernel {kernel_s:.4}), {:.1} MiB·s (kernel's figure every 20 ms: {reference:.1}; allocated {held:.1} MiB·s, {HELD_MIB} MiB held {held_for:.2} s)",
            pod.name, r.cpu_seconds, r.memory_mb_seconds,
        );
        assert!(
            held_for >= HELD_SECONDS as f64 * 0.98,
            "{}: the file was held {held_for} s, the pod sleeps {HELD_SECONDS} s with it",
            pod.name
        );
        // 2–3 s of wall time (by the second) shared with the other executors.
        assert!(kernel_s > 0.5, "{} burnt {kernel_s} s", pod.name);
        assert!(
            within(r.cpu_seconds, kernel_s, 0.01),
            "{}: ledger {} CPU s vs the kernel's {kernel_s}: {r:#?}",
            pod.name,
            r.cpu_seconds
        );
        // The reference is the kernel's figure integrated finely, which must itself cover
        // the allocation.
        assert!(
            reference >= held * 0.98,
            "{}: the kernel's integral {reference} MiB·s does not cover the {held} held",
            pod.name
        );
        assert!(
            within(r.memory_mb_seconds, reference, 0.05),
            "{}: {} MiB·s vs the kernel's {reference}: {r:#?}",
            pod.name,
            r.memory_mb_seconds
        );
        // And against what the pod allocated, for how long: its own footprint (the
        // shell and its forks, see `HELD_MIB`) is within the 5%.
        assert!(
            within(r.memory_mb_seconds, held, 0.05),
            "{}: {} MiB·s vs {held} allocated: {r:#?}",
            pod.name,
            r.memory_mb_seconds
        );
        assert!(r.memory_peak_bytes >= HELD_MIB * MIB, "{r:#?}");
        assert_eq!(r.status, UsageStatus::Completed, "{r:#?}");
        assert_eq!(
            (
                r.application_id.as_str(),
                r.spark_role.as_str(),
                r.queue.as_str(),
                r.namespace.as_str(),
                r.pod_name.as_str()
            ),
            (
                "spark-777",
                "executor",
                "root.P1",
                "spark",
                pod.name.as_str()
            )
        );
        assert!(!r.last_known);
        assert!(r.start_time < r.end_time, "{r:#?}");
    }
    let r = wait_ended(&daemon, &short);
    let kernel_s = kernel[3] as f64 / 1e9;
    eprintln!(
        "{}: ledger {:.4} CPU s, kernel {kernel_s:.4}",
        short.name, r.cpu_seconds
    );
    // One second of wall time on a loaded machine: a real share of a core.
    assert!(kernel_s > 0.2, "the short executor burnt {kernel_s} s");
    assert!(
        within(r.cpu_seconds, kernel_s, 0.01),
        "the executor that lived 1 s: {r:#?} vs the kernel's {kernel_s}"
    );

    // The driver still runs: flushed as running, under a stable id.
    assert!(
        wait_until(Duration::from_secs(5), || daemon
            .ledger()
            .iter()
            .any(
                |r| r.id == driver.plan.uid && r.status == UsageStatus::Running
            )),
        "no running record of the driver"
    );

    // The operators' table, from the ledger alone.
    let ledger = daemon.ledger_path();
    let out = enforcer_tests::daemon::enforcer(&[
        "usage",
        "--file",
        ledger.to_str().unwrap(),
        "--by",
        "application",
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["application_id"] == "spark-777")
        .unwrap_or_else(|| panic!("no spark-777 row: {rows:#}"));
    assert_eq!(row["executor_count"], 3, "{row:#}");
    assert_eq!(row["driver_pod_name"], "spark-777-driver", "{row:#}");
    assert_eq!(row["namespace"], "spark");
    assert_eq!(row["queue"], "root.P1");
    assert_eq!(row["status"], "running", "the driver runs: {row:#}");
    let sum: f64 = kernel[..3].iter().map(|&ns| ns as f64 / 1e9).sum();
    let cpu = row["cpu_seconds"].as_f64().unwrap();
    assert!(
        cpu >= sum * 0.99,
        "{cpu} CPU s for the application, executors alone {sum}"
    );
    let text = String::from_utf8(
        enforcer_tests::daemon::enforcer(&["usage", "--file", ledger.to_str().unwrap()]).stdout,
    )
    .unwrap();
    assert!(
        text.contains("spark-777") && text.contains("executor_count"),
        "{text}"
    );
}

#[test]
fn a_pod_oom_killed_inside_its_own_limit_is_billed_as_oom_killed() {
    require_root();
    let node = Node::start();
    let daemon = Daemon::start("usage_flush_interval = \"1s\"", &node.runtime_section());
    let labels = [("queue", "root.P3"), ("spark-role", "executor")];
    // 64 MiB of a shell variable (anonymous memory) into a 32 MiB limit.
    let mut pod = node.run(
        "greedy",
        &labels,
        &format!(
            "sleep 1; x=$(head -c {} /dev/zero | tr '\\0' a); exit 0",
            64 * MIB
        ),
        Some(32 * MIB),
    );
    let (code, reason) = node.wait_exited(&pod, Duration::from_secs(30));
    eprintln!("greedy exited {code} ({reason})");
    // The daemon reads the OOM count once a second while the pod is there.
    std::thread::sleep(Duration::from_millis(1500));
    node.delete(&mut pod);
    let r = wait_ended(&daemon, &pod);
    assert_eq!(r.status, UsageStatus::OomKilled, "{r:#?}\n{}", daemon.log());
    assert!(r.oom_kills >= 1, "{r:#?}");
}

#[test]
fn across_a_kill_9_running_pods_carry_on_and_one_that_ended_meanwhile_is_recorded() {
    require_root();
    let node = Node::start();
    let mut daemon = Daemon::start("usage_flush_interval = \"1s\"", &node.runtime_section());
    let labels = [("queue", "root.P1"), ("spark-role", "executor")];
    let lasting = node.run("lasting", &labels, &busy(30), None);
    let mut gone = node.run("gone", &labels, &busy(30), None);
    // Both flushed as running with some CPU.
    let flushed = |daemon: &Daemon, pod: &RunningPod| {
        daemon
            .ledger()
            .into_iter()
            .rfind(|r| r.id == pod.plan.uid && r.status == UsageStatus::Running)
            .map(|r| r.cpu_seconds)
            .unwrap_or(0.0)
    };
    assert!(
        wait_until(Duration::from_secs(20), || flushed(&daemon, &lasting) > 1.0
            && flushed(&daemon, &gone) > 1.0),
        "no running records with CPU:\n{:#?}\n{}",
        daemon.ledger(),
        daemon.log()
    );
    daemon.kill9();
    let before = flushed(&daemon, &lasting);
    let gone_cpu = flushed(&daemon, &gone);
    node.delete(&mut gone);
    std::thread::sleep(Duration::from_millis(500));
    daemon.respawn();

    // The pod that ended while no daemon ran: its last known figures, marked so.
    let r = wait_ended(&daemon, &gone);
    assert!(r.last_known, "{r:#?}");
    assert!(r.cpu_seconds >= gone_cpu, "{r:#?}");
    assert_eq!(r.status, UsageStatus::Completed);
    // The one still running goes on from what the predecessor recorded.
    assert!(
        wait_until(Duration::from_secs(10), || flushed(&daemon, &lasting)
            > before + 0.5),
        "lasting's CPU did not go on from {before}:\n{:#?}",
        daemon.ledger()
    );
    let starts: Vec<String> = daemon
        .ledger()
        .into_iter()
        .filter(|r| r.id == lasting.plan.uid)
        .map(|r| r.start_time)
        .collect();
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "{starts:?}");
}

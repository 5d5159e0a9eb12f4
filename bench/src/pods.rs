//! The pod source's cost: a private containerd with 100 and 500 real pod sandboxes (one
//! idle container each, in kubelet's cgroupfs layout), and the daemon reading it, side by
//! side with the same daemon pointed at no runtime: milliseconds and RPCs per pod list, the
//! daemon's RSS and its CPU at rest.

use std::time::{Duration, Instant};

use enforcer_tests::{
    TempDir,
    cgroup_root::CgroupRoot,
    containerd::{Containerd, write_pause_image},
    cri::{Cri, PodGuard},
    daemon::Daemon,
    kubelet::{TestPod, plan_test_pod},
};
use serde_json::json;

use crate::idle::{cpu_ticks, rss_kib};

const PAUSE_IMAGE: &str = "docker.io/library/enforcer-test-pause:busybox";
const IDLE: &[&str] = &[
    "/bin/busybox",
    "sh",
    "-c",
    // One long sleep, not a loop: a new process every few seconds in each of 500 pods would
    // measure the isolation of new offline processes, not the pod source.
    "trap 'exit 0' TERM; sleep 3600 & wait",
];
const SECONDS: u64 = 20;

fn seconds() -> u64 {
    std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SECONDS)
}

/// RSS peak (MiB), CPU (% of one core) and the runtime's figures over SECONDS.
fn measure(daemon: &Daemon, with_runtime: bool) -> anyhow::Result<serde_json::Value> {
    // At rest means after start-up: the first pod list (one status call per new sandbox)
    // is done before the count starts.
    let started = Instant::now();
    while with_runtime && started.elapsed() < Duration::from_secs(60) {
        let out = daemon.cli(&["status", "--output", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v["runtime"]["up"] == true && v["runtime"]["pods"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(3));
    let pid = daemon.pid();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (t0, c0) = (Instant::now(), cpu_ticks(pid)?);
    let (mut peak, mut refresh_ms, mut rpcs, mut samples) = (0, 0.0, 0.0, 0u32);
    let mut refreshes = (None, 0u64);
    let mut second = 0u64;
    while t0.elapsed() < Duration::from_secs(seconds()) {
        peak = peak.max(rss_kib(pid)?);
        second += 1;
        // The daemon at rest: asked for its runtime's figures every 5 s only, by `status`
        // (which reads no pod's memory; `pods` reads 500 cgroups: a request's cost).
        if second % 5 != 1 {
            std::thread::sleep(Duration::from_millis(1000));
            continue;
        }
        let out = daemon.cli(&["status", "--output", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let r = &v["runtime"];
        if r["up"] == true {
            refresh_ms += r["refresh_seconds"].as_f64().unwrap_or(0.0) * 1e3;
            rpcs += r["refresh_rpcs"].as_f64().unwrap_or(0.0);
            samples += 1;
        }
        let n = r["refreshes_total"].as_u64().unwrap_or(0);
        refreshes = (refreshes.0.or(Some(n)), n);
        std::thread::sleep(Duration::from_millis(1000));
    }
    let cpu = (cpu_ticks(pid)? - c0) as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
    // Where it goes, by thread (utime + stime since the daemon started).
    let mut threads = serde_json::Map::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let tid: i32 = t.file_name().to_string_lossy().parse().unwrap_or(0);
        let ticks = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
            .ok()
            .and_then(|s| {
                let after = s.rsplit_once(')')?.1.to_string();
                let f: Vec<&str> = after.split_whitespace().collect();
                Some(f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?)
            })
            .unwrap_or(0);
        let e = threads.entry(comm.trim().to_string()).or_insert(json!(0.0));
        *e = json!(e.as_f64().unwrap_or(0.0) + ticks as f64 / hz);
    }
    let per = |x: f64| if samples > 0 { x / samples as f64 } else { 0.0 };
    Ok(json!({
        "rss_peak_mib": peak as f64 / 1024.0,
        "cpu_percent_of_one_core": cpu,
        "ms_per_refresh": per(refresh_ms),
        "rpcs_per_refresh": per(rpcs),
        "refreshes": refreshes.1 - refreshes.0.unwrap_or(0),
        "cpu_seconds_by_thread": threads,
    }))
}

pub fn run() -> anyhow::Result<serde_json::Value> {
    println!(
        "== pod source: 100 and 500 pods in a private containerd, {} s each at rest, vs no runtime",
        seconds()
    );
    let mut out = serde_json::Map::new();
    // BENCH_PODS=100 runs one size.
    let sizes: Vec<usize> = match std::env::var("BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => vec![n],
        None => vec![100, 500],
    };
    for n in sizes {
        let tmp = TempDir::new("enforcer-bench-pods");
        let pause = write_pause_image(tmp.path(), PAUSE_IMAGE);
        let root = CgroupRoot::new();
        let containerd = Containerd::start(PAUSE_IMAGE);
        containerd.import(&pause);
        let cri = Cri::connect(&containerd.socket)?;
        let started = Instant::now();
        let mut pods = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("bench-{i}");
            let labels = [("queue", if i % 2 == 0 { "root.P1" } else { "root.P3" })];
            let plan = plan_test_pod(
                &TestPod {
                    namespace: "spark",
                    name: &name,
                    qos: "besteffort",
                    labels: &labels,
                    image: PAUSE_IMAGE,
                    command: IDLE,
                    own_network: false,
                },
                &root.rel,
                &tmp.path().join("logs"),
            )?;
            let pod = PodGuard::run(&cri, &plan.sandbox)?;
            let id = cri.create_container(&pod.id, &plan.container, &plan.sandbox)?;
            cri.start_container(&id)?;
            pods.push(pod);
        }
        println!(
            "   {n} pods started in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let section = format!("[runtime]\nsocket = \"{}\"\n", containerd.socket.display());
        let with = measure(&Daemon::start("", &section), true)?;
        let absent = format!(
            "[runtime]\nsocket = \"{}\"\n",
            tmp.path().join("none.sock").display()
        );
        let without = measure(&Daemon::start("", &absent), false)?;
        println!(
            "   {n} pods: {:.2} ms and {:.1} RPCs per refresh; RSS {:.1} MiB (no runtime: {:.1} MiB); CPU {:.3}% of a core (no runtime: {:.3}%)",
            with["ms_per_refresh"].as_f64().unwrap_or(0.0),
            with["rpcs_per_refresh"].as_f64().unwrap_or(0.0),
            with["rss_peak_mib"].as_f64().unwrap_or(0.0),
            without["rss_peak_mib"].as_f64().unwrap_or(0.0),
            with["cpu_percent_of_one_core"].as_f64().unwrap_or(0.0),
            without["cpu_percent_of_one_core"].as_f64().unwrap_or(0.0),
        );
        out.insert(
            format!("{n}_pods"),
            json!({ "with_runtime": with, "no_runtime": without }),
        );
        drop(pods);
    }
    Ok(serde_json::Value::Object(out))
}

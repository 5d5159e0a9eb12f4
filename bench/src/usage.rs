//! The usage ledger's cost: 500 BestEffort pod cgroups (kubelet's cgroupfs layout, no
//! runtime: each pod is its cgroup, named `pod<uid>`) started and ended over a minute, each
//! running a short busy loop and exiting, its cgroup then removed. Measured side by side: the
//! daemon's CPU while they churn, with the pods offline (accounted, one ledger record each)
//! and with the same pods classified online by a rule (no offline units: nothing accounted,
//! nothing isolated — the difference is an upper bound on what the accounting costs), and
//! the ledger's bytes per ended pod.

use std::time::{Duration, Instant};

use enforcer_tests::{cgroup::cpu_hog, daemon::Daemon, layout::Unit, process::ChildGuard};
use serde_json::json;

use crate::idle::cpu_ticks;

const PODS: usize = 500;
const OVER: Duration = Duration::from_secs(60);

/// Starts and ends `PODS` pods below `besteffort` over `OVER`; returns the daemon's CPU (%
/// of one core) over the churn and until the last pod's cgroup is gone.
fn churn(daemon: &Daemon, besteffort: &Unit) -> anyhow::Result<f64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let pid = daemon.pid();
    let (t0, c0) = (Instant::now(), cpu_ticks(pid)?);
    let every = OVER / PODS as u32;
    let mut live: Vec<(ChildGuard, Unit)> = Vec::new();
    for i in 0..PODS {
        let at = t0 + every * i as u32;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let pod = besteffort.child(&format!("pod{i:08x}-0000-4000-8000-{i:012x}"));
        // About 50 ms of one core, then gone.
        let child = pod.spawn(cpu_hog(0.05));
        live.push((child, pod));
        live.retain_mut(|(c, _)| c.child_mut().try_wait().ok().flatten().is_none());
    }
    while !live.is_empty() {
        std::thread::sleep(Duration::from_millis(50));
        live.retain_mut(|(c, _)| c.child_mut().try_wait().ok().flatten().is_none());
    }
    // The last records are written within a tick of the cgroup's removal.
    std::thread::sleep(Duration::from_secs(2));
    Ok((cpu_ticks(pid)? - c0) as f64 / hz / t0.elapsed().as_secs_f64() * 100.0)
}

pub fn run() -> anyhow::Result<serde_json::Value> {
    println!(
        "== usage ledger: {PODS} pod cgroups started and ended over {} s, offline (accounted) vs the same pods online",
        OVER.as_secs()
    );
    let mut out = serde_json::Map::new();
    for offline in [true, false] {
        let root = Unit::create("enf-usage");
        let besteffort = root.child("kubepods").child("besteffort");
        // Test rules come before the defaults: the pods are offline P3 by their path, or
        // online by this rule.
        let class = if offline { "offline" } else { "online" };
        let priority = if offline { "priority = \"P3\"\n" } else { "" };
        let config = format!(
            "[classify]\nappend_defaults = true\n[[classify.rules]]\nname = \"bench-pods\"\nmatch = '{}/kubepods/besteffort/pod'\nclass = \"{class}\"\n{priority}\n[ladder]\nenabled = false\n[capacity]\nenabled = false\n[network]\nenabled = false\n",
            root.name
        );
        let daemon = Daemon::start("usage_flush_interval = \"60s\"", &config);
        std::thread::sleep(Duration::from_secs(3));
        let cpu = churn(&daemon, &besteffort)?;
        let ledger = std::fs::read_to_string(daemon.ledger_path()).unwrap_or_default();
        let ended: Vec<&str> = ledger
            .lines()
            .filter(|l| !l.contains("\"status\":\"running\""))
            .collect();
        let bytes: usize = ended.iter().map(|l| l.len() + 1).sum();
        let per_pod = if ended.is_empty() {
            0.0
        } else {
            bytes as f64 / ended.len() as f64
        };
        println!(
            "   {}: daemon CPU {cpu:.2}% of a core; {} ended records, {per_pod:.0} bytes each",
            if offline {
                "offline, accounted"
            } else {
                "online, not accounted"
            },
            ended.len()
        );
        out.insert(
            if offline { "offline" } else { "online" }.into(),
            json!({
                "cpu_percent_of_one_core": cpu,
                "ended_records": ended.len(),
                "ledger_bytes_per_pod": per_pod,
            }),
        );
    }
    Ok(serde_json::Value::Object(out))
}

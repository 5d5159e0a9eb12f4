//! Scale and churn: 1,000 and 10,000 cgroups created, held and removed, three cycles, with
//! the daemon at its defaults (cgroups learnt from the kernel's events, the full walk a
//! safety net every 60 s) side by side with the same daemon walking the trees every second
//! (the previous default). Per cycle: the daemon's CPU while the cgroups are held, the
//! tick's lateness p99 and max over that time (from its histogram), its RSS after the
//! removal.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use enforcer_tests::{cgroup::TestCgroup, daemon::Daemon, unique_name, wait_until};
use serde_json::json;

use crate::idle::{cpu_ticks, rss_kib};

const CYCLES: usize = 3;
const HOLD: Duration = Duration::from_secs(10);

fn status(daemon: &Daemon) -> serde_json::Value {
    let out = daemon.cli(&["status", "--output", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn cgroups_total(daemon: &Daemon) -> u64 {
    status(daemon)["cgroups_total"].as_u64().unwrap_or(0)
}

fn lag(status: &serde_json::Value) -> enforcer::surfaces::snapshot::LagHistogram {
    serde_json::from_value(status["sampler"]["tick_lag"].clone()).unwrap_or_default()
}

fn ms(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s.is_finite() => format!("≤{:.1}ms", s * 1000.0),
        Some(_) => ">1s".into(),
        None => "-".into(),
    }
}

fn one(mode: &str, daemon_section: &str, n: usize) -> anyhow::Result<serde_json::Value> {
    let parent = TestCgroup::create("cpu", &unique_name("enf-bench-churn"));
    let daemon = Daemon::start(daemon_section, "");
    let pid = daemon.pid();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    std::thread::sleep(Duration::from_secs(3));
    let base_total = cgroups_total(&daemon);
    let base_rss = rss_kib(pid)?;
    let mut cycles = Vec::new();
    for cycle in 1..=CYCLES {
        let dirs: Vec<PathBuf> = (0..n)
            .map(|i| {
                let d = parent.dir().join(format!("c{cycle}-{i}"));
                std::fs::create_dir(&d).map(|_| d)
            })
            .collect::<Result<_, _>>()?;
        let created = Instant::now();
        anyhow::ensure!(
            wait_until(Duration::from_secs(30), || cgroups_total(&daemon)
                >= base_total + n as u64),
            "{mode}: the daemon never indexed {n} cgroups"
        );
        let indexed = created.elapsed();
        let before = status(&daemon);
        let (t0, c0) = (Instant::now(), cpu_ticks(pid)?);
        std::thread::sleep(HOLD);
        let cpu_percent = (cpu_ticks(pid)? - c0) as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
        let after = status(&daemon);
        let (h0, h1) = (lag(&before), lag(&after));
        let p99 = h1.quantile_since(&h0, 0.99);
        let max = h1.quantile_since(&h0, 1.0);
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
        anyhow::ensure!(
            wait_until(Duration::from_secs(30), || cgroups_total(&daemon)
                <= base_total + 4),
            "{mode}: the daemon never forgot the removed cgroups"
        );
        std::thread::sleep(Duration::from_secs(1));
        let rss = rss_kib(pid)?;
        println!(
            "   {mode:<22} {n:>6} cgroups, cycle {cycle}: indexed in {:>5.2}s, CPU held {cpu_percent:>5.2}% of a core, tick lateness p99 {:>8} max {:>8}, RSS after removal {:>5.1} MiB ({:+.1} vs start)",
            indexed.as_secs_f64(),
            ms(p99),
            ms(max),
            rss as f64 / 1024.0,
            (rss as f64 - base_rss as f64) / 1024.0,
        );
        cycles.push(json!({
            "cycle": cycle,
            "indexed_seconds": indexed.as_secs_f64(),
            "cpu_percent_held": cpu_percent,
            "tick_lag_p99_seconds_at_most": p99,
            "tick_lag_max_seconds_at_most": max,
            "rss_after_removal_mib": rss as f64 / 1024.0,
            "rss_delta_mib": (rss as f64 - base_rss as f64) / 1024.0,
        }));
    }
    let d = &status(&daemon)["discovery"];
    println!(
        "   {mode:<22} {n:>6} cgroups: {} events applied, {} lost, {} walks",
        d["events_total"], d["events_lost_total"], d["walks_total"]
    );
    Ok(json!({
        "mode": mode,
        "cgroups": n,
        "rss_start_mib": base_rss as f64 / 1024.0,
        "cycles": cycles,
        "discovery": d,
    }))
}

pub fn run() -> anyhow::Result<serde_json::Value> {
    println!(
        "== cgroup churn: {CYCLES} cycles of N cgroups created, held {HOLD:?}, removed; events vs walking every second"
    );
    let mut out = Vec::new();
    for n in [1_000, 10_000] {
        out.push(one("events (default)", "", n)?);
        out.push(one("walk every 1 s", "rescan_interval = \"1s\"", n)?);
    }
    Ok(json!(out))
}

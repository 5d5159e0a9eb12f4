//! The daemon's own footprint on an idle machine at the default tick: resident memory and
//! CPU, read from /proc for the real daemon process.

use std::time::{Duration, Instant};

use enforcer_tests::daemon::Daemon;
use serde_json::json;

pub fn rss_kib(pid: i32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))
}

/// utime + stime in clock ticks.
pub fn cpu_ticks(pid: i32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

pub fn run() -> anyhow::Result<serde_json::Value> {
    const SECONDS: u64 = 30;
    println!("== daemon footprint, idle machine, default tick (100 ms), {SECONDS} s");
    let daemon = Daemon::start("", "");
    std::thread::sleep(Duration::from_secs(2));
    let pid = daemon.pid();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (t0, c0) = (Instant::now(), cpu_ticks(pid)?);
    let mut peak_rss = 0;
    while t0.elapsed() < Duration::from_secs(SECONDS) {
        peak_rss = peak_rss.max(rss_kib(pid)?);
        std::thread::sleep(Duration::from_millis(500));
    }
    let cpu_seconds = (cpu_ticks(pid)? - c0) as f64 / hz;
    let cpu_percent = cpu_seconds / t0.elapsed().as_secs_f64() * 100.0;
    let rss_mib = peak_rss as f64 / 1024.0;
    println!("   RSS peak {rss_mib:.1} MiB   CPU {cpu_percent:.3}% of one core");
    Ok(
        json!({ "rss_peak_mib": rss_mib, "cpu_percent_of_one_core": cpu_percent, "seconds": SECONDS }),
    )
}

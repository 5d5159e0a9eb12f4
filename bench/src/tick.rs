//! The cost of one sampling tick for N cgroups: enforcer reading its eBPF map (one batched
//! syscall per few thousand cgroups) versus reading each cgroup's `cpu.stat` from cgroupfs,
//! which is how polling agents work. Same cgroups, same run, side by side.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use enforcer::sampling::cpu::CpuSampler;
use enforcer_common::CgroupMode;
use enforcer_tests::{cgroup::TestCgroup, unique_name};
use serde_json::json;

/// Reads `usage_usec` of every cgroup's cpu.stat, as a polling agent does each interval.
fn poll_cgroupfs(dirs: &[PathBuf]) -> u64 {
    let mut sum = 0u64;
    for dir in dirs {
        if let Ok(text) = std::fs::read_to_string(dir.join("cpu.stat"))
            && let Some(v) = text.lines().find_map(|l| l.strip_prefix("usage_usec "))
        {
            sum = sum.wrapping_add(v.trim().parse::<u64>().unwrap_or(0));
        }
    }
    sum
}

/// Median of `rounds` timings of `f`.
fn median(rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[rounds / 2]
}

fn one_size(n: usize) -> anyhow::Result<serde_json::Value> {
    let parent = TestCgroup::create("unified", &unique_name("enf-bench-tick"));
    let dirs: Vec<PathBuf> = (0..n)
        .map(|i| {
            let d = parent.dir().join(format!("c{i}"));
            std::fs::create_dir(&d).map(|_| d)
        })
        .collect::<Result<_, _>>()?;
    let mut sampler = CpuSampler::load(CgroupMode::Unified, 16_384)?;

    // Give every cgroup a map entry: one short-lived shell walks through all of them (a
    // self-move credits the slice run so far to the cgroup it leaves).
    let scratch = enforcer_tests::TempDir::new("enf-bench-tick");
    let list = scratch.path().join("cgroups.list");
    let body: String = dirs
        .iter()
        .map(|d| format!("{}\n", d.join("cgroup.procs").display()))
        .collect();
    std::fs::write(&list, body)?;
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while read f; do echo $$ > \"$f\"; done < {}",
            list.display()
        ))
        .status()?;
    anyhow::ensure!(status.success(), "walking the cgroups failed");
    let entries = sampler.read()?.per_cgroup.len();

    let rounds = if n >= 10_000 { 15 } else { 51 };
    let ebpf = median(rounds, || {
        let r = sampler.read().expect("map read");
        std::hint::black_box(r.per_cgroup.len());
    });
    let poll = median(rounds, || {
        std::hint::black_box(poll_cgroupfs(&dirs));
    });
    let ratio = poll.as_secs_f64() / ebpf.as_secs_f64();
    println!(
        "   {n:>6} cgroups ({entries:>6} map entries): eBPF map read {:>9.3} ms   cgroupfs cpu.stat poll {:>9.3} ms   ratio {ratio:6.1}x",
        ebpf.as_secs_f64() * 1e3,
        poll.as_secs_f64() * 1e3
    );
    Ok(json!({
        "cgroups": n,
        "map_entries": entries,
        "ebpf_ms": ebpf.as_secs_f64() * 1e3,
        "cgroupfs_ms": poll.as_secs_f64() * 1e3,
        "ratio": ratio,
    }))
}

pub fn run() -> anyhow::Result<serde_json::Value> {
    println!("== one sampling tick: eBPF map read vs cgroupfs polling (median of rounds)");
    let mut sizes = Vec::new();
    for n in [100, 1_000, 10_000] {
        sizes.push(one_size(n)?);
    }
    Ok(sizes.into())
}

//! enforcer's benchmarks. Every figure is measured side by side in one run and reported,
//! never asserted: `cargo xtask bench` (as root).

mod churn;
mod idle;
mod latency;
mod net;
mod overhead;
mod pods;
mod tick;
mod usage;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "enforcer benchmarks (root; real kernel)")]
struct Cli {
    #[command(subcommand)]
    which: Option<Which>,
    /// Also write the results as JSON to this file.
    #[arg(long, global = true)]
    json: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Clone, Copy)]
enum Which {
    /// Overhead per event from kernel.bpf_stats_enabled: sched_switch (cgroup2 and v1 paths),
    /// memcg reclaim, and per packet of the cgroup_skb counters.
    Overhead,
    /// Cost of one sampling tick: eBPF map read vs cgroupfs polling, 100/1,000/10,000 cgroups.
    Tick,
    /// Daemon RSS and CPU on an idle machine at the default tick.
    Idle,
    /// Protection ladder detection-to-action latency: eBPF vs cgroupfs polling at 1 s.
    Latency,
    /// Overhead per event of the memory reclaim programs under memcg pressure.
    Reclaim,
    /// Programming 10/100 macvlans: enforcer's netlink reconcile vs the tc CLI.
    Tc,
    /// Online ping RTT during an offline flood, shaped vs unshaped; shaped rate accuracy.
    Rtt,
    /// The pod source with 100 and 500 pods in a private containerd vs no runtime.
    Pods,
    /// 1,000 and 10,000 cgroups created, held and removed: kernel events vs walking.
    Churn,
    /// The usage ledger: 500 pods started and ended over a minute, accounted vs not.
    Usage,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    enforcer_tests::require_root();
    let mut results = serde_json::Map::new();
    let all = cli.which.is_none();
    if all || matches!(cli.which, Some(Which::Overhead)) {
        results.insert("sched_switch_overhead".into(), overhead::run()?);
        results.insert("reclaim_overhead".into(), overhead::reclaim()?);
        results.insert("network_overhead".into(), overhead::network()?);
    }
    if all || matches!(cli.which, Some(Which::Tick)) {
        results.insert("tick_cost".into(), tick::run()?);
    }
    if all || matches!(cli.which, Some(Which::Idle)) {
        results.insert("daemon_idle".into(), idle::run()?);
    }
    if matches!(cli.which, Some(Which::Reclaim)) {
        results.insert("reclaim_overhead".into(), overhead::reclaim()?);
    }
    if all || matches!(cli.which, Some(Which::Latency)) {
        results.insert("detection_to_action".into(), latency::run()?);
    }
    if all || matches!(cli.which, Some(Which::Tc)) {
        results.insert("tc_programming".into(), net::tc::run()?);
    }
    if all || matches!(cli.which, Some(Which::Rtt)) {
        results.insert("online_rtt_under_offline_flood".into(), net::rtt::run()?);
    }
    if all || matches!(cli.which, Some(Which::Pods)) {
        results.insert("pod_source".into(), pods::run()?);
    }
    if all || matches!(cli.which, Some(Which::Churn)) {
        results.insert("cgroup_churn".into(), churn::run()?);
    }
    if all || matches!(cli.which, Some(Which::Usage)) {
        results.insert("usage_ledger".into(), usage::run()?);
    }
    if let Some(path) = cli.json {
        std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
        println!("results written to {}", path.display());
    }
    Ok(())
}

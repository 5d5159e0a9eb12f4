//! Nanoseconds per `sched_switch` event, as the kernel measures them
//! (`kernel.bpf_stats_enabled`: run_time_ns / run_cnt), under heavy switching.

use std::process::Command;

use enforcer::sampling::cpu::CpuSampler;
use enforcer_common::CgroupMode;
use serde_json::json;

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Turns bpf_stats on and restores the previous value on drop (it costs every program on
/// the host a little while on).
struct BpfStats(String);

impl BpfStats {
    fn enable() -> anyhow::Result<BpfStats> {
        let old = std::fs::read_to_string(BPF_STATS)?.trim().to_string();
        std::fs::write(BPF_STATS, "1")?;
        Ok(BpfStats(old))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, &self.0);
    }
}

fn measure(mode: CgroupMode, seconds: u32) -> anyhow::Result<(f64, u64)> {
    let sampler = CpuSampler::load(mode, 16_384)?;
    let _stats = BpfStats::enable()?;
    let (t0, n0) = sampler.program_stats().unwrap_or_default();
    let status = Command::new("stress-ng")
        .args([
            "--switch",
            "2",
            "--timeout",
            &format!("{seconds}s"),
            "--quiet",
        ])
        .status()?;
    anyhow::ensure!(status.success(), "stress-ng --switch failed: {status}");
    let (t1, n1) = sampler.program_stats().unwrap_or_default();
    let runs = n1 - n0;
    anyhow::ensure!(runs > 0, "no sched_switch runs counted (bpf_stats off?)");
    Ok(((t1 - t0).as_nanos() as f64 / runs as f64, runs))
}

pub fn run() -> anyhow::Result<serde_json::Value> {
    println!("== overhead per sched_switch event (bpf_stats, stress-ng --switch 2, 5 s, 3 rounds)");
    let mut out = serde_json::Map::new();
    for (label, mode) in [
        ("cgroup2", CgroupMode::Unified),
        ("v1_cpu", CgroupMode::V1Cpu),
    ] {
        let mut rounds = Vec::new();
        let mut events = 0;
        for _ in 0..3 {
            let (ns, runs) = measure(mode, 5)?;
            rounds.push(ns);
            events += runs;
        }
        rounds.sort_by(f64::total_cmp);
        let median = rounds[1];
        println!(
            "   {label:<8} median {median:6.1} ns/event  (rounds {:.1} / {:.1} / {:.1}; {events} events)",
            rounds[0], rounds[1], rounds[2]
        );
        out.insert(
            label.into(),
            json!({ "median_ns_per_event": median, "rounds_ns": rounds, "events": events }),
        );
    }
    Ok(out.into())
}

/// Nanoseconds per event of the reclaim programs under real memcg pressure: a bounded
/// allocator in a small memory cgroup (a child of this process's own memory cgroup).
pub fn reclaim() -> anyhow::Result<serde_json::Value> {
    use enforcer::sampling::programs::{ProgramOptions, Programs};
    use enforcer_tests::{
        cgroup::{TestCgroup, own_cgroup_dir},
        load::memcg_squeeze,
        unique_name,
    };
    println!(
        "== overhead per reclaim event (bpf_stats, stress-ng --vm 48M in a 32 MiB memcg, 5 s)"
    );
    let programs = Programs::load(&ProgramOptions {
        cpu_mode: CgroupMode::V1Cpu,
        memory_mode: CgroupMode::V1Cpu,
        cgroup_map_entries: 16_384,
        network: None,
    })?;
    let cg = TestCgroup::create_at(&own_cgroup_dir("memory"), &unique_name("enf-bench-reclaim"));
    let names = [
        "mm_vmscan_memcg_reclaim_begin",
        "mm_vmscan_memcg_reclaim_end",
    ];
    let _stats = BpfStats::enable()?;
    let before: Vec<_> = names
        .iter()
        .map(|n| programs.program_stats(n).unwrap_or_default())
        .collect();
    let mut child = memcg_squeeze(&cg, 32, 48, 5);
    child.wait_timeout(std::time::Duration::from_secs(20));
    let mut out = serde_json::Map::new();
    for (name, (t0, n0)) in names.iter().zip(before) {
        let (t1, n1) = programs.program_stats(name).unwrap_or_default();
        let runs = n1 - n0;
        anyhow::ensure!(runs > 0, "{name}: no events");
        let ns = (t1 - t0).as_nanos() as f64 / runs as f64;
        println!("   {name:<32} {ns:6.1} ns/event  ({runs} events)");
        out.insert(
            (*name).into(),
            json!({ "ns_per_event": ns, "events": runs }),
        );
    }
    Ok(out.into())
}

/// Nanoseconds per packet (socket buffer) of the cgroup_skb counting programs during an
/// iperf3 transfer between namespaces the bench makes.
pub fn network() -> anyhow::Result<serde_json::Value> {
    use enforcer_common::{PROG_NET_EGRESS, PROG_NET_INGRESS};
    use enforcer_tests::net::{NetTopology, iperf3_client, iperf3_received_bps, iperf3_server};
    println!(
        "== overhead per packet of the cgroup_skb programs (bpf_stats, iperf3 pod -> uplink, 5 s)"
    );
    let programs = crate::net::load_programs()?;
    let t = NetTopology::new(47, &["mvb0"], &[]);
    let _server = iperf3_server(&t.wire, 5201, 30);
    let _stats = BpfStats::enable()?;
    let names = [PROG_NET_EGRESS, PROG_NET_INGRESS];
    let before: Vec<_> = names
        .iter()
        .map(|n| programs.program_stats(n).unwrap_or_default())
        .collect();
    let client = enforcer_tests::process::ChildGuard::spawn(iperf3_client(
        &t.pods[0].ns,
        &t.wire_addr,
        5201,
        5,
        &[],
    ));
    let bps = iperf3_received_bps(client);
    let mut out = serde_json::Map::new();
    for (name, (t0, n0)) in names.iter().zip(before) {
        let (t1, n1) = programs.program_stats(name).unwrap_or_default();
        let runs = n1 - n0;
        anyhow::ensure!(runs > 0, "no {name} runs counted (bpf_stats off?)");
        let ns = (t1 - t0).as_nanos() as f64 / runs as f64;
        println!("   {name:<12} {ns:6.1} ns/packet  ({runs} packets)");
        out.insert(
            name.to_string(),
            json!({ "ns_per_packet": ns, "packets": runs }),
        );
    }
    println!("   (iperf3 moved {:.0} Mbit/s meanwhile)", bps / 1e6);
    out.insert("iperf3_bits_per_second".into(), json!(bps));
    Ok(serde_json::Value::Object(out))
}

//! Rate accuracy and online latency: the online pod's ping RTT while an offline pod floods
//! the uplink, with enforcer's shaping versus without, side by side in one run.
//!
//! Two pods (`mvoff0` offline, `mvon0` online) on `bond0`, their processes in cgroup2
//! cgroups that the classifier's map (filled here, as the daemon would) says offline and
//! online. The veth under `bond0` has no rate of its own, so the NIC's capacity (1 Gbit/s)
//! is emulated at `bond0`'s egress in both modes:
//!
//! - unshaped: a plain FIFO bottleneck, `tbf rate 1gbit burst 125kb latency 12ms` (a
//!   12 ms queue at line rate, about a default txqueuelen of 1000 full-size frames);
//! - shaped: enforcer's hierarchy from one reconciler pass (real classifier, capacity
//!   1 Gbit/s, static offline limit 300 Mbit/s, host limit 500 Mbit/s).
//!
//! In each mode: an idle ping baseline, then an offline `iperf3 -P 4` flood for 8 s with an
//! online `ping -i 0.01 -c 500` in its middle.

use std::{
    collections::HashMap,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use enforcer::{
    actuators::tc::reconcile::{Limits, Mode, Reconciler, Topology},
    model::{Class, netns::Namespace, tc::classid},
    policy::shaping::{BondShape, CLASS_OFFLINE, CLASS_ONLINE},
};
use enforcer_tests::{
    cgroup::{TestCgroup, spawn_in},
    net::{NetTopology, Pod, iperf3_client, iperf3_received_bps, iperf3_server},
    unique_name,
};
use serde_json::json;

use super::percentile;

const CAPACITY: u64 = 125_000_000;
const OFFLINE_LIMIT: u64 = 37_500_000;
const FLOOD_SECONDS: u32 = 8;
const PINGS: usize = 500;
const UNSHAPED: &[&str] = &[
    "root", "tbf", "rate", "1gbit", "burst", "125kb", "latency", "12ms",
];

/// `ping -i 0.01 -c PINGS` from `pod` in `cgroup`: the RTT of every reply, ms, sorted,
/// and how many were lost.
fn ping(pod: &Pod, cgroup: &TestCgroup, target: &str) -> anyhow::Result<(Vec<f64>, usize)> {
    let mut c = Command::new("timeout");
    c.args(["20", "ip", "netns", "exec", pod.ns.name(), "ping", "-n"])
        .args(["-i", "0.01", "-W", "1", "-c", &PINGS.to_string(), target])
        .stdout(Stdio::piped());
    let out = spawn_in(&[cgroup], c).into_inner().wait_with_output()?;
    let mut rtts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(" time=")?.1.split(' ').next()?.parse().ok())
        .collect();
    ensure!(!rtts.is_empty(), "no ping reply");
    rtts.sort_by(f64::total_cmp);
    let lost = PINGS.saturating_sub(rtts.len());
    Ok((rtts, lost))
}

fn rtt_json(rtts: &[f64], lost: usize) -> serde_json::Value {
    json!({
        "p50_ms": percentile(rtts, 50.0),
        "p99_ms": percentile(rtts, 99.0),
        "max_ms": rtts[rtts.len() - 1],
        "replies": rtts.len(),
        "lost": lost,
    })
}

/// Bytes sent through each of `bond0`'s classes (`ef00:10` ...), from `tc -s class show`
/// (iproute2 6.1 prints HTB class statistics as text even with `-j`).
fn class_bytes(t: &NetTopology) -> HashMap<String, u64> {
    let text = NetTopology::tc(&t.host, &["-s", "class", "show", "dev", "bond0"]);
    let mut bytes = HashMap::new();
    let mut class = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("class htb ") {
            class = rest.split(' ').next().map(str::to_string);
        } else if let (Some(c), Some(rest)) = (&class, line.trim().strip_prefix("Sent "))
            && let Some(n) = rest.split(' ').next().and_then(|n| n.parse().ok())
        {
            bytes.insert(c.clone(), n);
        }
    }
    bytes
}

struct Pods<'a> {
    t: &'a NetTopology,
    off: &'a TestCgroup,
    on: &'a TestCgroup,
}

/// Idle RTT, then the flood with the ping in its middle.
fn one_mode(p: &Pods, label: &str, port: u16) -> anyhow::Result<serde_json::Value> {
    let (off_pod, on_pod) = (&p.t.pods[0], &p.t.pods[1]);
    let (idle, idle_lost) = ping(on_pod, p.on, &p.t.wire_addr)?;
    let _server = iperf3_server(&p.t.wire, port, FLOOD_SECONDS + 20);
    let flood = spawn_in(
        &[p.off],
        iperf3_client(
            &off_pod.ns,
            &p.t.wire_addr,
            port,
            FLOOD_SECONDS,
            &["-P", "4"],
        ),
    );
    // Let TCP fill the queues before measuring; the pings (5 s) end before the flood.
    std::thread::sleep(Duration::from_millis(1500));
    let (loaded, loaded_lost) = ping(on_pod, p.on, &p.t.wire_addr)?;
    let offline_bps = iperf3_received_bps(flood);
    println!(
        "   {label:<9} offline {:>7.1} Mbit/s   online RTT idle p50 {:>6.3} p99 {:>6.3} ms   during flood p50 {:>7.3} p99 {:>7.3} ms (max {:.3}, lost {loaded_lost}/{PINGS})",
        offline_bps / 1e6,
        percentile(&idle, 50.0),
        percentile(&idle, 99.0),
        percentile(&loaded, 50.0),
        percentile(&loaded, 99.0),
        loaded[loaded.len() - 1],
    );
    Ok(json!({
        "offline_mbit_s": offline_bps / 1e6,
        "idle_rtt": rtt_json(&idle, idle_lost),
        "flood_rtt": rtt_json(&loaded, loaded_lost),
    }))
}

fn namespace(pod: &Pod, class: Class) -> anyhow::Result<Namespace> {
    let path = Path::new("/run/netns").join(pod.ns.name());
    Ok(Namespace {
        inode: enforcer::model::netns::inode(&path)?,
        path,
        owner: format!("pod-{}", pod.dev),
        class,
        priority: None,
        processes: 1,
    })
}

pub fn run() -> anyhow::Result<serde_json::Value> {
    println!(
        "== online ping RTT during an offline flood (iperf3 -P 4, {FLOOD_SECONDS} s; ping -i 0.01 x {PINGS}): 1 Gbit/s FIFO vs enforcer (offline limit 300 Mbit/s)"
    );
    let started = Instant::now();
    let mut programs = super::load_programs().context("loading the programs")?;
    let t = NetTopology::new(62, &["mvoff0", "mvon0"], &[]);
    let off = TestCgroup::create("unified", &unique_name("enf-bench-off"));
    let on = TestCgroup::create("unified", &unique_name("enf-bench-on"));
    let mut classifier = programs.net_classifier()?;
    classifier.sync(&HashMap::from([
        (off.id(), classid(CLASS_OFFLINE)),
        (on.id(), classid(CLASS_ONLINE)),
    ]))?;
    let pods = Pods {
        t: &t,
        off: &off,
        on: &on,
    };

    // Unshaped: the FIFO bottleneck alone.
    let mut add = vec!["qdisc", "add", "dev", "bond0"];
    add.extend_from_slice(UNSHAPED);
    NetTopology::tc(&t.host, &add);
    let unshaped = one_mode(&pods, "unshaped", 5301)?;
    NetTopology::tc(&t.host, &["qdisc", "del", "dev", "bond0", "root"]);

    // Shaped: one reconciler pass, as the daemon's first.
    let mut r = Reconciler::new(
        Topology {
            interface: "bond0".into(),
            host_netns: t.host_path(),
            offline_interfaces: None,
        },
        None,
    )?;
    let namespaces = [
        namespace(&t.pods[0], Class::Offline)?,
        namespace(&t.pods[1], Class::Online)?,
    ];
    let limits = Limits {
        bond: BondShape {
            capacity: CAPACITY,
            host_limit: 62_500_000,
            offline_limit: OFFLINE_LIMIT,
        },
        offline_ingress: OFFLINE_LIMIT,
    };
    let prog_id = programs.classifier_id().context("no classifier")?;
    let prog_fd = {
        use std::os::fd::AsRawFd;
        programs
            .classifier_fd()
            .context("no classifier")?
            .as_raw_fd()
    };
    let s = r.survey(&namespaces, &limits, prog_id, Mode::Shape);
    let applied = r.apply(&s, Some(prog_fd), &|_| true);
    ensure!(
        applied.failures.is_empty() && s.errors.is_empty(),
        "{:?} {:?}",
        applied.failures,
        s.errors
    );
    let before = class_bytes(&t);
    let shaped = one_mode(&pods, "shaped", 5302);
    let after = class_bytes(&t);
    let s = r.survey(&namespaces, &limits, prog_id, Mode::RemoveAll);
    let removed = r.apply(&s, None, &|_| true);
    let shaped = shaped?;
    ensure!(removed.failures.is_empty(), "{:?}", removed.failures);

    let delta = |class: &str| {
        after.get(class).copied().unwrap_or(0) - before.get(class).copied().unwrap_or(0)
    };
    let (online_b, offline_b, host_b) = (delta("ef00:10"), delta("ef00:30"), delta("ef00:20"));
    let achieved = shaped["offline_mbit_s"].as_f64().unwrap_or(0.0);
    let limit_mbit = OFFLINE_LIMIT as f64 * 8.0 / 1e6;
    println!(
        "   rate accuracy: shaped offline {achieved:.1} Mbit/s of {limit_mbit:.0} Mbit/s = {:.3} (TCP payload over L2 bytes at MTU 1500: 1448/1514 = 0.956)",
        achieved / limit_mbit
    );
    println!(
        "   bond0 classes during the shaped run: offline {:.1} MB, online {:.1} kB, host {:.1} kB",
        offline_b as f64 / 1e6,
        online_b as f64 / 1e3,
        host_b as f64 / 1e3
    );
    let took = started.elapsed();
    println!("   (took {:.0} s)", took.as_secs_f64());
    Ok(json!({
        "capacity_mbit_s": CAPACITY as f64 * 8.0 / 1e6,
        "unshaped_bottleneck": format!("tc qdisc add dev bond0 {}", UNSHAPED.join(" ")),
        "unshaped": unshaped,
        "shaped": shaped,
        "offline_limit_mbit_s": limit_mbit,
        "offline_achieved_over_limit": achieved / limit_mbit,
        "shaped_bond0_class_bytes": {
            "online": online_b,
            "host": host_b,
            "offline": offline_b,
        },
        "seconds": took.as_secs_f64(),
    }))
}

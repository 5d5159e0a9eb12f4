//! Shaping by the real daemon, measured: iperf3 floods from an offline and an online pod
//! through `bond0`, with a static limit raised by SIGHUP, and the dynamic offline share
//! following online traffic. Every load is bounded in time.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use enforcer_tests::{
    daemon::Daemon,
    net::{NetTopology, iperf3_client, iperf3_received_bps, iperf3_server},
    pods::{CoLocated, MBIT, PodCgroup, class_line, offline_limit, tc_rate_mbit, wait_until},
    require_root,
};

/// Offline and online iperf3 floods at the same time for `seconds`: bits per second each
/// received.
fn floods(t: &NetTopology, off: &PodCgroup, on: &PodCgroup, seconds: u32) -> (f64, f64) {
    let _s1 = iperf3_server(&t.wire, 5201, seconds + 20);
    let _s2 = iperf3_server(&t.wire, 5202, seconds + 20);
    let offline = off.run(iperf3_client(
        &t.pods[0].ns,
        &t.wire_addr,
        5201,
        seconds,
        &[],
    ));
    let online = on.run(iperf3_client(
        &t.pods[1].ns,
        &t.wire_addr,
        5202,
        seconds,
        &[],
    ));
    (iperf3_received_bps(offline), iperf3_received_bps(online))
}

#[test]
fn shaping_is_real_and_follows_a_raised_limit() {
    require_root();
    let node = CoLocated::new(42, true);
    let (t, off, on) = (&node.t, &node.off, &node.on);
    let section = |limit: &str| {
        node.config(&format!(
            "capacity = \"10gbit\"\nhost_limit = \"5gbit\"\nceiling = \"5gbit\"\npolicy = \"static\"\noffline_limit = \"{limit}\""
        ))
    };
    let daemon = Daemon::start("", &section("100mbit"));
    assert!(
        wait_until(Duration::from_secs(10), || (offline_limit(&daemon)
            - 12.5e6)
            .abs()
            < 1.0),
        "limit never in force:\n{}",
        daemon.log()
    );
    let (offline, online) = floods(t, off, on, 5);
    eprintln!(
        "limit 100 Mbit/s: offline {:.1} Mbit/s, online {:.1} Mbit/s",
        offline / MBIT,
        online / MBIT
    );
    assert!(
        (90.0 * MBIT..=110.0 * MBIT).contains(&offline),
        "offline {offline} bit/s, wanted 100 Mbit/s ± 10%"
    );
    assert!(
        online > 5.0 * offline,
        "online starved: {online} bit/s next to offline {offline} bit/s"
    );

    // Raise the limit: a reloaded configuration, and the rate follows.
    std::fs::write(
        &daemon.config,
        std::fs::read_to_string(&daemon.config)
            .unwrap()
            .replace(&section("100mbit"), &section("300mbit")),
    )
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || (offline_limit(&daemon) - 37.5e6)
            .abs()
            < 1.0),
        "raised limit never in force:\n{}",
        daemon.log()
    );
    assert!(class_line(&t.host, "bond0", "ef00:30").contains("rate 300Mbit ceil 300Mbit"));
    assert!(class_line(&t.pods[0].ns, "mvoff0", "ef00:1").contains("rate 300Mbit ceil 300Mbit"));
    let (offline, online) = floods(t, off, on, 5);
    eprintln!(
        "limit 300 Mbit/s: offline {:.1} Mbit/s, online {:.1} Mbit/s",
        offline / MBIT,
        online / MBIT
    );
    assert!(
        (270.0 * MBIT..=330.0 * MBIT).contains(&offline),
        "offline {offline} bit/s, wanted 300 Mbit/s ± 10%"
    );
    assert!(
        online > 2.0 * offline,
        "online starved: {online} bit/s next to offline {offline} bit/s"
    );
}

#[test]
fn an_online_burst_shrinks_the_offline_share_within_a_second() {
    require_root();
    let node = CoLocated::new(43, true);
    let (t, on) = (&node.t, &node.on);
    // offline = 1 Gbit/s x 0.9 - online, between 50 Mbit/s and 900 Mbit/s.
    let daemon = Daemon::start(
        "",
        &node.config(
            "capacity = \"1gbit\"\npolicy = \"dynamic\"\nwatermark = 0.9\nceiling = \"900mbit\"\nfloor = \"50mbit\"\nhost_limit = \"500mbit\"",
        ),
    );
    let idle = 900.0 * MBIT / 8.0;
    assert!(
        wait_until(Duration::from_secs(10), || (offline_limit(&daemon) - idle)
            .abs()
            < idle * 0.01),
        "idle limit never in force ({}):\n{}",
        offline_limit(&daemon),
        daemon.log()
    );
    let _server = iperf3_server(&t.wire, 5202, 30);
    // The clock starts when online bytes flow, as the online macvlan's own counter (an
    // observer independent of enforcer) shows them: not when iperf3 is launched.
    let tx_bytes = || -> u64 {
        let out = Command::new("ip")
            .args([
                "-n",
                t.pods[1].ns.name(),
                "-j",
                "-s",
                "link",
                "show",
                "dev",
                "mvon0",
            ])
            .output()
            .expect("ip -s link");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
        v[0]["stats64"]["tx"]["bytes"].as_u64().unwrap_or(0)
    };
    let base = tx_bytes();
    let online = on.run(iperf3_client(
        &t.pods[1].ns,
        &t.wire_addr,
        5202,
        4,
        &["-b", "500M"],
    ));
    assert!(
        wait_until(Duration::from_secs(5), || tx_bytes() > base + 1_000_000),
        "online traffic never started"
    );
    let started = Instant::now();
    let dropped = wait_until(Duration::from_secs(3), || {
        offline_limit(&daemon) < idle * 0.9
    });
    let elapsed = started.elapsed();
    eprintln!(
        "offline limit dropped below 90% of its idle value {elapsed:?} after online traffic started"
    );
    assert!(
        dropped && elapsed < Duration::from_secs(1),
        "limit still {} after {elapsed:?}",
        offline_limit(&daemon)
    );
    // tc itself shows the smaller offline class.
    let class = class_line(&t.host, "bond0", "ef00:30");
    let ceil_mbit = class
        .split_whitespace()
        .skip_while(|w| *w != "ceil")
        .nth(1)
        .and_then(tc_rate_mbit)
        .unwrap_or_else(|| panic!("no ceil in {class}"));
    assert!(ceil_mbit < 810.0, "{class}");
    // With the window full of online traffic: 900 - 500 = 400 Mbit/s (± 15%).
    assert!(
        wait_until(Duration::from_secs(3), || (offline_limit(&daemon) * 8.0
            / MBIT
            - 400.0)
            .abs()
            < 60.0),
        "limit {} Mbit/s with 500 Mbit/s online",
        offline_limit(&daemon) * 8.0 / MBIT
    );
    // The operator sees it too: `enforcer top` lists the online cgroup's traffic.
    let top = daemon.cli(&["top", "-n", "1"]);
    let top = String::from_utf8_lossy(&top.stdout);
    let row = top
        .lines()
        .skip_while(|l| !l.starts_with("network bond0"))
        .find(|l| l.ends_with(&on.name) && l.contains("online"))
        .unwrap_or_else(|| panic!("online cgroup not in top's network table:\n{top}"));
    assert!(row.contains("Mbit"), "{row}");
    let online_bps = iperf3_received_bps(online);
    eprintln!("online sent {:.0} Mbit/s", online_bps / MBIT);
}

//! A co-located node's network in miniature, made of namespaces this process creates:
//!
//! - `host`: the node's namespace as enforcer sees it, holding `bond0`, a veth whose peer
//!   `uplink` is in `wire` (the rest of the network);
//! - one namespace per pod, each holding a macvlan subinterface of `bond0` (bridge mode),
//!   moved there as a CNI plugin would;
//! - optionally macvlans left in `host`.
//!
//! Addresses are in 10.213.<net>.0/24 inside these namespaces only; traffic never leaves
//! them. Everything is removed on drop (namespaces deleted, their processes killed).

use std::{path::PathBuf, process::Command};

use crate::{netns::Netns, unique_name};

pub struct Pod {
    pub ns: Netns,
    /// The macvlan's name inside the pod's namespace.
    pub dev: String,
    pub addr: String,
}

pub struct NetTopology {
    pub host: Netns,
    pub wire: Netns,
    pub pods: Vec<Pod>,
    /// Macvlans left in the host namespace.
    pub host_subs: Vec<String>,
    /// The wire's address (where iperf3 servers listen).
    pub wire_addr: String,
}

impl NetTopology {
    /// `bond0` with one pod per entry of `pods` (the macvlan's name in its pod), plus
    /// `host_subs` macvlans left on the host. `net` picks the /24 (10.213.net.0).
    pub fn new(net: u8, pods: &[&str], host_subs: &[&str]) -> NetTopology {
        let host = Netns::create(&unique_name("enf-host"));
        let wire = Netns::create(&unique_name("enf-wire"));
        host.ip(&["link", "set", "lo", "up"]);
        wire.ip(&["link", "set", "lo", "up"]);
        host.ip(&[
            "link",
            "add",
            "bond0",
            "type",
            "veth",
            "peer",
            "name",
            "uplink",
            "netns",
            wire.name(),
        ]);
        host.ip(&["link", "set", "bond0", "up"]);
        let wire_addr = format!("10.213.{net}.1");
        wire.ip(&["addr", "add", &format!("{wire_addr}/24"), "dev", "uplink"]);
        wire.ip(&["link", "set", "uplink", "up"]);
        let mut topology = NetTopology {
            host,
            wire,
            pods: Vec::new(),
            host_subs: Vec::new(),
            wire_addr,
        };
        for (i, dev) in pods.iter().enumerate() {
            let ns = Netns::create(&unique_name("enf-pod"));
            ns.ip(&["link", "set", "lo", "up"]);
            topology.host.ip(&[
                "link", "add", "link", "bond0", "name", dev, "type", "macvlan", "mode", "bridge",
            ]);
            topology.host.ip(&["link", "set", dev, "netns", ns.name()]);
            let addr = format!("10.213.{net}.{}", 11 + i);
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
            topology.pods.push(Pod {
                ns,
                dev: dev.to_string(),
                addr,
            });
        }
        for dev in host_subs {
            topology.host.ip(&[
                "link", "add", "link", "bond0", "name", dev, "type", "macvlan", "mode", "bridge",
            ]);
            topology.host.ip(&["link", "set", dev, "up"]);
            topology.host_subs.push(dev.to_string());
        }
        topology
    }

    /// The path entering the host namespace (`network.netns` of the daemon under test).
    pub fn host_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(self.host.name())
    }

    /// `tc ARGS` inside `ns`, its stdout.
    pub fn tc(ns: &Netns, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", ns.name(), "tc"])
            .args(args)
            .output()
            .expect("run tc");
        assert!(
            out.status.success(),
            "tc {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `tc -j qdisc show` of the namespace, parsed.
    pub fn qdiscs(ns: &Netns) -> Vec<serde_json::Value> {
        serde_json::from_str(&Self::tc(ns, &["-j", "qdisc", "show"])).expect("tc -j qdisc show")
    }

    /// Everything tc shows in a namespace, without statistics: qdiscs, classes and filters
    /// of every interface, for before/after comparisons.
    pub fn tc_state(ns: &Netns) -> String {
        let links: Vec<serde_json::Value> = serde_json::from_slice(
            &Command::new("ip")
                .args(["-n", ns.name(), "-j", "link", "show"])
                .output()
                .expect("ip link")
                .stdout,
        )
        .expect("ip -j link");
        let mut out = Self::tc(ns, &["qdisc", "show"]);
        for l in links {
            let dev = l["ifname"].as_str().unwrap_or_default().to_string();
            out += &Self::tc(ns, &["-d", "class", "show", "dev", &dev]);
            for parent in ["root", "ingress"] {
                let args = ["filter", "show", "dev", &dev, parent];
                // A filter dump on a device without that qdisc fails: nothing to show.
                let r = Command::new("ip")
                    .args(["netns", "exec", ns.name(), "tc"])
                    .args(args)
                    .output()
                    .expect("run tc");
                out += &String::from_utf8_lossy(&r.stdout);
            }
        }
        out
    }
}

/// An iperf3 server in `ns` on `port`, serving one test and gone after `seconds` at most;
/// returns once it listens.
pub fn iperf3_server(ns: &Netns, port: u16, seconds: u32) -> crate::process::ChildGuard {
    let mut c = Command::new("timeout");
    c.args([
        &seconds.to_string(),
        "ip",
        "netns",
        "exec",
        ns.name(),
        "iperf3",
        "-s",
        "-1",
    ])
    .args(["-p", &port.to_string()])
    .stdout(std::process::Stdio::null());
    let server = crate::process::ChildGuard::spawn(c);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let out = Command::new("ip")
            .args(["netns", "exec", ns.name(), "ss", "-Hltn"])
            .arg(format!("sport = :{port}"))
            .output()
            .expect("ss");
        if !out.stdout.is_empty() {
            return server;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("iperf3 server on port {port} did not start");
}

/// An iperf3 client command run in `ns` (bounded by `timeout`), JSON output on stdout.
pub fn iperf3_client(ns: &Netns, server: &str, port: u16, seconds: u32, extra: &[&str]) -> Command {
    let mut c = Command::new("timeout");
    c.args([
        &(seconds + 15).to_string(),
        "ip",
        "netns",
        "exec",
        ns.name(),
        "iperf3",
        "-J",
    ])
    .args([
        "-c",
        server,
        "-p",
        &port.to_string(),
        "-t",
        &seconds.to_string(),
    ])
    .args(extra)
    .stdout(std::process::Stdio::piped());
    c
}

/// Bits per second the receiver got, from iperf3's JSON.
pub fn iperf3_received_bps(child: crate::process::ChildGuard) -> f64 {
    let out = child
        .into_inner()
        .wait_with_output()
        .expect("iperf3 output");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("iperf3 JSON: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no end.sum_received in {json}"))
}

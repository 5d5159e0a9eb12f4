//! A co-located node for the network tests: the namespaces of [`crate::net::NetTopology`]
//! with an offline pod and an online pod, each pod's process in a cgroup the configuration
//! classifies (offline P3 or online), and the helpers that read back what the daemon did.

use std::process::Command;

pub use crate::wait_until;
use crate::{
    daemon::{Daemon, metric_value},
    layout::Unit,
    net::{NetTopology, Pod},
    netns::Netns,
    process::ChildGuard,
    unique_name,
};

/// A pod's cgroup, at the same path in every hierarchy of the node (the CPU one the daemon's
/// index uses, cgroup2 the one sockets are charged to), whatever its layout.
pub struct PodCgroup {
    pub name: String,
    unit: Unit,
}

impl PodCgroup {
    pub fn new(prefix: &str) -> PodCgroup {
        let name = unique_name(prefix);
        PodCgroup {
            unit: Unit::named(&name),
            name,
        }
    }

    /// `program args` inside `ns`, in this cgroup.
    pub fn spawn(&self, ns: &Netns, program: &str, args: &[&str]) -> ChildGuard {
        let mut c = ns.command(program);
        c.args(args);
        self.run(c)
    }

    /// `command`, started in this cgroup.
    pub fn run(&self, command: Command) -> ChildGuard {
        self.unit.spawn(command)
    }
}

/// A 1 Gbit/s link with a 500 Mbit/s host cap: `[network]` keys most tests share.
pub const SMALL_LINK: &str =
    "capacity = \"1gbit\"\nhost_limit = \"500mbit\"\nceiling = \"1gbit\"\nfloor = \"10mbit\"\n";

/// `bond0` with an offline pod (`mvoff0`, pods[0]) and, with `online`, an online pod
/// (`mvon0`, pods[1]), each holding a sleeping process in its cgroup so that the daemon
/// finds the namespace's owner. Dropped in order: processes, cgroups, namespaces.
pub struct CoLocated {
    _sleepers: Vec<ChildGuard>,
    pub off: PodCgroup,
    pub on: PodCgroup,
    pub t: NetTopology,
}

impl CoLocated {
    pub fn new(net: u8, online: bool) -> CoLocated {
        let pods: &[&str] = if online {
            &["mvoff0", "mvon0"]
        } else {
            &["mvoff0"]
        };
        let t = NetTopology::new(net, pods, &[]);
        let (off, on) = (PodCgroup::new("enf-off"), PodCgroup::new("enf-on"));
        let mut sleepers = vec![off.spawn(&t.pods[0].ns, "sleep", &["120"])];
        if online {
            sleepers.push(on.spawn(&t.pods[1].ns, "sleep", &["120"]));
        }
        CoLocated {
            _sleepers: sleepers,
            off,
            on,
            t,
        }
    }

    /// Configuration text: `[network]` in the test's host namespace with `keys`, and rules
    /// classifying the pods' cgroups (offline P3, online).
    pub fn config(&self, keys: &str) -> String {
        format!(
            "[network]\nnetns = \"{}\"\n{keys}\n\
             [classify]\nappend_defaults = true\n\
             [[classify.rules]]\nname = \"test-offline\"\nmatch = '{}'\nclass = \"offline\"\npriority = \"P3\"\n\
             [[classify.rules]]\nname = \"test-online\"\nmatch = '{}'\nclass = \"online\"\n",
            self.t.host_path().display(),
            self.off.name,
            self.on.name
        )
    }
}

pub fn root_qdisc(ns: &Netns, dev: &str) -> serde_json::Value {
    NetTopology::qdiscs(ns)
        .into_iter()
        .find(|q| q["dev"] == dev && q["root"] == true)
        .unwrap_or_else(|| panic!("no root qdisc on {dev}"))
}

pub fn has_link(ns: &Netns, dev: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns.name(), "link", "show", "dev", dev])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `class htb ef00:30 ... rate 100Mbit ceil 100Mbit` as `tc -d class show` prints it.
pub fn class_line(ns: &Netns, dev: &str, classid: &str) -> String {
    NetTopology::tc(ns, &["-d", "class", "show", "dev", dev])
        .lines()
        .find(|l| l.starts_with(&format!("class htb {classid} ")))
        .unwrap_or_else(|| panic!("no class {classid} on {dev}"))
        .to_string()
}

pub fn ifb_of(pod: &Pod) -> String {
    let out = Command::new("ip")
        .args(["-n", pod.ns.name(), "-j", "link", "show", "dev", &pod.dev])
        .output()
        .expect("ip link");
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
    format!("eifb{}", links[0]["ifindex"])
}

pub const MBIT: f64 = 1e6;

/// A rate as tc prints it (`401351Kbit`, `100Mbit`, `1Gbit`) in Mbit/s.
pub fn tc_rate_mbit(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = text.split_at(split);
    let scale = match unit {
        "bit" => 1e-6,
        "Kbit" => 1e-3,
        "Mbit" => 1.0,
        "Gbit" => 1e3,
        _ => return None,
    };
    n.parse::<f64>().ok().map(|v| v * scale)
}

/// The limit in force, bytes per second, from the metrics.
pub fn offline_limit(daemon: &Daemon) -> f64 {
    metric_value(
        &daemon.scrape(),
        r#"enforcer_network_offline_limit_bytes_per_second{direction="egress"}"#,
    )
    .unwrap_or(0.0)
}

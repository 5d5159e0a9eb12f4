//! Unit tests of configuration parsing and its error messages.
use std::{path::PathBuf, time::Duration};

use super::*;
use crate::{
    model::{Class, Priority},
    policy::capacity::Policy,
};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/enforcer.toml"))
}

fn error(text: &str) -> String {
    let e = parse(text).expect_err("must be refused").to_string();
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    assert!(e.starts_with("/etc/enforcer.toml: "), "{e}");
    e
}

#[test]
fn empty_file_gives_the_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.daemon.tick, Duration::from_millis(100));
    assert_eq!(c.daemon.window, Duration::from_secs(1));
    assert_eq!(c.daemon.metrics_listen.port(), 9977);
    assert_eq!(c.daemon.hierarchy, HierarchyChoice::Auto);
    assert_eq!(c.rules.rules().len(), RuleSet::defaults().rules().len());
}

#[test]
fn a_full_file_is_read() {
    let c = parse(
        r#"
[daemon]
node_name = "n1"
tick = "50ms"
window = "2s"
rescan_interval = "500ms"
metrics_listen = "127.0.0.1:9000"
socket = "/tmp/e.sock"
top_n = 5
hierarchy = "v1"
cgroup_map_entries = 4096

[classify]
append_defaults = true

[[classify.rules]]
name = "spark-p1"
match = 'spark-p1'
class = "offline"
priority = "P1"

[[classify.rules]]
name = "db"
match = '^db/'
class = "online"
"#,
    )
    .unwrap();
    let d = &c.daemon;
    assert_eq!(
        (d.node_name.as_str(), d.tick, d.top_n),
        ("n1", Duration::from_millis(50), 5)
    );
    assert_eq!(d.hierarchy, HierarchyChoice::V1);
    assert_eq!(d.socket, PathBuf::from("/tmp/e.sock"));
    let cls = c.rules.classify("x/spark-p1-exec");
    assert_eq!(
        (cls.class, cls.priority),
        (Class::Offline, Some(Priority::P1))
    );
    assert_eq!(c.rules.classify("db/x").class, Class::Online);
    // Defaults appended after the configured rules.
    assert_eq!(c.rules.classify("yarn/container_1").class, Class::Offline);
    assert_eq!(c.rules.rules().len(), 2 + RuleSet::defaults().rules().len());
}

#[test]
fn configured_rules_replace_the_defaults_unless_appended() {
    let c =
        parse("[[classify.rules]]\nname = \"a\"\nmatch = \"^a$\"\nclass = \"online\"\n").unwrap();
    assert_eq!(c.rules.rules().len(), 1);
    assert_eq!(c.rules.classify("yarn/container_1").class, Class::System);
}

#[test]
fn errors_name_the_file_and_the_field() {
    let e = error("[daemon]\nbogus = 1\n");
    assert!(
        e.contains("daemon.bogus") && e.contains("unknown field"),
        "{e}"
    );
    let e = error("nope = 1\n");
    assert!(e.contains("nope") && e.contains("unknown field"), "{e}");
    let e = error("[daemon]\ntop_n = \"x\"\n");
    assert!(
        e.contains("daemon.top_n") && e.contains("invalid type"),
        "{e}"
    );
    let e = error("[daemon]\nmetrics_listen = \"nope\"\n");
    assert!(
        e.contains("daemon.metrics_listen") && e.contains("invalid socket address \"nope\""),
        "{e}"
    );
    let e = error("[daemon]\ntick = \"10 parsecs\"\n");
    assert!(
        e.contains("daemon.tick") && e.contains("invalid duration"),
        "{e}"
    );
    let e = error("[daemon]\ntick = \"0s\"\n");
    assert!(e.contains("daemon.tick"), "{e}");
    let e = error("[daemon]\ntick = \"2s\"\nwindow = \"1s\"\n");
    assert!(e.contains("daemon.window") && e.contains("shorter"), "{e}");
    let e = error("[daemon]\ntop_n = 0\n");
    assert!(e.contains("daemon.top_n"), "{e}");
    let e = error(
        "[[classify.rules]]\nname = \"a\"\nmatch = \"x\"\nclass = \"online\"\npriority = \"P1\"\n",
    );
    assert!(e.contains("classify.rules[0].priority"), "{e}");
    let e = error(
        "[[classify.rules]]\nname = \"a\"\nmatch = \"x\"\nclass = \"offline\"\n[[classify.rules]]\nname = \"b\"\nmatch = \"(\"\nclass = \"offline\"\n",
    );
    assert!(
        e.contains("classify.rules[1].match") && e.contains("invalid regex"),
        "{e}"
    );
    let e = error("[[classify.rules]]\nname = \"a\"\nmatch = \"x\"\nclass = \"sometimes\"\n");
    assert!(
        e.contains("classify.rules[0].class") && e.contains("unknown variant"),
        "{e}"
    );
    let e = error("[daemon\ntick = 1\n");
    assert!(e.contains("line 1"), "{e}");
}

#[test]
fn ladder_section() {
    let c = parse(
        "[ladder]\ncpu_trigger = 0.5\ncpu_recover = 0.4\nsustain = \"0s\"\nevict_after = \"1s\"\n",
    )
    .unwrap();
    assert_eq!(c.protection.ladder.cpu_trigger, 0.5);
    assert_eq!(c.protection.ladder.sustain, Duration::ZERO);
    assert_eq!(c.protection.ladder.evict_after, Duration::from_secs(1));
    let e = error("[ladder]\ncpu_trigger = 0.5\n");
    assert!(
        e.contains("ladder.cpu_recover") && e.contains("flap"),
        "{e}"
    );
    let e = error("[ladder]\ncpu_trigger = 1.5\n");
    assert!(
        e.contains("ladder.cpu_trigger") && e.contains("share"),
        "{e}"
    );
    let e = error("[ladder]\nsustain = \"later\"\n");
    assert!(
        e.contains("ladder.sustain") && e.contains("invalid delay"),
        "{e}"
    );
}

#[test]
fn capacity_section() {
    let c = parse("[capacity]\npolicy = \"static\"\ncpu_share = 0.4\nmemory_share = 0.3\nreserved_daemons = \"40GiB\"\n").unwrap();
    assert_eq!(
        c.capacity.rule.policy,
        Policy::Static {
            cpu_share: 0.4,
            memory_share: 0.3
        }
    );
    assert_eq!(
        c.capacity.rule.reserved_daemons,
        crate::policy::capacity::Amount::Bytes(40 << 30)
    );
    let c = parse("[capacity]\nreserved_daemons = \"13%\"\nmemory_floor = \"4GiB\"\n").unwrap();
    assert_eq!(
        c.capacity.rule.reserved_daemons,
        crate::policy::capacity::Amount::Share(0.13)
    );
    assert_eq!(
        c.capacity.rule.memory_floor,
        crate::policy::capacity::Amount::Bytes(4 << 30)
    );
    let e = parse("[capacity]\nreserved_daemons = \"130%\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("capacity.reserved_daemons") && e.contains("130%"),
        "{e}"
    );
    let c = parse("[capacity]\npolicy = \"time_of_day\"\n[[capacity.schedule]]\nstart = \"09:00\"\ncpu_share = 0.2\nmemory_share = 0.2\n[[capacity.schedule]]\nstart = \"03:00\"\ncpu_share = 0.6\nmemory_share = 0.5\n").unwrap();
    match c.capacity.rule.policy {
        Policy::TimeOfDay(s) => assert_eq!(
            s.iter().map(|e| e.start_minute).collect::<Vec<_>>(),
            [180, 540]
        ),
        p => panic!("{p:?}"),
    }
    let e = error("[capacity]\npolicy = \"static\"\ncpu_share = 0.4\n");
    assert!(
        e.contains("capacity.memory_share") && e.contains("required"),
        "{e}"
    );
    let e = error(
        "[capacity]\npolicy = \"time_of_day\"\n[[capacity.schedule]]\nstart = \"25:00\"\ncpu_share = 0.2\nmemory_share = 0.2\n",
    );
    assert!(e.contains("capacity.schedule[0].start"), "{e}");
    let e = error("[capacity]\nreserved_daemons = \"lots\"\n");
    assert!(
        e.contains("capacity.reserved_daemons") && e.contains("invalid size"),
        "{e}"
    );
    let e = error("[capacity]\npolicy = \"greedy\"\n");
    assert!(e.contains("capacity.policy"), "{e}");
    assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
}

#[test]
fn schedule_times_are_hours_and_minutes_of_a_day() {
    let schedule = |start: &str| {
        format!(
            "[capacity]\npolicy = \"time_of_day\"\n[[capacity.schedule]]\nstart = \"{start}\"\ncpu_share = 0.2\nmemory_share = 0.2\n"
        )
    };
    match parse(&schedule("9:05")).unwrap().capacity.rule.policy {
        Policy::TimeOfDay(s) => assert_eq!(s[0].start_minute, 545),
        p => panic!("{p:?}"),
    }
    // "71582789:00" overflowed `h * 60` (a panic with overflow checks, a wrapped minute
    // that passed the range check without); "9:75" was 10:15, "+9:00" was 09:00.
    for bad in [
        "71582789:00",
        "9:75",
        "+9:00",
        "9:+5",
        "24:00",
        "009:00",
        "9",
        ":",
        "",
    ] {
        let e = error(&schedule(bad));
        assert!(e.contains("capacity.schedule[0].start"), "{bad}: {e}");
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
    for bad in ["", "ms", "10", "-1s", "1 parsec", "0ms", "1e3s"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn unreadable_file_is_one_line() {
    let e = Config::load(Path::new("/nonexistent/enforcer.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/enforcer.toml: cannot read:"),
        "{e}"
    );
}

#[test]
fn the_network_section_is_read_and_checked() {
    let c = parse(
        "[network]\ninterface = \"bond1\"\npolicy = \"static\"\noffline_limit = \"100mbit\"\ncapacity = \"1gbit\"\nceiling = \"800mbit\"\noffline_interfaces = '^mvoff'\n",
    )
    .unwrap();
    let n = &c.network;
    assert_eq!(n.interface, "bond1");
    assert_eq!(
        n.rule.policy,
        crate::policy::bandwidth::LimitPolicy::Static(12_500_000)
    );
    assert_eq!(n.rule.capacity, 125_000_000);
    assert!(n.offline_interfaces.as_ref().unwrap().is_match("mvoff0"));
    // Defaults: dynamic, 20 Gbit/s bond, host capped at 10 Gbit/s.
    let d = parse("").unwrap().network;
    assert_eq!(d.rule.capacity, 2_500_000_000);
    assert_eq!(d.host_limit, 1_250_000_000);

    let e = error("[network]\npolicy = \"static\"\n");
    assert!(e.contains("network.offline_limit"), "{e}");
    let e = error("[network]\ncapacity = \"10gigabit\"\n");
    assert!(
        e.contains("network.capacity") && e.contains("invalid rate"),
        "{e}"
    );
    let e = error("[network]\ninterface = \"a-very-long-interface-name\"\n");
    assert!(e.contains("network.interface"), "{e}");
    let e = error("[network]\nfloor = \"2gbit\"\nceiling = \"1gbit\"\n");
    assert!(e.contains("network.floor"), "{e}");
    let e = error("[network]\nwatermark = 1.5\n");
    assert!(e.contains("network.watermark"), "{e}");
}

#[test]
fn the_documented_example_states_the_network_defaults() {
    let c = parse(include_str!("../../../deploy/enforcer.toml")).unwrap();
    let (n, d) = (&c.network, NetworkConfig::default());
    assert_eq!(n.rule, d.rule);
    assert_eq!(
        (n.enabled, n.shaping, &n.interface, &n.netns, n.host_limit),
        (d.enabled, d.shaping, &d.interface, &d.netns, d.host_limit)
    );
    assert_eq!(
        (n.reconcile_interval, n.over_share_tolerance, n.dead_band),
        (d.reconcile_interval, d.over_share_tolerance, d.dead_band)
    );
    assert!(n.offline_interfaces.is_none());
}

/// deploy/enforcer.toml lists the default rules, in order, and states the runtime defaults.
#[test]
fn the_documented_example_states_the_default_rules_and_runtime() {
    let text = include_str!("../../../deploy/enforcer.toml");
    let documented: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.ends_with("Defaults:"))
        .skip(1)
        .take_while(|l| !l.contains("anything else"))
        .filter_map(|l| l.strip_prefix("#   "))
        .filter(|l| l.contains("->"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let defaults: Vec<String> = crate::model::classify::RuleSet::default_rules()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(documented, defaults);
    let c = parse(text).unwrap();
    assert_eq!(c.runtime, super::RuntimeConfig::default());
}

#[test]
fn pod_rules_are_read_and_checked() {
    let c = parse(
        "[classify]\n[[classify.rules]]\nname = \"b\"\nnamespace = '^batch$'\nlabels = { team = '^x' }\nqos = \"besteffort\"\nclass = \"offline\"\npriority_from = [\"label:queue\"]\n",
    )
    .unwrap();
    let r = &c.rules.rules()[0];
    let pod = r.pod.as_ref().expect("a pod matcher");
    assert_eq!(pod.qos, Some(crate::model::pod::Qos::BestEffort));
    assert_eq!(pod.labels[0].0, "team");
    assert_eq!(r.priority_from.len(), 1);
    let e = error("[classify]\n[[classify.rules]]\nname = \"b\"\nclass = \"offline\"\n");
    assert!(e.contains("classify.rules[0].match"), "{e}");
    let e =
        error("[classify]\n[[classify.rules]]\nname = \"b\"\nqos = \"gold\"\nclass = \"online\"\n");
    assert!(e.contains("classify.rules[0].qos"), "{e}");
    let e = error(
        "[classify]\n[[classify.rules]]\nname = \"b\"\nqos = \"burstable\"\nclass = \"offline\"\npriority_from = [\"queue\"]\n",
    );
    assert!(e.contains("classify.rules[0].priority_from"), "{e}");
    let e = error(
        "[classify]\n[[classify.rules]]\nname = \"b\"\nlabels = { a = '(' }\nclass = \"online\"\n",
    );
    assert!(e.contains("classify.rules[0].labels.a"), "{e}");
    let e = error("[runtime]\nsocket = \"relative.sock\"\n");
    assert!(e.contains("runtime.socket"), "{e}");
    let e = error("[runtime]\nrefresh_interval = \"2s\"\ntimeout = \"5s\"\n");
    assert!(e.contains("runtime.timeout"), "{e}");
}

#[test]
fn the_kubernetes_section_is_read_and_checked() {
    let c = parse(
        "[kubernetes]\nenabled = true\nnode_name = \"n-1\"\ntaint = \"example.com/closed\"\nmin_patch_interval = \"10s\"\ntimeout = \"2s\"\ndead_band = 0.1\n",
    )
    .unwrap();
    let k = &c.kubernetes;
    assert_eq!(k.enabled, KubernetesSwitch::On);
    assert_eq!(k.node_name.as_deref(), Some("n-1"));
    assert_eq!(k.taint, "example.com/closed");
    assert_eq!(k.min_patch_interval, Duration::from_secs(10));
    assert_eq!(k.timeout, Duration::from_secs(2));
    assert_eq!(k.dead_band, 0.1);
    assert_eq!(
        parse("[kubernetes]\nenabled = \"auto\"\n")
            .unwrap()
            .kubernetes
            .enabled,
        KubernetesSwitch::Auto
    );
    assert_eq!(
        parse("[kubernetes]\nenabled = false\n")
            .unwrap()
            .kubernetes
            .enabled,
        KubernetesSwitch::Off
    );
    for (text, field, says) in [
        (
            "enabled = \"yes\"",
            "kubernetes.enabled",
            "\"auto\", true or false",
        ),
        (
            "enabled = 1",
            "kubernetes.enabled",
            "\"auto\", true or false",
        ),
        (
            "node_name = \"Node_1\"",
            "kubernetes.node_name",
            "not a Kubernetes node name",
        ),
        ("taint = \"a/b/c\"", "kubernetes.taint", "not a taint key"),
        (
            "min_patch_interval = \"100ms\"",
            "kubernetes.min_patch_interval",
            "too short",
        ),
        ("timeout = \"2m\"", "kubernetes.timeout", "out of range"),
        ("dead_band = 0.9", "kubernetes.dead_band", "too wide"),
        ("dead_band = 0", "kubernetes.dead_band", "not a share"),
        ("bogus = 1", "kubernetes.bogus", "unknown field"),
    ] {
        let e = error(&format!("[kubernetes]\n{text}\n"));
        assert!(e.contains(field) && e.contains(says), "{text}: {e}");
    }
}

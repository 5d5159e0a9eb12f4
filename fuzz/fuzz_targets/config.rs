//! `Config::parse`: the operator's TOML, read at start-up and at every SIGHUP.
//!
//! Beyond "no panic": a file that parses holds every check the parser promises (so a check
//! that a later edit loses, or a value that slips past one by overflow, is a failure), and
//! parses again to the same configuration; a file that does not is one line naming the file.

#![no_main]

use std::{path::Path, time::Duration};

use enforcer::{
    config::Config,
    model::Class,
    policy::{bandwidth::LimitPolicy, capacity::Policy},
};
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "/etc/enforcer/enforcer.toml";

fn share(what: &str, v: f64) {
    assert!(v > 0.0 && v <= 1.0, "{what} = {v} is not a share");
}

fn holds_its_checks(c: &Config) {
    let d = &c.daemon;
    assert!(d.tick > Duration::ZERO && d.tick < Duration::from_secs(86_400));
    assert!(d.window >= d.tick && d.rescan_interval >= d.tick, "{d:?}");
    assert!((1..=1000).contains(&d.top_n));
    assert!((1024..=1_048_576).contains(&d.cgroup_map_entries));
    assert!(!d.node_name.trim().is_empty());

    let p = &c.protection;
    let l = &p.ladder;
    assert!((-1000..=1000).contains(&p.isolation.oom_score_adj));
    assert!((-20..=19).contains(&p.isolation.nice));
    assert!(l.cpu_recover < l.cpu_trigger && l.memory_recover < l.memory_trigger);
    for (what, v) in [
        ("cpu_trigger", l.cpu_trigger),
        ("cpu_recover", l.cpu_recover),
        ("memory_trigger", l.memory_trigger),
        ("memory_recover", l.memory_recover),
        ("throttle_cpu_share", p.throttle_cpu_share),
    ] {
        share(what, v);
    }

    let r = &c.capacity.rule;
    share("system_reserve", r.system_reserve);
    share("memory_cap", r.memory_cap);
    share("max_step", r.max_step);
    match &r.policy {
        Policy::Static {
            cpu_share,
            memory_share,
        } => {
            share("cpu_share", *cpu_share);
            share("memory_share", *memory_share);
        }
        Policy::TimeOfDay(entries) => {
            assert!(!entries.is_empty());
            assert!(
                entries
                    .windows(2)
                    .all(|w| w[0].start_minute <= w[1].start_minute),
                "schedule not sorted: {entries:?}"
            );
            for e in entries {
                assert!(e.start_minute < 24 * 60, "{e:?}");
                share("schedule cpu_share", e.cpu_share);
                share("schedule memory_share", e.memory_share);
            }
        }
        Policy::Dynamic => {}
    }

    let n = &c.network;
    assert!(!n.interface.is_empty() && n.interface.len() <= 15);
    assert!(!n.interface.contains(['/', ' ']));
    assert!(n.rule.floor <= n.rule.ceiling && n.rule.ceiling <= n.rule.capacity);
    if let LimitPolicy::Static(limit) = n.rule.policy {
        assert!(limit <= n.rule.capacity);
    }
    share("watermark", n.rule.watermark);

    for rule in c.rules.rules() {
        assert!(!rule.name.trim().is_empty());
        assert!(rule.priority.is_none() || rule.class == Class::Offline);
    }
    // The rules in force classify the paths the daemon walks without trouble.
    for path in [
        "",
        "kubepods.slice/kubepods-besteffort.slice",
        "yarn/P1/container_1",
    ] {
        let got = c.rules.classify(path);
        assert_eq!(got.priority.is_some(), got.class == Class::Offline);
    }
}

fuzz_target!(|data: &[u8]| {
    // Config::load reads the file as UTF-8 (another file is a read error).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new(ORIGIN)) {
        Ok(c) => {
            holds_its_checks(&c);
            let again = Config::parse(text, Path::new(ORIGIN)).expect("parses twice");
            assert_eq!(format!("{c:?}"), format!("{again:?}"));
        }
        Err(e) => {
            let e = e.to_string();
            assert!(!e.contains('\n') && !e.contains('\r'), "{e:?}");
            assert!(e.starts_with(&format!("{ORIGIN}: ")), "{e}");
        }
    }
});

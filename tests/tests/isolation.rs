//! SPEC §3 isolation held by the running daemon: offline processes get a high
//! oom_score_adj and a higher nice, new ones within a tick or two; online ones are never
//! touched; a reclassified cgroup gets back exactly what it had.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use enforcer_tests::{daemon::Daemon, layout::Unit, require_root, unique_name};

fn oom_score_adj(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn nice(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // Field 19 of /proc/PID/stat; the split starts at field 3.
    fields[16].parse().unwrap()
}

fn sleeper() -> Command {
    let mut c = Command::new("sleep");
    c.arg("30");
    c
}

fn rules(base: &str, offline_class: &str) -> String {
    let priority = if offline_class == "offline" {
        "priority = \"P2\"\n"
    } else {
        ""
    };
    format!(
        "[classify]\nappend_defaults = true\n[[classify.rules]]\nname = \"t-off\"\nmatch = '{base}-offline$'\nclass = \"{offline_class}\"\n{priority}[[classify.rules]]\nname = \"t-on\"\nmatch = '{base}-online$'\nclass = \"online\"\n"
    )
}

fn wait_for(timeout: Duration, what: &str, cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

#[test]
fn offline_processes_are_isolated_and_restored_when_reclassified() {
    require_root();
    let base = unique_name("enf-iso");
    let offline = Unit::named(&format!("{base}-offline"));
    let online = Unit::named(&format!("{base}-online"));
    let before = offline.spawn(sleeper());
    let on = online.spawn(sleeper());
    let (on_oom, on_nice) = (oom_score_adj(on.pid()), nice(on.pid()));

    let daemon = Daemon::start("", &rules(&base, "offline"));
    wait_for(
        Duration::from_secs(3),
        "the existing offline process isolated",
        || oom_score_adj(before.pid()) == 1000 && nice(before.pid()) == 10,
    );

    // A new process in the offline cgroup is caught within a tick or two (100 ms ticks).
    let later = offline.spawn(sleeper());
    let caught = wait_for(
        Duration::from_secs(3),
        "the new offline process isolated",
        || oom_score_adj(later.pid()) == 1000 && nice(later.pid()) == 10,
    );
    assert!(
        caught < Duration::from_millis(600),
        "caught after {caught:?}"
    );
    eprintln!("new offline process isolated after {caught:?}");

    // The online process is untouched.
    assert_eq!((oom_score_adj(on.pid()), nice(on.pid())), (on_oom, on_nice));

    // Reclassify the offline cgroup as online: what enforcer changed is put back.
    std::fs::write(
        &daemon.config,
        format!(
            "{}\n{}",
            std::fs::read_to_string(&daemon.config)
                .unwrap()
                .split("[classify]")
                .next()
                .unwrap(),
            rules(&base, "online")
        ),
    )
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for(Duration::from_secs(3), "isolation restored", || {
        oom_score_adj(before.pid()) == 0
            && nice(before.pid()) == 0
            && oom_score_adj(later.pid()) == 0
    });
    let journal = daemon.journal();
    assert!(
        journal.iter().any(|e| e.action == "isolate"
            && e.outcome == enforcer::actuators::journal::Outcome::Applied)
    );
    assert!(journal.iter().any(|e| e.action == "restore_isolation"));
}

/// After `kill -9`, the successor puts back the values processes had before enforcer (from
/// its effects record), not the ones enforcer set.
#[test]
fn a_successor_restores_the_values_from_before_the_first_daemon() {
    require_root();
    let base = unique_name("enf-iso9");
    let offline = Unit::named(&format!("{base}-offline"));
    let p = offline.spawn(sleeper());
    let mut daemon = Daemon::start("", &rules(&base, "offline"));
    wait_for(Duration::from_secs(3), "isolated", || {
        oom_score_adj(p.pid()) == 1000 && nice(p.pid()) == 10
    });
    daemon.kill9_and_restart();
    std::fs::write(
        &daemon.config,
        format!(
            "{}\n{}",
            std::fs::read_to_string(&daemon.config)
                .unwrap()
                .split("[classify]")
                .next()
                .unwrap(),
            rules(&base, "online")
        ),
    )
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for(
        Duration::from_secs(3),
        "the values from before restored",
        || oom_score_adj(p.pid()) == 0 && nice(p.pid()) == 0,
    );
}

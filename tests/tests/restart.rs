//! enforcer owns its effects: a daemon killed with SIGKILL while offline work is frozen and
//! throttled leaves its successor the record of what it did; the successor thaws and brings
//! the limits back to the capacity rule's values when the node no longer needs them, and
//! resumes where the signals put it (no thaw-and-refreeze flap) when it still does. A
//! SIGTERM thaws before exit and leaves the capacity limits in place.

use std::time::{Duration, Instant};

use enforcer::actuators::journal::{Entry, Outcome};
use enforcer_tests::{
    daemon::Daemon,
    layout::Unit,
    process::ChildGuard,
    require_root, unique_name, wait_until,
    workload::{Workload, lowered_ladder, rules, status, taken},
};

struct Scenario {
    online: Workload,
    debug: Workload,
    p3: Workload,
    config: String,
    base: String,
}

/// The scenario's configuration with the debug unit classified `debug_class`.
fn config(base: &str, debug_class: &str) -> String {
    let debug_priority = (debug_class == "offline").then_some("debug");
    format!(
        "{}\n{}",
        rules(
            base,
            &[
                ("online", "online", None),
                ("debug", debug_class, debug_priority),
                ("p3", "offline", Some("P3")),
            ]
        ),
        lowered_ladder("0s", "60s")
    )
}

/// Two offline parents and an online cgroup; a ladder lowered so the 2-core machine
/// crosses it, freezing with the throttle (`freeze_after = 0s`: with a delay, a throttle
/// that brings the window's average below the trigger first would decide the race, and the
/// capacity rule's own steps make that timing vary); the capacity rule on (its values are what a successor must
/// restore); a slow eviction so that freezing is where the ladder stands when it is killed.
fn scenario() -> Scenario {
    let base = unique_name("enf-restart");
    Scenario {
        online: Workload::new(&format!("{base}-online")),
        debug: Workload::new(&format!("{base}-debug")),
        p3: Workload::new(&format!("{base}-p3")),
        config: config(&base, "offline"),
        base,
    }
}

fn applied<'a>(journal: &'a [Entry], action: &str) -> Vec<&'a Entry> {
    taken(journal, action, false)
}

/// Starts the daemon and overloads the node until both offline parents are frozen.
fn frozen_node(s: &Scenario) -> (Daemon, ChildGuard, ChildGuard) {
    let daemon = Daemon::start("", &s.config);
    let a = s.debug.hog(60.0);
    let b = s.p3.hog(60.0);
    assert!(
        wait_until(Duration::from_secs(10), || s.debug.frozen()
            && s.p3.frozen()),
        "offline work never frozen:\n{:#?}",
        daemon.journal()
    );
    (daemon, a, b)
}

#[test]
fn a_daemon_killed_while_offline_work_is_frozen_is_undone_by_its_successor() {
    require_root();
    let s = scenario();
    let (mut daemon, a, b) = frozen_node(&s);
    daemon.kill9();
    // The load goes away while no daemon runs (SIGKILL ends frozen cgroup2 tasks too).
    drop((a, b));
    assert!(
        s.debug.frozen() && s.p3.frozen(),
        "nothing thawed the units"
    );
    let seq_before = daemon.journal().iter().map(|e| e.seq).max().unwrap_or(0);
    let restarted = Instant::now();
    daemon.respawn();
    // Converged: thawed, and back at the capacity rule's values (not at the ladder's
    // squeeze, not unlimited), all within 5 s of the start.
    let at_capacity = || {
        let per_parent = status(&daemon)["capacity"]["applied_cpu_cores"]
            .as_f64()
            .unwrap_or(0.0)
            / 2.0;
        per_parent > 0.06
            && [&s.debug, &s.p3].iter().all(|w| {
                !w.frozen()
                    && w.quota_cores()
                        .is_some_and(|q| (q - per_parent).abs() < 0.05)
            })
    };
    assert!(
        wait_until(Duration::from_secs(5), at_capacity),
        "not converged 5 s after the restart: frozen {} / {}, quotas {:?} / {:?}, capacity {:#}\n{}",
        s.debug.frozen(),
        s.p3.frozen(),
        s.debug.quota_cores(),
        s.p3.quota_cores(),
        status(&daemon)["capacity"],
        daemon.log()
    );
    println!(
        "restart to converged (thawed, capacity quotas back): {:.2} s",
        restarted.elapsed().as_secs_f64()
    );
    let journal = daemon.journal();
    let thaws: Vec<&Entry> = applied(&journal, "thaw")
        .into_iter()
        .filter(|e| e.seq > seq_before)
        .collect();
    assert_eq!(thaws.len(), 2, "{journal:#?}");
    assert!(
        thaws
            .iter()
            .all(|e| e.reason["trigger"]["trigger"] == "adopted"),
        "journaled as the release of what was adopted: {thaws:#?}"
    );
    let gate = std::fs::read_to_string(daemon.dir.path().join("state/scheduling")).unwrap();
    assert_eq!(gate.trim(), "open");
    // The status reads the kernel back at every tick: asked again, it says thawed. The
    // view is published at the end of the tick that thawed, so a status asked between the
    // thaw and the publish still shows the tick before: a tick or two is allowed.
    let mut st = status(&daemon);
    wait_until(Duration::from_millis(500), || {
        st = status(&daemon);
        st["protection"]["stage"] == "normal" && st["protection"]["frozen"] == false
    });
    assert_eq!(
        st["protection"]["stage"], "normal",
        "{:#}",
        st["protection"]
    );
    assert_eq!(
        st["protection"]["frozen"], false,
        "{:#}",
        st["capacity"]["parents"]
    );
}

#[test]
fn a_frozen_unit_reclassified_online_is_given_back_what_enforcer_set_and_nothing_else() {
    require_root();
    let s = scenario();
    let (daemon, _a, _b) = frozen_node(&s);
    let quota_before = s.online.quota_cores();
    // The operator's reload makes the debug unit online while the node is still overloaded
    // (its hog goes on, now as online work).
    let text = std::fs::read_to_string(&daemon.config).unwrap();
    let ours = s.config.as_str();
    assert!(text.contains(ours));
    std::fs::write(
        &daemon.config,
        text.replace(ours, &config(&s.base, "online")),
    )
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let given_back = || !s.debug.frozen() && s.debug.quota_cores().is_none();
    assert!(
        wait_until(Duration::from_secs(5), given_back),
        "the now-online unit is still held: frozen {}, quota {:?}\n{:#?}",
        s.debug.frozen(),
        s.debug.quota_cores(),
        daemon.journal()
    );
    // The node is still overloaded: the offline unit stays frozen.
    std::thread::sleep(Duration::from_millis(500));
    assert!(s.p3.frozen(), "the offline unit was thawed too");
    let journal = daemon.journal();
    let target = |e: &&Entry| e.target.as_deref().is_some_and(|t| t.ends_with("-debug"));
    let back: Vec<&Entry> = journal
        .iter()
        .filter(target)
        .filter(|e| e.stage == "give_back" && e.outcome == Outcome::Applied)
        .collect();
    let actions: std::collections::BTreeSet<&str> =
        back.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains("thaw") && actions.contains("cpu_limit"),
        "the freeze and the quota given back, journaled: {journal:#?}"
    );
    let refused_or_new = journal
        .iter()
        .filter(target)
        .filter(|e| e.stage != "give_back" && e.seq > back[0].seq && e.outcome != Outcome::Refused);
    assert_eq!(
        refused_or_new.count(),
        0,
        "nothing else done to it once online: {journal:#?}"
    );
    assert_eq!(
        s.online.quota_cores(),
        quota_before,
        "the online cgroup untouched"
    );
}

#[test]
fn a_successor_on_a_node_still_overloaded_resumes_frozen_without_a_thaw() {
    require_root();
    let s = scenario();
    let (mut daemon, _a, _b) = frozen_node(&s);
    // Online work keeps the node over the threshold while the offline units stay frozen.
    let _online = s.online.hog(60.0);
    daemon.kill9();
    let seq_before = daemon.journal().iter().map(|e| e.seq).max().unwrap_or(0);
    daemon.respawn();
    // Well past the window and sustain in which the successor decides.
    std::thread::sleep(Duration::from_secs(4));
    let journal = daemon.journal();
    let after: Vec<&Entry> = journal.iter().filter(|e| e.seq > seq_before).collect();
    assert!(
        after
            .iter()
            .all(|e| e.action != "thaw" && e.action != "freeze"),
        "no thaw-and-refreeze flap: {after:#?}"
    );
    assert!(s.debug.frozen() && s.p3.frozen(), "still frozen");
    let st = status(&daemon);
    assert_eq!(st["protection"]["stage"], "throttle", "{st:#}");
    assert_eq!(st["protection"]["frozen"], true);
}

#[test]
fn sigterm_thaws_before_exit_and_keeps_the_capacity_limits() {
    require_root();
    let s = scenario();
    let (mut daemon, _a, _b) = frozen_node(&s);
    let status = daemon.sigterm().expect("exited within 10 s of SIGTERM");
    assert!(status.success(), "{status}\n{}", daemon.log());
    assert!(!s.debug.frozen() && !s.p3.frozen(), "thawed before exit");
    for w in [&s.debug, &s.p3] {
        let q = w
            .quota_cores()
            .expect("a capacity quota stays in force after exit");
        assert!(
            q > 0.06,
            "the ladder's squeeze (0.05 share) was lifted: {q}"
        );
    }
    let gate = std::fs::read_to_string(daemon.dir.path().join("state/scheduling")).unwrap();
    assert_eq!(gate.trim(), "open", "a stopped daemon holds no gate closed");
    let journal = daemon.journal();
    assert!(
        applied(&journal, "thaw")
            .iter()
            .all(|e| e.stage == "shutdown"),
        "{journal:#?}"
    );
    assert_eq!(applied(&journal, "thaw").len(), 2);
}

/// What the unit's limit files hold now, in order.
fn limit_texts(unit: &Unit) -> Vec<String> {
    unit.limit_files()
        .iter()
        .map(|(dir, file)| {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            format!("{file} = {}", text.trim())
        })
        .collect()
}

/// What enforcer gives back is what was there before it. A unit with limits of its own (as
/// an operator or kubelet sets them) is limited by the capacity rule; a SIGTERM leaves the
/// capacity's CPU quota and memory limit in force; a successor with capacity off writes the
/// unit's own values back exactly, journaled, within 5 s of its start.
#[test]
fn a_successor_with_capacity_off_puts_back_the_limits_from_before_enforcer() {
    require_root();
    let unit = Unit::create("enf-before");
    unit.set_own_limits(1.5, 3 << 30);
    let own = limit_texts(&unit);
    let _sleeper = unit.spawn({
        let mut c = std::process::Command::new("sleep");
        c.arg("60");
        c
    });
    let config = format!(
        r#"
[classify]
append_defaults = true
[[classify.rules]]
name = "test-offline"
match = '{}$'
class = "offline"
priority = "P3"

[ladder]
enabled = false

[capacity]
enabled = true
policy = "static"
cpu_share = 0.25
memory_share = 0.05
max_step = 1.0
"#,
        unit.name
    );
    let mut daemon = Daemon::start("", &config);
    let cores = 0.25 * std::thread::available_parallelism().unwrap().get() as f64;
    let capacity_in_force = |unit: &Unit| {
        let texts = limit_texts(unit);
        unit.cpu_quota_cores()
            .is_some_and(|q| (q - cores).abs() < 0.01)
            && texts.iter().zip(&own).skip(1).all(|(now, own)| now != own)
    };
    assert!(
        wait_until(Duration::from_secs(10), || capacity_in_force(&unit)),
        "the capacity rule never limited the unit: {:?} (own {own:?})\n{}",
        limit_texts(&unit),
        daemon.log()
    );
    let status = daemon.sigterm().expect("exited within 10 s of SIGTERM");
    assert!(status.success(), "{status}\n{}", daemon.log());
    assert!(
        capacity_in_force(&unit),
        "the capacity limits stay in force after SIGTERM: {:?}",
        limit_texts(&unit)
    );
    let seq_before = daemon.journal().iter().map(|e| e.seq).max().unwrap_or(0);
    let text = std::fs::read_to_string(&daemon.config).unwrap();
    std::fs::write(
        &daemon.config,
        text.replace("[capacity]\nenabled = true", "[capacity]\nenabled = false"),
    )
    .unwrap();
    let started = Instant::now();
    daemon.respawn();
    assert!(
        wait_until(Duration::from_secs(5), || limit_texts(&unit) == own),
        "not back at the unit's own limits 5 s after the restart: {:?}, own {own:?}\n{}",
        limit_texts(&unit),
        daemon.log()
    );
    println!(
        "restart to the limits from before enforcer: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let journal = daemon.journal();
    let given_back: Vec<&Entry> = applied(&journal, "cpu_limit")
        .into_iter()
        .chain(applied(&journal, "memory_limit"))
        .filter(|e| e.seq > seq_before)
        .collect();
    assert_eq!(given_back.len(), own.len().min(2), "{journal:#?}");
    assert!(
        given_back.iter().all(|e| e.stage == "capacity"
            && e.detail
                .as_deref()
                .is_some_and(|d| d.contains("before enforcer"))),
        "{given_back:#?}"
    );
}

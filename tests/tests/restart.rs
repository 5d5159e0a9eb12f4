//! enforcer owns its effects: a daemon killed with SIGKILL while offline work is frozen and
//! throttled leaves its successor the record of what it did; the successor thaws and brings
//! the limits back to the capacity rule's values when the node no longer needs them, and
//! resumes where the signals put it (no thaw-and-refreeze flap) when it still does. A
//! SIGTERM thaws before exit and leaves the capacity limits in place.

use std::time::{Duration, Instant};

use enforcer::actuators::journal::Entry;
use enforcer_tests::{
    daemon::Daemon,
    process::ChildGuard,
    require_root, unique_name, wait_until,
    workload::{Workload, status, taken},
};

struct Scenario {
    online: Workload,
    debug: Workload,
    p3: Workload,
    config: String,
}

/// Two offline parents and an online cgroup; a ladder lowered so the 2-core machine
/// crosses it, freezing with the throttle (`freeze_after = 0s`: with a delay, a throttle
/// that brings the window's average below the trigger first would decide the race, and the
/// capacity rule's own steps make that timing vary); the capacity rule on (its values are what a successor must
/// restore); a slow eviction so that freezing is where the ladder stands when it is killed.
fn scenario() -> Scenario {
    let base = unique_name("enf-restart");
    let config = format!(
        r#"
[classify]
append_defaults = true
[[classify.rules]]
name = "test-online"
match = '{base}-online$'
class = "online"
[[classify.rules]]
name = "test-debug"
match = '{base}-debug$'
class = "offline"
priority = "debug"
[[classify.rules]]
name = "test-p3"
match = '{base}-p3$'
class = "offline"
priority = "P3"

[ladder]
cpu_trigger = 0.45
cpu_recover = 0.30
sustain = "300ms"
throttle_after = "0s"
freeze_after = "0s"
evict_after = "60s"
evict_cooldown = "1s"
recover_hold = "1500ms"
throttle_cpu_share = 0.05
"#
    );
    Scenario {
        online: Workload::new(&format!("{base}-online")),
        debug: Workload::new(&format!("{base}-debug")),
        p3: Workload::new(&format!("{base}-p3")),
        config,
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
    assert!(
        wait_until(Duration::from_secs(5), || !s.debug.frozen()
            && !s.p3.frozen()),
        "still frozen 5 s after the restart:\n{}",
        daemon.log()
    );
    let converged = restarted.elapsed();
    // Back at the capacity rule's values, not at the ladder's squeeze and not unlimited.
    let st = status(&daemon);
    let per_parent = st["capacity"]["applied_cpu_cores"].as_f64().unwrap() / 2.0;
    assert!(
        wait_until(Duration::from_secs(5), || [&s.debug, &s.p3].iter().all(
            |w| w
                .quota_cores()
                .is_some_and(|q| (q - per_parent).abs() < 0.05)
        )),
        "quotas {:?} / {:?}, capacity {per_parent} per parent",
        s.debug.quota_cores(),
        s.p3.quota_cores()
    );
    println!("restart to thawed: {:.2} s", converged.as_secs_f64());
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
    // The status reads the kernel back at every tick: freshly asked, it says thawed.
    let st = status(&daemon);
    assert_eq!(st["protection"]["stage"], "normal");
    assert_eq!(
        st["protection"]["frozen"], false,
        "{:#}",
        st["capacity"]["parents"]
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

//! The protection ladder end to end: the daemon as a real process, real CPU load on the
//! 2-core test machine with the threshold lowered so it can be crossed, real throttling,
//! freezing and kills, and an online cgroup that must come out untouched.

use std::time::{Duration, Instant};

use enforcer::actuators::journal::{Entry, Outcome};
use enforcer_tests::{
    daemon::{Daemon, enforcer},
    require_root, unique_name,
    workload::{Workload, lowered_ladder, rules, status, taken},
};

struct Scenario {
    online: Workload,
    debug: Workload,
    p3: Workload,
    base: String,
}

fn scenario() -> Scenario {
    let base = unique_name("enf-ladder");
    Scenario {
        online: Workload::new(&format!("{base}-online")),
        debug: Workload::new(&format!("{base}-debug")),
        p3: Workload::new(&format!("{base}-p3")),
        base,
    }
}

/// The scenario's rules and a lowered ladder; `capacity` off makes every throttle the
/// kernel counts the ladder's own.
fn config(base: &str) -> String {
    format!(
        "{}\n[capacity]\nenabled = false\n",
        config_with_capacity(base)
    )
}

fn config_with_capacity(base: &str) -> String {
    format!(
        "{}\n{}",
        rules(
            base,
            &[
                ("online", "online", None),
                ("debug", "offline", Some("debug")),
                ("p3", "offline", Some("P3")),
            ]
        ),
        lowered_ladder("1500ms", "2500ms")
    )
}

fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn applied<'a>(journal: &'a [Entry], action: &str) -> Vec<&'a Entry> {
    taken(journal, action, true)
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0): check the state too.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn overload_throttles_then_kills_debug_before_p3_and_never_touches_online() {
    require_root();
    let s = scenario();
    let online_files = s.online.files();
    let daemon = Daemon::start("", &config(&s.base));

    // Phase 1: offline hogs push the node over the (lowered) threshold.
    let started = Instant::now();
    let mut debug_hog = s.debug.hog(30.0);
    let mut p3_hog = s.p3.hog(30.0);
    wait_for(
        Duration::from_secs(5),
        "offline throttling in cpu.stat",
        || s.debug.nr_throttled() > 0 && s.p3.nr_throttled() > 0,
    );
    let journal = daemon.journal();
    let throttle: Vec<&Entry> = applied(&journal, "cpu_limit")
        .into_iter()
        .filter(|e| e.stage == "throttle")
        .collect();
    assert_eq!(throttle.len(), 2, "{journal:#?}");
    // Within window (1 s) + sustain (0.3 s) + one tick, with slack for process start-up.
    let to_throttle = throttle[0].at
        - (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            - started.elapsed().as_secs_f64());
    assert!(
        to_throttle < 2.5,
        "throttled {to_throttle:.2}s after the load started"
    );
    let measured = throttle[0].reason["trigger"]["value"].as_f64().unwrap();
    assert!(
        measured > 0.45,
        "journal holds the measured trigger value: {measured}"
    );
    assert_eq!(applied(&journal, "stop_scheduling").len(), 1);
    let gate = std::fs::read_to_string(daemon.dir.path().join("state/scheduling")).unwrap();
    assert!(gate.starts_with("closed"), "{gate}");

    // Phase 2: online work keeps the node overloaded: the ladder goes on to evict,
    // debug first, then P3, then declares the node sick. Online is never touched.
    let online_hog = s.online.hog(30.0);
    wait_for(Duration::from_secs(15), "both offline units killed", || {
        !alive(debug_hog.pid()) && !alive(p3_hog.pid())
    });
    let _ = debug_hog.wait_timeout(Duration::from_secs(1));
    let _ = p3_hog.wait_timeout(Duration::from_secs(1));
    wait_for(Duration::from_secs(10), "node declared sick", || {
        !applied(&daemon.journal(), "declare_sick").is_empty()
    });
    let journal = daemon.journal();
    let kills: Vec<&str> = applied(&journal, "kill")
        .iter()
        .map(|e| e.priority.as_deref().unwrap())
        .collect();
    assert_eq!(kills, ["debug", "P3"], "{journal:#?}");
    assert!(
        applied(&journal, "freeze").len() >= 2,
        "offline frozen before eviction"
    );
    assert!(alive(online_hog.pid()), "the online process survived");
    assert_eq!(
        s.online.files(),
        online_files,
        "online cgroup files unchanged"
    );
    let online_name = format!("{}-online", s.base);
    assert!(
        journal
            .iter()
            .all(|e| e.target.as_deref() != Some(online_name.as_str())),
        "no action ever targeted the online cgroup"
    );
    let metrics = daemon.scrape();
    assert!(metrics.contains("enforcer_node_sick 1"), "{metrics}");
    assert!(
        metrics.contains("enforcer_offline_killed_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("enforcer_scheduling_open 0"), "{metrics}");

    // The operator's view: the journal (from the file) and the ladder's explanation.
    let journal_file = daemon.dir.path().join("journal.jsonl");
    let out = enforcer(&[
        "journal",
        "--file",
        journal_file.to_str().unwrap(),
        "--action",
        "kill",
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kills: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(kills.len(), 4, "intent + outcome for each kill: {kills:?}");
    let out = enforcer(&[
        "journal",
        "--file",
        journal_file.to_str().unwrap(),
        "--last",
        "3",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let explain = daemon.cli(&["explain"]);
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(
        explain.status.success() && text.contains("stage NodeSick"),
        "{text}"
    );
    assert!(
        text.contains("node sick: yes") && text.contains("recent actions:"),
        "{text}"
    );
}

#[test]
fn recovery_steps_back_down_to_the_capacity_rules_limits() {
    require_root();
    let s = scenario();
    let daemon = Daemon::start("", &config_with_capacity(&s.base));
    {
        let _a = s.debug.hog(30.0);
        let _b = s.p3.hog(30.0);
        // The ladder's squeeze: 5% of the node split over two parents.
        wait_for(Duration::from_secs(5), "the ladder's throttle", || {
            s.p3.quota_cores().is_some_and(|q| q < 0.1)
        });
    } // the hogs are killed here: load stops
    // Two steps down of recover_hold (1.5 s) each once the window shows the node idle.
    wait_for(Duration::from_secs(30), "the ladder back at normal", || {
        !applied(&daemon.journal(), "open_scheduling").is_empty()
    });
    let journal = daemon.journal();
    assert!(
        applied(&journal, "kill").is_empty(),
        "no kill once the load stopped"
    );
    assert!(!s.p3.frozen(), "thawed");
    let gate = std::fs::read_to_string(daemon.dir.path().join("state/scheduling")).unwrap();
    assert_eq!(gate.trim(), "open");
    // The offline parents are back at the capacity rule's values, not unlimited and not
    // throttled: applied offline CPU shared by the two offline parents.
    let st = status(&daemon);
    let per_parent = st["capacity"]["applied_cpu_cores"].as_f64().unwrap() / 2.0;
    assert_eq!(st["capacity"]["offline_parents"], 2);
    for w in [&s.debug, &s.p3] {
        let q = w.quota_cores().expect("a quota is set");
        assert!(
            (q - per_parent).abs() < 0.05,
            "quota {q} cores, capacity {per_parent} per parent"
        );
    }
}

#[test]
fn static_capacity_is_applied_gradually_to_the_offline_parents() {
    require_root();
    let s = scenario();
    let extra = format!(
        "{}\n[capacity]\npolicy = \"static\"\ncpu_share = 0.25\nmemory_share = 0.5\nmax_step = 0.05\n",
        config_with_capacity(&s.base)
    );
    let daemon = Daemon::start("", &extra);
    // 25% of 2 CPUs = 0.5 cores for the offline side, 0.25 per parent; reached in steps of
    // at most 5% of the node (0.1 core) per tick, starting from the whole node.
    wait_for(
        Duration::from_secs(5),
        "the static capacity applied",
        || s.p3.quota_cores().is_some_and(|q| (q - 0.25).abs() < 0.03),
    );
    let writes: Vec<f64> = daemon
        .journal()
        .iter()
        .filter(|e| {
            e.stage == "capacity"
                && e.outcome == Outcome::Applied
                && e.target.as_deref().is_some_and(|t| t.ends_with("-p3"))
        })
        .filter_map(|e| e.reason["request"]["cores"].as_f64())
        .collect();
    assert!(writes.len() >= 3, "gradual: {writes:?}");
    for pair in writes.windows(2) {
        assert!(
            pair[0] - pair[1] <= 0.05 + 1e-9,
            "a step larger than max_step: {writes:?}"
        );
    }
    let st = status(&daemon);
    assert_eq!(st["capacity"]["policy"], "static");
    let metrics = daemon.scrape();
    assert!(
        metrics.contains(r#"enforcer_offline_capacity_cpu_cores{value="target"} 0.5"#),
        "{metrics}"
    );
    // The online cgroup gets no quota.
    assert_eq!(s.online.quota_cores(), None);
}

#[test]
fn dry_run_decides_the_same_and_changes_nothing() {
    require_root();
    let s = scenario();
    let files = (s.debug.files(), s.p3.files());
    let daemon = Daemon::start_with_flags("", &config(&s.base), &["--dry-run"]);
    let debug_hog = s.debug.hog(30.0);
    let p3_hog = s.p3.hog(30.0);
    let _online = s.online.hog(30.0);
    wait_for(
        Duration::from_secs(15),
        "the dry-run ladder reaching eviction",
        || applied(&daemon.journal(), "kill").len() >= 2,
    );
    let journal = daemon.journal();
    assert!(
        journal.iter().all(|e| e.outcome == Outcome::DryRun),
        "{journal:#?}"
    );
    let kills: Vec<&str> = applied(&journal, "kill")
        .iter()
        .map(|e| e.priority.as_deref().unwrap())
        .collect();
    assert_eq!(&kills[..2], ["debug", "P3"]);
    assert!(
        alive(debug_hog.pid()) && alive(p3_hog.pid()),
        "nothing killed"
    );
    assert_eq!((s.debug.files(), s.p3.files()), files, "nothing written");
    assert!(
        !daemon.dir.path().join("state/scheduling").exists(),
        "gate untouched in dry run"
    );
}

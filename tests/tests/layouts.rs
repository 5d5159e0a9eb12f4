//! The daemon on whatever cgroup layout this node has (the host's hybrid here; pure cgroup2
//! and pure v1 in the VM matrix's guests, `cargo xtask vmtest`): its programs load and
//! attach, the layout and the controllers are found, and the CPU time it counts for an
//! offline unit matches the kernel's own accounting of that unit.

use std::time::Duration;

use enforcer_tests::{
    cgroup::{cpu_hog, mount_point},
    daemon::{Daemon, metric_value},
    layout::Unit,
    require_root, wait_until,
    workload::status,
};

fn within(actual: f64, expected: f64, tolerance: f64) -> bool {
    // Plus 50 ms: the two clocks are read at slightly different moments.
    (actual - expected).abs() <= expected * tolerance + 0.05
}

#[test]
fn an_offline_units_cpu_time_matches_the_kernels_on_this_layout() {
    require_root();
    let unit = Unit::create("enf-layout");
    let daemon = Daemon::start(
        "",
        &format!(
            r#"
[classify]
append_defaults = true
[[classify.rules]]
name = "test-offline"
match = '{}$'
class = "offline"
priority = "P2"

[capacity]
enabled = false
"#,
            unit.name
        ),
    );
    // The layout as the test sees it from mountinfo, independently of the daemon.
    let expected = match (
        mount_point("unified").is_some(),
        mount_point("cpu").is_some(),
    ) {
        (true, false) => "v2",
        (false, true) => "v1",
        (true, true) => "hybrid",
        (false, false) => panic!("no cgroup hierarchy at all"),
    };
    let st = status(&daemon);
    assert_eq!(st["layout"], expected, "{st:#}");
    // Every controller the node has is found; one it lacks is said (memory on a pure v1
    // node from 6.12 on, where the v1 memory controller cannot be mounted), never silent.
    let gaps: Vec<String> = st["protection"]["controller_gaps"]
        .as_array()
        .expect("controller_gaps")
        .iter()
        .filter(|g| g["controller"] != "pids")
        .map(|g| g["controller"].as_str().unwrap_or("?").to_string())
        .collect();
    let expected_gaps: Vec<String> = if unit.has_memory() {
        Vec::new()
    } else {
        vec!["memory".to_string()]
    };
    assert_eq!(
        gaps, expected_gaps,
        "controller gaps: {:#}",
        st["protection"]["controller_gaps"]
    );
    let mut hog = unit.spawn(cpu_hog(3.0));
    hog.wait_timeout(Duration::from_secs(60))
        .expect("hog exits");
    let kernel = unit.cpu_usage_ns() as f64 / 1e9;
    // A loaded machine gives the hog less than its 3 s: the comparison is to what it got.
    assert!(kernel > 0.2, "the hog ran: {kernel} s");
    let series = format!(
        r#"enforcer_cgroup_cpu_seconds_total{{cgroup="{}",class="offline",priority="P2"}}"#,
        unit.path()
    );
    let mut seen = None;
    let matched = wait_until(Duration::from_secs(10), || {
        seen = metric_value(&daemon.scrape(), &series);
        seen.is_some_and(|s| within(s, kernel, 0.05))
    });
    assert!(
        matched,
        "{series}: daemon {seen:?} s vs kernel {kernel:.3} s\n{}",
        daemon.scrape()
    );
    eprintln!("cpu time: daemon {seen:?} s, kernel {kernel:.3} s");
}

/// An offline parent below a cgroup that does not delegate to it: on cgroup2 the daemon
/// says, for each of the cpu and memory controllers, which `cgroup.subtree_control` lacks
/// it (in the status, and the feature's metric at 0), and says it for a parent that appears
/// after the start (kubelet creates the BestEffort slice with its first pod). v1
/// hierarchies have no delegation: there nothing is said for the parent.
#[test]
fn an_offline_parent_without_its_controllers_delegated_is_said_on_this_layout() {
    require_root();
    let outer = Unit::create("enf-deleg");
    let daemon = Daemon::start(
        "",
        &format!(
            r#"
[classify]
append_defaults = true
[[classify.rules]]
name = "test-offline"
match = '{}/inner$'
class = "offline"
priority = "P3"

[capacity]
enabled = false
"#,
            outer.name
        ),
    );
    let inner = outer.child("inner");
    let undelegated: Vec<&str> = ["cpu", "memory"]
        .into_iter()
        .filter(|c| inner.controller_dir(c).is_some_and(|(_, v2)| v2))
        .collect();
    let parent_gaps = || -> Vec<String> {
        status(&daemon)["protection"]["controller_gaps"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|g| g["controller"] != "pids")
            .filter(|g| {
                g["explain"]
                    .as_str()
                    .is_some_and(|e| e.contains(&outer.rel))
            })
            .map(|g| g["controller"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    if undelegated.is_empty() {
        // Wait until the daemon has the parent, then nothing may be said of it.
        let series = format!(
            r#"enforcer_cgroup_cpu_seconds_total{{cgroup="{}",class="offline",priority="P3"}}"#,
            inner.path()
        );
        let _hog = inner.spawn(cpu_hog(1.0));
        assert!(
            wait_until(Duration::from_secs(10), || metric_value(
                &daemon.scrape(),
                &series
            )
            .is_some()),
            "the daemon never counted the parent"
        );
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(parent_gaps(), Vec::<String>::new());
        return;
    }
    let mut seen = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            seen = parent_gaps();
            seen == undelegated
        }),
        "gaps said for the parent: {seen:?}, expected {undelegated:?}:\n{:#}\n{}",
        status(&daemon)["protection"]["controller_gaps"],
        daemon.log()
    );
    let gaps = status(&daemon)["protection"]["controller_gaps"].clone();
    for g in gaps.as_array().unwrap() {
        if let Some(e) = g["explain"].as_str().filter(|e| e.contains(&outer.rel))
            && g["controller"] != "pids"
        {
            assert!(
                e.contains(&format!("{}/cgroup.subtree_control", outer.rel)),
                "names the file to fix: {e}"
            );
        }
    }
    let scrape = daemon.scrape();
    for (controller, feature) in [("cpu", "cpu_quota"), ("memory", "memory_limits")] {
        if undelegated.contains(&controller) {
            assert_eq!(
                metric_value(
                    &scrape,
                    &format!(r#"enforcer_feature_enabled{{feature="{feature}"}}"#)
                ),
                Some(0.0),
                "{scrape}"
            );
        }
    }
    let log = daemon.log();
    let lines = log
        .lines()
        .filter(|l| l.contains(&format!("{}/cgroup.subtree_control", outer.rel)))
        .filter(|l| !l.contains("pids controller"))
        .count();
    assert_eq!(lines, undelegated.len(), "one line each:\n{log}");
}

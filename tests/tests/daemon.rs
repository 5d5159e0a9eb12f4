//! The daemon as a real process: metrics over HTTP, the CLI over the control socket, the
//! live cgroup index, clean shutdown.

use std::{path::Path, time::Duration};

use enforcer_tests::{
    cgroup::{TestCgroup, cpu_hog, spawn_in},
    daemon::{Daemon, enforcer, metric_value},
    require_root, unique_name, wait_until,
};

const OFFLINE_P3: &str = r#"enforcer_cpu_seconds_total{class="offline",priority="P3"}"#;

/// A config rule classifying cgroups whose path contains `name` as offline P3, ahead of the
/// default rules.
fn offline_p3_rule(name: &str) -> String {
    format!(
        "[classify]\nappend_defaults = true\n[[classify.rules]]\nname = \"test-offline\"\nmatch = '{name}'\nclass = \"offline\"\npriority = \"P3\"\n"
    )
}

fn cgroups_json(daemon: &Daemon) -> Vec<serde_json::Value> {
    let out = daemon.cli(&["cgroups", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cgroups --output json is JSON")
}

fn find_cgroup<'a>(cgroups: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    cgroups
        .iter()
        .find(|c| c["path"].as_str().is_some_and(|p| p.ends_with(name)))
}

#[test]
fn offline_p3_hog_is_counted_in_metrics_and_listed_by_the_cli() {
    offline_p3_hog_is_counted("");
}

#[test]
fn the_cgroupfs_polling_sampler_counts_the_same() {
    // The baseline the benchmarks compare against, and the fallback where the programs
    // cannot load: it must agree with the kernel's accounting too.
    offline_p3_hog_is_counted("sampler = \"cgroupfs\"");
}

fn offline_p3_hog_is_counted(daemon_section: &str) {
    require_root();
    let name = unique_name("enf-offline-p3");
    let cpu = TestCgroup::create("cpu", &name);
    let acct = TestCgroup::create("cpuacct", &name);
    let daemon = Daemon::start(daemon_section, &offline_p3_rule(&name));

    let before = metric_value(&daemon.scrape(), OFFLINE_P3).unwrap_or(0.0);
    let mut hog = spawn_in(&[&cpu, &acct], cpu_hog(3.0));
    hog.wait_timeout(Duration::from_secs(10))
        .expect("hog exits");
    // One tick plus margin for the last slice to be read.
    std::thread::sleep(Duration::from_millis(400));
    let text = daemon.scrape();
    let after = metric_value(&text, OFFLINE_P3).expect("offline P3 counter exported");
    let hog_seconds = acct.cpuacct_usage_ns() as f64 / 1e9;
    let counted = after - before;
    assert!(
        (counted - hog_seconds).abs() <= hog_seconds * 0.05,
        "offline P3 counter rose by {counted:.3}s, the hog used {hog_seconds:.3}s\n{text}"
    );
    // The per-cgroup series and the operators' compatibility series are there too.
    assert!(
        text.contains(&format!("{name}\",class=\"offline\",priority=\"P3\"}}")),
        "{text}"
    );
    assert!(
        metric_value(&text, r#"yarn_cpu_cgroup_use_total{node="test-node"}"#).unwrap() >= counted
    );
    assert!(metric_value(&text, r#"k8s_cpu_cgroup_use_total{node="test-node"}"#).is_some());
    if daemon_section.is_empty() {
        // The eBPF sampler's own run count (zero when polling).
        assert!(metric_value(&text, "enforcer_sampler_program_runs_total").unwrap() > 0.0);
    }

    let cgroups = cgroups_json(&daemon);
    let entry = find_cgroup(&cgroups, &name).expect("test cgroup listed");
    assert_eq!(entry["class"], "offline");
    assert_eq!(entry["priority"], "P3");
    assert_eq!(entry["rule"], "test-offline");
    assert_eq!(entry["id"].as_u64().unwrap(), cpu.id());
}

#[test]
fn cgroups_appear_in_and_disappear_from_the_index() {
    require_root();
    let daemon = Daemon::start("rescan_interval = \"200ms\"", "");
    let name = unique_name("enf-index");
    let cg = TestCgroup::create("cpu", &name);
    assert!(
        wait_until(Duration::from_secs(3), || find_cgroup(
            &cgroups_json(&daemon),
            &name
        )
        .is_some()),
        "new cgroup {name} never appeared"
    );
    let entry = find_cgroup(&cgroups_json(&daemon), &name).unwrap().clone();
    assert_eq!(entry["class"], "system", "unmatched cgroups are system");
    drop(cg);
    assert!(
        wait_until(Duration::from_secs(3), || find_cgroup(
            &cgroups_json(&daemon),
            &name
        )
        .is_none()),
        "removed cgroup {name} never disappeared"
    );
}

#[test]
fn status_top_and_json_outputs_work_against_a_running_daemon() {
    require_root();
    let daemon = Daemon::start("", "");
    let status = daemon.cli(&["status"]);
    assert!(status.status.success());
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("node CPU:"), "{text}");
    assert!(text.contains("sampler:"), "{text}");

    let json = daemon.cli(&["status", "--output", "json"]);
    let s: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status json");
    assert_eq!(s["node"], "test-node");
    assert!(s["sampler"]["ticks_total"].as_u64().unwrap() > 0);
    let util = s["node_cpu_utilisation"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&util));

    let top = daemon.cli(&["top", "-n", "2", "-d", "0.2", "--output", "json"]);
    assert!(
        top.status.success(),
        "{}",
        String::from_utf8_lossy(&top.stderr)
    );
    let frames: Vec<serde_json::Value> = String::from_utf8_lossy(&top.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("top frame is JSON"))
        .collect();
    assert_eq!(frames.len(), 2);
    let top_text = daemon.cli(&["top", "-n", "1"]);
    assert!(String::from_utf8_lossy(&top_text.stdout).contains("CORES"));
}

#[test]
fn cli_without_a_daemon_says_so_in_one_line() {
    for command in ["status", "cgroups", "top"] {
        let out = enforcer(&[command, "--socket", "/nonexistent/enforcer.sock"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("no enforcer daemon is running"), "{err}");
    }
}

#[test]
fn broken_configs_are_refused_with_one_line_naming_the_field() {
    require_root();
    let dir = enforcer_tests::TempDir::new("enf-badconf");
    let socket = dir.path().join("s.sock");
    let cases = [
        ("[daemon]\nbogus = 1\n", "bogus"),
        ("[daemon]\ntop_n = \"many\"\n", "top_n"),
        (
            "[daemon]\nmetrics_listen = \"not-an-address\"\n",
            "metrics_listen",
        ),
        ("[daemon]\ntick = \"soon\"\n", "tick"),
        (
            "[[classify.rules]]\nname = \"x\"\nmatch = \"(\"\nclass = \"offline\"\n",
            "match",
        ),
        (
            "[[classify.rules]]\nname = \"x\"\nmatch = \"a\"\nclass = \"sometimes\"\n",
            "class",
        ),
    ];
    for (body, field) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(
            &file,
            format!("{body}\n").replace(
                "[daemon]\n",
                &format!("[daemon]\nsocket = \"{}\"\n", socket.display()),
            ),
        )
        .unwrap();
        let file_str = file.to_str().unwrap();
        for args in [
            vec!["config", "check", file_str],
            vec!["run", "--config", file_str],
        ] {
            let out = enforcer(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} accepted {body:?}");
            assert_eq!(err.trim().lines().count(), 1, "{args:?} {body:?}: {err}");
            assert!(
                err.contains(file_str) && err.contains(field),
                "{args:?} {body:?}: {err}"
            );
            // Never half-configured: nothing was bound or attached.
            assert!(
                !Path::new(&socket).exists(),
                "{args:?} left a socket behind"
            );
        }
    }
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[daemon]\ntick = \"50ms\"\n").unwrap();
    let out = enforcer(&["config", "check", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Ids of the loaded programs that are enforcer's (by name).
fn enforcer_program_ids() -> Vec<u64> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .expect("bpftool");
    let progs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool json");
    progs
        .as_array()
        .unwrap()
        .iter()
        // The kernel keeps 15 characters of a name; newer bpftool prints the BTF name.
        .filter(|p| {
            let name = p["name"].as_str().unwrap_or("");
            name == "sched_switch" || name.starts_with("cgroup_attach_t")
        })
        .filter_map(|p| p["id"].as_u64())
        .collect()
}

#[test]
fn sigterm_stops_cleanly_and_detaches_the_programs() {
    require_root();
    // Programs of earlier tests may still be on their way out (the kernel frees them
    // asynchronously); only this daemon's programs matter.
    let before = enforcer_program_ids();
    let daemon = Daemon::start("", "");
    let ours: Vec<u64> = enforcer_program_ids()
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(
        ours.len(),
        2,
        "sched_switch and cgroup_attach_task loaded: {ours:?}"
    );
    let socket = daemon.socket.clone();
    let status = daemon.stop().expect("daemon exits on SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(!socket.exists(), "control socket removed");
    // Nothing is pinned by default, so once the daemon is gone its programs are freed.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let now = enforcer_program_ids();
            ours.iter().all(|id| !now.contains(id))
        }),
        "programs left loaded: {ours:?}"
    );
}

#[test]
fn restart_after_kill_9_converges_and_a_second_daemon_is_refused() {
    require_root();
    let mut daemon = Daemon::start("", "");
    let before = enforcer_program_ids();
    daemon.kill9_and_restart();
    let status = daemon.cli(&["status", "--output", "json"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    // The killed daemon's programs die with it; the new one has its own two.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let now = enforcer_program_ids();
            before.iter().all(|id| !now.contains(id))
        }),
        "the killed daemon's programs were left loaded"
    );
    // A second daemon on the same socket is refused in one line, and the first keeps going.
    let second = enforcer(&["run", "--config", daemon.config.to_str().unwrap()]);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    let last = err.trim().lines().last().unwrap_or("");
    assert!(
        last.contains("another enforcer daemon is already running"),
        "{err}"
    );
    assert!(daemon.cli(&["status"]).status.success());
}

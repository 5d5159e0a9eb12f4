//! The scrape and probe endpoints follow the conventions: `/metrics` answers OpenMetrics to
//! a scraper that asks for it and the Prometheus text format 0.0.4 otherwise (which
//! `promtool check metrics` lints), `/healthz` and `/readyz` say whether the daemon does its
//! job.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use enforcer_tests::{daemon::Daemon, require_root, wait_until};

/// GET with an optional Accept header: (status line, content type, body).
fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap_or_default().to_string();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or_default()
        .to_string();
    (status, content_type, body.to_string())
}

#[test]
fn metrics_negotiate_their_format_and_probes_tell_the_truth() {
    require_root();
    let daemon = Daemon::start("", "");
    assert!(
        wait_until(Duration::from_secs(10), || get(
            daemon.metrics,
            "/readyz",
            None
        )
        .0
        .contains("200")),
        "never ready"
    );
    let (status, _, body) = get(daemon.metrics, "/healthz", None);
    assert!(status.contains("200"), "{status}: {body}");

    let (_, om_type, om) = get(
        daemon.metrics,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert!(
        om_type.starts_with("application/openmetrics-text"),
        "{om_type}"
    );
    assert!(om.trim_end().ends_with("# EOF"));
    let (_, text_type, text) = get(daemon.metrics, "/metrics", None);
    assert!(
        text_type.starts_with("text/plain; version=0.0.4"),
        "{text_type}"
    );
    assert!(!text.contains("# EOF"));
    assert!(text.contains("# TYPE enforcer_sampler_ticks_total counter"));

    // promtool parses and lints the text format of a real scrape.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian prometheus): run cargo xtask setup");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics:\n{report}");
}

#[test]
fn healthz_fails_when_the_tick_stops() {
    require_root();
    let daemon = Daemon::start("", "");
    assert!(wait_until(Duration::from_secs(10), || get(
        daemon.metrics,
        "/healthz",
        None
    )
    .0
    .contains("200")));
    // Stall the sampler thread alone (SIGSTOP would stop the whole process): move just
    // that thread into a frozen v1 freezer cgroup of the test's own.
    let tid = std::fs::read_dir(format!("/proc/{}/task", daemon.pid()))
        .unwrap()
        .flatten()
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "sampler")
        })
        .map(|t| t.file_name().to_string_lossy().into_owned())
        .expect("the sampler thread");
    let freezer = enforcer_tests::cgroup::TestCgroup::create(
        "freezer",
        &enforcer_tests::unique_name("enf-stall"),
    );
    let parent_tasks = freezer.dir().parent().unwrap().join("tasks");
    std::fs::write(freezer.dir().join("tasks"), &tid).expect("move the sampler thread");
    std::fs::write(freezer.dir().join("freezer.state"), "FROZEN").unwrap();
    // A probe that does not answer in time is a failed probe for the kubelet too (the
    // thread may have been frozen holding the state lock): count it as unhealthy.
    let probe = || {
        std::panic::catch_unwind(|| get(daemon.metrics, "/healthz", None)).unwrap_or_else(|_| {
            (
                "timeout".into(),
                String::new(),
                "no tick for (no answer)".into(),
            )
        })
    };
    let unhealthy = wait_until(Duration::from_secs(15), || {
        let status = probe().0;
        status.contains("503") || status == "timeout"
    });
    let (_, _, why) = probe();
    std::fs::write(freezer.dir().join("freezer.state"), "THAWED").unwrap();
    std::fs::write(&parent_tasks, &tid).expect("move the sampler thread back");
    assert!(unhealthy, "healthz never failed with the tick stopped");
    assert!(why.contains("no tick for"), "{why}");
}

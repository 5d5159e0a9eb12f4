use super::{encode, tests_support::sample};

/// The whole scrape, captured before metrics.rs was split by domain: metric names, help
/// texts, label sets and order, family order must not move by accident. A deliberate
/// change is blessed with `ENFORCER_BLESS=1 cargo test -p enforcer --lib surfaces::metrics`
/// and shows in review as a diff of golden.txt.
#[test]
fn scrape_matches_the_golden_text() {
    let golden = include_str!("golden.txt");
    let text = encode(sample());
    if std::env::var_os("ENFORCER_BLESS").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/surfaces/metrics/golden.txt"
        );
        std::fs::write(path, &text).expect("bless golden.txt");
        return;
    }
    if text != golden {
        let first = text
            .lines()
            .zip(golden.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(text.lines().count().min(golden.lines().count()));
        panic!(
            "scrape differs from golden.txt from line {}\n--- got\n{text}",
            first + 1
        );
    }
}

#[test]
fn the_prometheus_text_format_names_counters_by_their_samples() {
    let om = encode(sample());
    let text = super::to_prometheus_text(&om);
    assert!(om.contains("# TYPE enforcer_actions counter"));
    assert!(
        text.contains("# TYPE enforcer_actions_total counter"),
        "{text}"
    );
    assert!(text.contains("# HELP enforcer_actions_total "));
    assert!(!text.contains("# EOF"));
    // Samples are the same.
    let samples = |t: &str| t.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(samples(&om), samples(&text));
    assert!(super::wants_openmetrics(
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    ));
    assert!(!super::wants_openmetrics("*/*"));
}

#[test]
fn kswapd_wakeups_are_per_numa_node() {
    let mut s = sample();
    s.reclaim.kswapd_wakeups_by_node = vec![(0, 3), (1, 5)];
    let text = encode(s);
    assert!(
        text.contains("enforcer_kswapd_wakeups_total{numa_node=\"0\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("enforcer_kswapd_wakeups_total{numa_node=\"1\"} 5"),
        "{text}"
    );
}

#[test]
fn encodes_class_counters_top_n_and_compatibility_series() {
    let text = encode(sample());
    for line in [
        r#"enforcer_cpu_seconds_total{class="offline",priority="P3"} 7.25"#,
        r#"enforcer_cpu_seconds_total{class="online",priority=""} 3.5"#,
        r#"enforcer_cgroup_cpu_seconds_total{cgroup="/yarn/container_1",class="offline",priority="P3"} 7.25"#,
        r#"enforcer_node_cpu_utilisation_ratio 0.5"#,
        r#"k8s_cpu_cgroup_use_total{node="node-1"} 3.5"#,
        r#"yarn_cpu_cgroup_use_total{node="node-1"} 7.25"#,
        "# TYPE enforcer_sampler_ticks counter",
        "# EOF",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        text.contains(r#"enforcer_build_info{version="0.1.0""#),
        "{text}"
    );
}

#[test]
fn filesystems_are_exported_per_mountpoint() {
    let text = encode(sample());
    for line in [
        r#"enforcer_filesystem_used_ratio{mountpoint="/data1"} 0.93"#,
        r#"enforcer_filesystem_size_bytes{mountpoint="/"} 107374182400.0"#,
        r#"enforcer_filesystem_avail_bytes{mountpoint="/"} 42949672960.0"#,
        r#"enforcer_filesystem_read_age_seconds{mountpoint="/data1"} 7.5"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // A node with no readable file system has no filesystem series, only the families.
    let mut s = sample();
    s.filesystems.clear();
    let text = encode(s);
    assert!(!text.contains("enforcer_filesystem_used_ratio{"), "{text}");
}

#[test]
fn config_reloads_are_exported() {
    let text = encode(sample());
    for line in [
        "enforcer_config_last_reload_successful 0.0",
        "enforcer_config_last_reload_success_timestamp_seconds 1700000000.5",
        "enforcer_config_reload_failures_total 2.0",
        "enforcer_config_reloads_total 3.0",
        "enforcer_config_watched 1.0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

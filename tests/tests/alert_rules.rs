//! The alerting rules, their unit tests, the runbook, the Grafana dashboard and the scrape
//! and Alertmanager configurations, checked with Prometheus's own tools (`promtool`,
//! `amtool`). No root needed; a missing tool is a failure ("run cargo xtask setup").

use std::collections::{BTreeMap, BTreeSet};

use enforcer_tests::{
    TempDir,
    alerting::{
        DEFAULT_VARIABLES, assert_success, deploy, exported_metric_names, heading_anchor,
        markdown_anchors, metric_names, panel_queries, read, run_tool, substitute,
        variable_queries, variables_left, workspace, yaml,
    },
};
use serde::{Deserialize, Serialize};

/// Metrics the rules use before the daemon exports them (they cannot fire until it does):
/// none today.
const PLANNED: &[&str] = &[];
/// Metrics of other exporters the rules use (kube-state-metrics).
const EXTERNAL: &[&str] = &[
    "kube_daemonset_status_desired_number_scheduled",
    "kube_daemonset_status_number_available",
    "kube_pod_container_status_restarts_total",
    "kube_pod_info",
];
/// Alerts on kube-state-metrics' series whose node comes from `kube_pod_info`: always a
/// node label, and an `instance` that is kube-state-metrics' own (not worth naming).
const NODE_FROM_KUBE_STATE: &[&str] = &["EnforcerCrashLooping"];
/// Alerts about the fleet, not one node: their summary names no node.
const FLEET_WIDE: &[&str] = &["EnforcerTargetsAbsent", "EnforcerDaemonSetUnavailable"];
const SEVERITIES: &[&str] = &["page", "warning", "info"];
/// Name prefixes of the series the rules and the dashboard may use.
const PREFIXES: &[&str] = &["enforcer_", "process_", "k8s_", "yarn_", "kube_"];

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    rules: Vec<Rule>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    expr: String,
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    for_: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PrometheusRule {
    api_version: String,
    kind: String,
    metadata: serde_yaml_ng::Value,
    spec: RuleFile,
}

#[derive(Debug, Deserialize)]
struct RuleTests {
    rule_files: Vec<String>,
    tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
struct TestGroup {
    name: Option<String>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
}

#[derive(Debug, Deserialize)]
struct AlertTest {
    alertname: String,
    eval_time: String,
    exp_alerts: Vec<serde_yaml_ng::Value>,
}

fn rules() -> RuleFile {
    yaml(&deploy("prometheus/enforcer-rules.yml"))
}

fn alerts(file: &RuleFile) -> Vec<&Rule> {
    file.groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| r.alert.is_some())
        .collect()
}

fn name(rule: &Rule) -> &str {
    rule.alert
        .as_deref()
        .or(rule.record.as_deref())
        .unwrap_or("?")
}

fn dashboard() -> serde_json::Value {
    let path = deploy("grafana/enforcer.json");
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `promtool check rules` on a file; returns its output.
fn check_rules(file: &std::path::Path) -> String {
    let dir = file.parent().expect("dir");
    let out = run_tool(
        "promtool",
        &["check", "rules", file.to_str().expect("utf-8 path")],
        dir,
    );
    assert_success(&format!("promtool check rules {}", file.display()), &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn promtool_accepts_the_plain_rules_file() {
    let out = check_rules(&deploy("prometheus/enforcer-rules.yml"));
    let count: usize = rules().groups.iter().map(|g| g.rules.len()).sum();
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "promtool saw another number of rules than {count}:\n{out}"
    );
}

#[test]
fn promtool_accepts_the_prometheusrule_spec() {
    let path = deploy("prometheus/prometheusrule.yaml");
    let manifest: serde_yaml_ng::Value = yaml(&path);
    assert_eq!(manifest["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(manifest["kind"], "PrometheusRule");
    // What the operator hands Prometheus: the spec, as a rules file.
    let dir = TempDir::new("prometheusrule");
    let spec = dir.path().join("spec.yml");
    std::fs::write(
        &spec,
        serde_yaml_ng::to_string(&manifest["spec"]).expect("serialise spec"),
    )
    .expect("write spec");
    let out = check_rules(&spec);
    let count: usize = rules().groups.iter().map(|g| g.rules.len()).sum();
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "{out}"
    );
}

#[test]
fn the_prometheusrule_is_the_plain_file_under_spec() {
    let plain = read(&deploy("prometheus/enforcer-rules.yml"));
    let operator = read(&deploy("prometheus/prometheusrule.yaml"));
    let groups = plain
        .lines()
        .skip_while(|l| *l != "groups:")
        .collect::<Vec<_>>();
    assert!(
        !groups.is_empty(),
        "enforcer-rules.yml has no `groups:` line"
    );
    let under_spec = operator
        .lines()
        .skip_while(|l| *l != "spec:")
        .skip(1)
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>();
    if let Some(i) =
        (0..groups.len().max(under_spec.len())).find(|&i| groups.get(i) != under_spec.get(i))
    {
        panic!(
            "prometheusrule.yaml differs from enforcer-rules.yml at groups line {}:\n  plain:    {:?}\n  operator: {:?}\nrun deploy/prometheus/render-prometheusrule.sh",
            i + 1,
            groups.get(i),
            under_spec.get(i)
        );
    }
    // And as YAML: the same rules, nothing else in the spec.
    let parsed: PrometheusRule = yaml(&deploy("prometheus/prometheusrule.yaml"));
    assert_eq!(parsed.kind, "PrometheusRule");
    assert_eq!(parsed.api_version, "monitoring.coreos.com/v1");
    assert_eq!(parsed.metadata["name"], "enforcer");
    assert_eq!(parsed.spec, rules());
}

#[test]
fn promtool_rule_unit_tests_pass() {
    let dir = deploy("prometheus/tests");
    let out = run_tool(
        "promtool",
        &["test", "rules", "enforcer-rules.test.yml"],
        &dir,
    );
    assert_success("promtool test rules enforcer-rules.test.yml", &out);
}

#[test]
fn every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not() {
    let tests: RuleTests = yaml(&deploy("prometheus/tests/enforcer-rules.test.yml"));
    assert_eq!(tests.rule_files, ["../enforcer-rules.yml"]);
    let file = rules();
    let names: BTreeSet<&str> = alerts(&file).iter().map(|r| name(r)).collect();
    let mut fires: BTreeSet<&str> = BTreeSet::new();
    let mut silent: BTreeSet<&str> = BTreeSet::new();
    for group in &tests.tests {
        for t in &group.alert_rule_test {
            // promtool passes `exp_alerts: []` for an alert that does not exist: a typo
            // would make a silent case vacuous.
            assert!(
                names.contains(t.alertname.as_str()),
                "test group {:?} at {} tests {:?}, which is not an alert of enforcer-rules.yml",
                group.name,
                t.eval_time,
                t.alertname
            );
            if t.exp_alerts.is_empty() {
                silent.insert(t.alertname.as_str());
            } else {
                fires.insert(t.alertname.as_str());
            }
        }
    }
    let never_fired: Vec<_> = names.difference(&fires).collect();
    let never_silent: Vec<_> = names.difference(&silent).collect();
    assert!(
        never_fired.is_empty() && never_silent.is_empty(),
        "alerts without a firing case: {never_fired:?}; without a silent case: {never_silent:?}"
    );
}

#[test]
fn every_alert_has_for_severity_summary_and_a_runbook_section() {
    let cargo = read(&workspace().join("Cargo.toml"));
    let repository = cargo
        .lines()
        .find_map(|l| l.strip_prefix("repository = "))
        .map(|v| v.trim_matches('"'))
        .expect("workspace Cargo.toml has a repository");
    let runbook = read(&deploy("RUNBOOK.md"));
    let anchors = markdown_anchors(&runbook);
    let duration = regex::Regex::new(r"^([0-9]+(ms|s|m|h|d|w|y))+$").expect("valid regex");
    let file = rules();
    let mut seen = BTreeSet::new();
    let mut by_severity: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in alerts(&file) {
        let alert = name(rule);
        assert!(seen.insert(alert), "{alert}: defined twice");
        let for_ = rule
            .for_
            .as_deref()
            .unwrap_or_else(|| panic!("{alert}: no `for`"));
        assert!(
            duration.is_match(for_),
            "{alert}: `for: {for_}` is not a duration"
        );
        let severity = rule
            .labels
            .get("severity")
            .unwrap_or_else(|| panic!("{alert}: no severity label"));
        assert!(
            SEVERITIES.contains(&severity.as_str()),
            "{alert}: severity {severity:?} is none of {SEVERITIES:?}"
        );
        by_severity
            .entry(severity.clone())
            .or_default()
            .insert(alert.to_string());
        let summary = rule
            .annotations
            .get("summary")
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| panic!("{alert}: no summary"));
        if NODE_FROM_KUBE_STATE.contains(&alert) {
            assert!(
                summary.contains("$labels.node"),
                "{alert}: the summary must name the node: {summary}"
            );
        } else if !FLEET_WIDE.contains(&alert) {
            assert!(
                summary.contains("$labels.node") && summary.contains("$labels.instance"),
                "{alert}: the summary must name the node (node label, else instance): {summary}"
            );
        }
        assert!(
            rule.annotations
                .get("description")
                .is_some_and(|d| !d.trim().is_empty()),
            "{alert}: no description"
        );
        let url = rule
            .annotations
            .get("runbook_url")
            .unwrap_or_else(|| panic!("{alert}: no runbook_url"));
        let expected = format!(
            "{repository}/blob/main/deploy/RUNBOOK.md#{}",
            heading_anchor(alert)
        );
        assert_eq!(url, &expected, "{alert}: runbook_url");
        assert!(
            anchors.contains(&heading_anchor(alert)),
            "{alert}: deploy/RUNBOOK.md has no `## {alert}` section"
        );
    }
    // The runbook's severity table says the same as the rules.
    let mut table: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in runbook.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let severity = cells[1].trim_matches('`').to_string();
        if !SEVERITIES.contains(&severity.as_str()) {
            continue; // another table
        }
        let names = cells[cells.len() - 2]
            .split(',')
            .map(|n| n.trim().to_string());
        table.entry(severity).or_default().extend(names);
    }
    assert_eq!(
        table, by_severity,
        "deploy/RUNBOOK.md's severity table disagrees with the rules"
    );
}

#[test]
fn alerts_use_metrics_the_daemon_exports_or_that_are_planned() {
    let exported = exported_metric_names();
    for sure in [
        "enforcer_node_cpu_utilisation_ratio",
        "enforcer_sampler_ticks_total",
        "enforcer_build_info",
        "enforcer_tc_failures_total",
        "k8s_cpu_cgroup_use_total",
    ] {
        assert!(
            exported.contains(sure),
            "the scan of enforcer/src for metric definitions misses {sure}: update exported_metric_names (found {exported:?})"
        );
    }
    let file = rules();
    let mut unknown = Vec::new();
    for rule in file.groups.iter().flat_map(|g| &g.rules) {
        let texts = std::iter::once(&rule.expr).chain(rule.annotations.values());
        for metric in texts.flat_map(|t| metric_names(t, PREFIXES)) {
            if !exported.contains(&metric)
                && !PLANNED.contains(&metric.as_str())
                && !EXTERNAL.contains(&metric.as_str())
            {
                unknown.push(format!("{}: {metric}", name(rule)));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "rules use metrics the daemon does not export and that are not listed as planned: {unknown:?}"
    );
    for planned in PLANNED.iter().filter(|p| exported.contains(**p)) {
        eprintln!("note: {planned} is exported now: remove it from PLANNED");
    }
}

/// A rules file with one recording rule per dashboard expression (variables substituted):
/// `promtool check rules` parses every one of them.
#[test]
fn every_dashboard_expression_parses() {
    let dash = dashboard();
    let queries = panel_queries(&dash);
    assert!(queries.len() > 20, "only {} panel queries", queries.len());
    let label_values =
        regex::Regex::new(r"^label_values\((.+),\s*[A-Za-z_][A-Za-z0-9_]*\)$").expect("regex");
    let mut records = Vec::new();
    for q in &queries {
        records.push((
            format!("dashboard:panel_{}_{}", q.panel_id, q.ref_id),
            q.expr.clone(),
        ));
    }
    for (var, query) in variable_queries(&dash) {
        let selector = label_values.captures(&query).unwrap_or_else(|| {
            panic!("variable {var}: {query:?} is not label_values(selector, label)")
        })[1]
            .to_string();
        records.push((format!("dashboard:variable_{var}"), selector));
    }
    let mut rules = Vec::new();
    for (record, expr) in &records {
        let expr = substitute(expr, DEFAULT_VARIABLES);
        assert!(
            variables_left(&expr).is_empty(),
            "{record}: variables without a test value in {expr}"
        );
        rules.push(Rule {
            alert: None,
            record: Some(record.clone()),
            expr,
            for_: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        });
    }
    let file = RuleFile {
        groups: vec![Group {
            name: "dashboard".into(),
            interval: None,
            rules,
        }],
    };
    let dir = TempDir::new("dashboard-exprs");
    let path = dir.path().join("dashboard.yml");
    std::fs::write(&path, serde_yaml_ng::to_string(&file).expect("serialise")).expect("write");
    let out = check_rules(&path);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", records.len())),
        "{out}"
    );
}

#[test]
fn the_dashboard_uses_only_metrics_the_daemon_exports_today() {
    let exported = exported_metric_names();
    let dash = dashboard();
    let mut unknown = Vec::new();
    let exprs = panel_queries(&dash)
        .into_iter()
        .map(|q| (format!("panel {} {:?}", q.panel_id, q.panel_title), q.expr))
        .chain(
            variable_queries(&dash)
                .into_iter()
                .map(|(n, q)| (format!("variable {n}"), q)),
        );
    for (what, expr) in exprs {
        for metric in metric_names(&expr, PREFIXES) {
            if !exported.contains(&metric) {
                unknown.push(format!("{what}: {metric}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "dashboard queries use metrics the daemon does not export: {unknown:?}"
    );
}

#[test]
fn the_dashboard_has_its_variables_datasource_and_the_operators_panels() {
    let dash = dashboard();
    assert!(
        dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion {}",
        dash["schemaVersion"]
    );
    assert!(dash["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let var = |n: &str| {
        vars.iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("no `{n}` variable"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    let defined: BTreeSet<String> = vars
        .iter()
        .filter_map(|v| v["name"].as_str().map(String::from))
        .collect();
    let node = variable_queries(&dash)
        .into_iter()
        .find(|(n, _)| n == "node")
        .expect("node variable query")
        .1;
    assert!(
        node.starts_with("label_values(") && node.ends_with(", node)"),
        "{node}"
    );

    let mut ids = BTreeSet::new();
    let mut stack: Vec<&serde_json::Value> =
        dash["panels"].as_array().expect("panels").iter().collect();
    while let Some(panel) = stack.pop() {
        let id = panel["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} used twice");
        stack.extend(panel["panels"].as_array().into_iter().flatten());
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {id}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {id} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {id}");
        }
    }
    let builtins = ["__rate_interval", "__interval", "__range"];
    for q in panel_queries(&dash) {
        for v in variables_left(&q.expr) {
            assert!(
                defined.contains(&v) || builtins.contains(&v.as_str()),
                "panel {} uses ${v}, which the dashboard does not define",
                q.panel_id
            );
        }
    }
    // The operators' existing panels (SPEC §5): both series, as counters and as rates.
    let exprs: Vec<String> = panel_queries(&dash).into_iter().map(|q| q.expr).collect();
    for series in ["k8s_cpu_cgroup_use_total", "yarn_cpu_cgroup_use_total"] {
        assert!(
            exprs
                .iter()
                .any(|e| e.starts_with(&format!("rate({series}{{"))),
            "no rate() panel of {series}"
        );
        assert!(
            exprs.iter().any(|e| e.starts_with(&format!("{series}{{"))),
            "no raw counter panel of {series}"
        );
    }
}

#[test]
fn alertmanager_routes_each_severity_to_its_receiver() {
    let dir = deploy("prometheus");
    assert_success(
        "amtool check-config alertmanager.yml",
        &run_tool("amtool", &["check-config", "alertmanager.yml"], &dir),
    );
    let file = rules();
    let used: BTreeSet<&str> = alerts(&file)
        .iter()
        .filter_map(|r| r.labels.get("severity").map(String::as_str))
        .collect();
    let routes = [("page", "on-call"), ("warning", "team"), ("info", "silent")];
    assert_eq!(used, routes.iter().map(|(s, _)| *s).collect());
    for (severity, receiver) in routes {
        let out = run_tool(
            "amtool",
            &[
                "config",
                "routes",
                "test",
                "--config.file=alertmanager.yml",
                &format!("severity={severity}"),
                "alertname=EnforcerTest",
            ],
            &dir,
        );
        assert_success("amtool config routes test", &out);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            receiver,
            "severity={severity}"
        );
    }
}

/// The DaemonSet's pod template (deploy/daemonset.yaml holds several documents).
fn daemonset_pod_template() -> serde_yaml_ng::Value {
    let text = read(&deploy("daemonset.yaml"));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde_yaml_ng::Value::deserialize(doc).expect("daemonset.yaml document"))
        .find(|doc| doc["kind"] == "DaemonSet")
        .expect("a DaemonSet in deploy/daemonset.yaml")["spec"]["template"]
        .clone()
}

#[test]
fn the_scrape_configs_give_the_labels_the_rules_expect() {
    let pod = daemonset_pod_template();
    let pod_label = pod["metadata"]["labels"]["app.kubernetes.io/name"]
        .as_str()
        .expect("pod label app.kubernetes.io/name");
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    // The job matcher of the `up` rules.
    let file = rules();
    let up = alerts(&file)
        .into_iter()
        .find(|r| name(r) == "EnforcerDown")
        .expect("EnforcerDown");
    let matcher = regex::Regex::new(r#"job=~"([^"]+)""#)
        .expect("regex")
        .captures(&up.expr)
        .expect("job matcher")[1]
        .to_string();
    let job_regex = regex::Regex::new(&format!("^(?:{matcher})$")).expect("job regex");

    let relabels_node = |relabels: &serde_yaml_ng::Value, source: &str, target: &str| {
        relabels.as_sequence().into_iter().flatten().any(|r| {
            r[source]
                .as_sequence()
                .is_some_and(|s| s.iter().any(|l| l == "__meta_kubernetes_pod_node_name"))
                && r[target] == "node"
        })
    };

    // Plain Prometheus.
    let scrape: serde_yaml_ng::Value = yaml(&deploy("prometheus/scrape-config.yml"));
    let job = &scrape["scrape_configs"][0];
    let job_name = job["job_name"].as_str().expect("job_name");
    assert!(
        job_regex.is_match(job_name),
        "job {job_name:?} does not match {matcher:?}"
    );
    assert_eq!(
        job["honor_labels"], true,
        "keep the daemon's own node label"
    );
    assert!(relabels_node(
        &job["relabel_configs"],
        "source_labels",
        "target_label"
    ));
    let selector = &job["kubernetes_sd_configs"][0]["selectors"][0]["label"];
    assert_eq!(
        selector.as_str(),
        Some(format!("app.kubernetes.io/name={pod_label}").as_str())
    );
    // promtool check config, with the rules; Debian's Prometheus is built without
    // Kubernetes discovery, so a static target stands in for it (the relabelling is checked).
    let dir = TempDir::new("scrape-config");
    let mut job = job.clone();
    let mapping = job.as_mapping_mut().expect("job mapping");
    mapping.remove("kubernetes_sd_configs");
    mapping.insert(
        "static_configs".into(),
        serde_yaml_ng::from_str("[{targets: ['127.0.0.1:9977']}]").expect("yaml"),
    );
    let config = serde_json::json!({
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [deploy("prometheus/enforcer-rules.yml")],
        "scrape_configs": [serde_json::to_value(&job).expect("json")],
    });
    let path = dir.path().join("prometheus.yml");
    std::fs::write(&path, serde_yaml_ng::to_string(&config).expect("yaml")).expect("write");
    assert_success(
        "promtool check config",
        &run_tool(
            "promtool",
            &["check", "config", path.to_str().expect("utf-8")],
            dir.path(),
        ),
    );

    // The Prometheus Operator.
    let monitor: serde_yaml_ng::Value = yaml(&deploy("prometheus/podmonitor.yaml"));
    assert_eq!(monitor["kind"], "PodMonitor");
    // The operator's job label is "<namespace>/<name>".
    let job_name = format!(
        "{}/{}",
        monitor["metadata"]["namespace"]
            .as_str()
            .expect("namespace"),
        monitor["metadata"]["name"].as_str().expect("name")
    );
    assert!(
        job_regex.is_match(&job_name),
        "job {job_name:?} does not match {matcher:?}"
    );
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        pod_label
    );
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["honorLabels"], true);
    let port = endpoint["port"].as_str().expect("port name");
    assert!(
        pod["spec"]["containers"][0]["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .any(|p| p["name"] == port),
        "the DaemonSet has no port named {port}"
    );
    assert!(relabels_node(
        &endpoint["relabelings"],
        "sourceLabels",
        "targetLabel"
    ));
}

#[test]
fn grafana_variables_are_substituted_longest_name_first() {
    let vars = [("__rate", "X"), ("__rate_interval", "1m"), ("node", "n1")];
    assert_eq!(
        substitute(
            r#"rate(a{node="$node"}[$__rate_interval]) + b{n="${node}",m="[[node]]"}"#,
            &vars
        ),
        r#"rate(a{node="n1"}[1m]) + b{n="n1",m="n1"}"#
    );
    assert_eq!(
        variables_left("a{x=\"$y\"}[${__z}] [[w]]"),
        ["y", "__z", "w"]
    );
    assert!(variables_left(r#"a{x=~"^b$"}"#).is_empty());
}

#[test]
fn metric_names_skip_label_values_and_functions() {
    assert_eq!(
        metric_names(
            r#"sum by (kind) (rate(enforcer_a_total{kind="enforcer_not_a_metric"}[5m])) / enforcer_b"#,
            &["enforcer_"]
        ),
        ["enforcer_a_total", "enforcer_b"]
    );
}

#[test]
fn runbook_anchors_follow_github() {
    assert_eq!(
        heading_anchor(" EnforcerNodeCPUHigh"),
        "enforcernodecpuhigh"
    );
    assert_eq!(heading_anchor(" Before you start"), "before-you-start");
    assert_eq!(
        markdown_anchors("# A\n```sh\n# not a heading\n```\n## B c\n"),
        ["a", "b-c"]
    );
}

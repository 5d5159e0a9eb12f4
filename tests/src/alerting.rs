//! The operators' side of enforcer as files: the Prometheus rules, the Grafana dashboard, and
//! the Prometheus tools that check them (`promtool`, `amtool`, from the Debian packages
//! `prometheus` and `prometheus-alertmanager` that `cargo xtask setup` installs). Used by
//! `tests/alert_rules.rs` (no root needed) and by any test that runs the dashboard's queries
//! against a real Prometheus.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// A file's text; a missing file fails the test with its path.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A YAML file, parsed; a bad one fails the test with its path.
pub fn yaml<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// `deploy/...` of the workspace.
pub fn deploy(path: &str) -> PathBuf {
    workspace().join("deploy").join(path)
}

/// The path of a Prometheus tool on `PATH`. A missing tool is a failure, never a skip.
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found on PATH: run `cargo xtask setup` (Debian packages prometheus, prometheus-alertmanager)"
            )
        })
}

/// Runs `tool ARGS` in `dir` to completion.
pub fn run_tool(name: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(tool(name))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"))
}

/// Asserts that `output` is a success, printing both streams otherwise.
pub fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One query of a dashboard panel.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelQuery {
    pub panel_id: u64,
    pub panel_title: String,
    pub ref_id: String,
    /// As written in the dashboard, Grafana variables included.
    pub expr: String,
}

/// Every panel query of a Grafana dashboard (panels nested in rows included).
pub fn panel_queries(dashboard: &serde_json::Value) -> Vec<PanelQuery> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<PanelQuery>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(PanelQuery {
                        panel_id: panel["id"].as_u64().unwrap_or_default(),
                        panel_title: panel["title"].as_str().unwrap_or_default().to_string(),
                        ref_id: target["refId"].as_str().unwrap_or_default().to_string(),
                        expr: expr.to_string(),
                    });
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The query of every `query` template variable: (name, query).
pub fn variable_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = &v["query"];
            let query = q["query"].as_str().or(q.as_str()).unwrap_or_default();
            (
                v["name"].as_str().unwrap_or_default().to_string(),
                query.to_string(),
            )
        })
        .collect()
}

/// Sane values for the dashboard's variables and Grafana's built-in interval variables.
pub const DEFAULT_VARIABLES: &[(&str, &str)] = &[
    ("job", "enforcer"),
    ("node", "node-1"),
    ("instance", "127.0.0.1:9977"),
    ("__rate_interval", "1m"),
    ("__interval", "30s"),
    ("__range", "1h"),
];

/// `expr` with Grafana's `$name`, `${name}` and `[[name]]` replaced by `values` (longest
/// names first, so `$__rate_interval` is not taken for `$__rate`).
pub fn substitute(expr: &str, values: &[(&str, &str)]) -> String {
    let mut sorted: Vec<&(&str, &str)> = values.iter().collect();
    sorted.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut out = expr.to_string();
    for (name, value) in sorted {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("[[{name}]]"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// Grafana variable references left in `expr` (`$name`, `${name}`, `[[name]]`).
pub fn variables_left(expr: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)|\[\[([A-Za-z_][A-Za-z0-9_]*)")
        .expect("valid regex");
    re.captures_iter(expr)
        .filter_map(|c| c.get(1).or(c.get(2)).map(|m| m.as_str().to_string()))
        .collect()
}

/// The metric names an expression uses that start with `prefixes` (quoted strings, i.e.
/// label values, are ignored).
pub fn metric_names(expr: &str, prefixes: &[&str]) -> Vec<String> {
    let strings =
        regex::Regex::new(r#""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`"#).expect("valid regex");
    let bare = strings.replace_all(expr, "\"\"");
    let ident = regex::Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*").expect("valid regex");
    let mut out: Vec<String> = ident
        .find_iter(&bare)
        .map(|m| m.as_str().to_string())
        .filter(|name| prefixes.iter().any(|p| name.starts_with(p)))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The series names the daemon exports, read from its metric definitions under
/// `enforcer/src` (every `gauge(enc, "name", ...)` and `counter(enc, "name", ...)` call,
/// counters with the `_total` the encoder appends, and the info metric with `_info`).
pub fn exported_metric_names() -> std::collections::BTreeSet<String> {
    let calls = regex::Regex::new(
        r#"\b(counter|gauge)\(\s*(?:&mut\s+)?enc\s*,\s*"([A-Za-z_:][A-Za-z0-9_:]*)""#,
    )
    .expect("valid regex");
    let info = regex::Regex::new(r#"encode_descriptor\(\s*"([A-Za-z_:][A-Za-z0-9_:]*)""#)
        .expect("valid regex");
    let mut names = std::collections::BTreeSet::new();
    let mut stack = vec![workspace().join("enforcer/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                for c in calls.captures_iter(&text) {
                    let suffix = if &c[1] == "counter" { "_total" } else { "" };
                    names.insert(format!("{}{suffix}", &c[2]));
                }
                for c in info.captures_iter(&text) {
                    names.insert(format!("{}_info", &c[1]));
                }
            }
        }
    }
    names
}

/// GitHub's anchor for a Markdown heading: lower case, spaces to `-`, punctuation other
/// than `-` and `_` dropped.
pub fn heading_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of every heading of a Markdown text.
pub fn markdown_anchors(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.push(heading_anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// A Prometheus duration (`90s`, `1h30m`, `500ms`) in milliseconds.
pub fn duration_ms(text: &str) -> Option<u64> {
    let unit_ms = |unit: &str| -> Option<u64> {
        Some(match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        })
    };
    let re = regex::Regex::new(r"^(?:[0-9]+(?:ms|[smhdwy]))+$").expect("valid regex");
    if !re.is_match(text) {
        return None;
    }
    let part = regex::Regex::new(r"([0-9]+)(ms|[smhdwy])").expect("valid regex");
    part.captures_iter(text)
        .map(|c| Some(c[1].parse::<u64>().ok()? * unit_ms(&c[2])?))
        .sum()
}

/// `ms` as a Prometheus duration: whole seconds as `Ns`, else `Nms`.
pub fn format_duration_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The rules file `rules` with its time scale divided by `factor`, by a mechanical rewrite of
/// two kinds of lines only: a rule's `for: D` and the range selectors `[D]` (or subquery
/// `[D:S]`) of a one-line `expr: ...`, each duration becoming D / factor (3m / 10 = 18s).
/// Everything else — thresholds, labels, annotations (their templates' own queries too) —
/// is left as it is. Returns the text and how many durations were rewritten. Panics on a
/// duration it cannot read or on an `expr:` continued on the next lines (a block scalar),
/// which it would not see.
pub fn shorten_durations(rules: &str, factor: u64) -> (String, usize) {
    let scale = |d: &str| -> String {
        let ms = duration_ms(d).unwrap_or_else(|| panic!("not a duration: {d:?}"));
        format_duration_ms((ms / factor).max(1))
    };
    let range = regex::Regex::new(r"\[([0-9a-z]+)(?::([0-9a-z]*))?\]").expect("valid regex");
    let mut count = 0;
    let mut out = String::with_capacity(rules.len());
    for line in rules.split_inclusive('\n') {
        let indent = &line[..line.len() - line.trim_start().len()];
        let body = line.trim();
        let eol = &line[line.trim_end().len()..];
        let rewritten = if let Some(d) = body.strip_prefix("for:") {
            count += 1;
            format!("{indent}for: {}{eol}", scale(d.trim()))
        } else if let Some(expr) = body.strip_prefix("expr:") {
            let expr = expr.trim();
            assert!(
                !expr.is_empty() && !expr.starts_with('|') && !expr.starts_with('>'),
                "an expr on several lines: {line:?}"
            );
            let expr = range.replace_all(expr, |c: &regex::Captures| {
                count += 1;
                match c.get(2).map(|m| m.as_str()) {
                    Some("") => format!("[{}:]", scale(&c[1])),
                    Some(step) => format!("[{}:{}]", scale(&c[1]), scale(step)),
                    None => format!("[{}]", scale(&c[1])),
                }
            });
            format!("{indent}expr: {expr}{eol}")
        } else {
            line.to_string()
        };
        out.push_str(&rewritten);
    }
    (out, count)
}

/// A Grafana variable's value as the Prometheus data source interpolates it: a single value
/// as it is, several (multi-value or "All") as an escaped regular-expression alternation.
pub fn grafana_value(values: &[String], regex: bool) -> String {
    if !regex {
        return values[0].clone();
    }
    let escape = |v: &String| {
        let mut out = String::new();
        for c in v.chars() {
            match c {
                '\\' => out.push_str(r"\\\\"),
                '$' | '^' | '*' | '{' | '}' | '[' | ']' | '\'' | '+' | '?' | '.' | '(' | ')'
                | '|' => {
                    out.push_str(r"\\");
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        out
    };
    let all: Vec<String> = values.iter().map(escape).collect();
    if all.len() == 1 {
        all[0].clone()
    } else {
        format!("({})", all.join("|"))
    }
}

/// The dashboard's variables resolved through `label_values` (Prometheus's label values
/// for a selector), in their order (each may use the previous ones), with "All" selected
/// where the dashboard selects it, and Grafana's interval variables first.
pub fn dashboard_variables(
    dash: &serde_json::Value,
    label_values: impl Fn(&str, &str) -> Result<Vec<String>, String>,
) -> Result<Vec<(String, String)>, String> {
    let mut values: Vec<(String, String)> = vec![
        ("__rate_interval".into(), "1m".into()),
        ("__interval".into(), "15s".into()),
        ("__range".into(), "5m".into()),
    ];
    let query_re =
        regex::Regex::new(r"^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$").expect("regex");
    for var in dash["templating"]["list"].as_array().expect("templating") {
        if var["type"] != "query" {
            continue;
        }
        let name = var["name"].as_str().expect("variable name");
        let query = var["query"]["query"]
            .as_str()
            .or(var["query"].as_str())
            .expect("variable query");
        let pairs: Vec<(&str, &str)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let query = substitute(query, &pairs);
        let c = query_re
            .captures(&query)
            .ok_or_else(|| format!("variable {name}: not a label_values() query: {query}"))?;
        let found = label_values(&c[1], &c[2]).map_err(|e| format!("variable {name}: {e}"))?;
        if found.is_empty() {
            return Err(format!("variable {name}: {query} gives no value"));
        }
        let regex = var["multi"] == true || var["includeAll"] == true;
        values.push((name.to_string(), grafana_value(&found, regex)));
    }
    Ok(values)
}

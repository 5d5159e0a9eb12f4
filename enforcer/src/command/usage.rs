//! `enforcer usage`: the offline pods' usage, read from the ledger's files (no daemon
//! needed), the last record of each unit, grouped and rendered for billing.

use std::path::PathBuf;

use anyhow::Context;
use enforcer::{
    config::Config,
    surfaces::{
        cli::usage::{self, GroupBy, Range},
        ledger,
    },
};

use super::UsageOutput;

fn ledger_path(file: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match (file, config) {
        (Some(f), _) => f,
        (None, Some(c)) => Config::load(&c)?.daemon.usage_ledger.path,
        (None, None) => Config::default().daemon.usage_ledger.path,
    })
}

fn time(flag: &str, value: Option<String>) -> anyhow::Result<Option<f64>> {
    value
        .map(|v| {
            enforcer::clock::parse_rfc3339(&v).with_context(|| {
                format!("--{flag} {v}: not an RFC 3339 time (2026-12-01T00:00:00Z)")
            })
        })
        .transpose()
}

pub fn execute(
    file: Option<PathBuf>,
    config: Option<PathBuf>,
    by: GroupBy,
    since: Option<String>,
    until: Option<String>,
    output: UsageOutput,
) -> anyhow::Result<()> {
    let path = ledger_path(file, config)?;
    let range = Range {
        since: time("since", since)?,
        until: time("until", until)?,
    };
    let (records, bad) =
        ledger::read(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if records.is_empty() && bad == 0 && !path.exists() {
        anyhow::bail!(
            "{}: no usage ledger (no offline unit was ever accounted on this node, or daemon.usage_ledger points elsewhere)",
            path.display()
        );
    }
    if bad > 0 {
        eprintln!(
            "enforcer: {}: {bad} lines that are not usage records skipped",
            path.display()
        );
    }
    let rows = usage::report(&usage::latest(records), by, &range);
    match output {
        UsageOutput::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        UsageOutput::Csv => print!("{}", usage::render_csv(&rows)),
        UsageOutput::Text => print!("{}", usage::render_usage(&rows)),
    }
    Ok(())
}

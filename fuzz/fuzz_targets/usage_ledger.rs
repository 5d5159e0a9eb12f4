//! The usage ledger as `enforcer usage` and a restarted daemon read it: JSON lines
//! (`model::usage::UsageRecord`, a file anything on the node may have written to or torn),
//! then `surfaces::cli::usage::{latest, report, render_usage, render_csv}` over them.
//!
//! Beyond "no panic": `latest` keeps one record per id; every row of a report counts at
//! least one unit and together they count each unit in range once; a CSV has one line per
//! row and a header (fields are quoted, so a line break inside a field stays inside it).

#![no_main]

use enforcer::{
    clock::parse_rfc3339,
    model::usage::UsageRecord,
    surfaces::cli::usage::{GroupBy, Range, latest, render_csv, render_usage, report},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let records: Vec<UsageRecord> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for r in &records {
        let _ = parse_rfc3339(&r.start_time);
        let _ = parse_rfc3339(&r.end_time);
    }
    let last = latest(records);
    let mut ids: Vec<&str> = last.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), last.len(), "one record per id");
    let everything = Range {
        since: None,
        until: None,
    };
    for by in [
        GroupBy::Application,
        GroupBy::Queue,
        GroupBy::Namespace,
        GroupBy::Pod,
    ] {
        let rows = report(&last, by, &everything);
        assert!(rows.iter().all(|r| r.pods >= 1));
        assert_eq!(rows.iter().map(|r| r.pods).sum::<u64>(), last.len() as u64);
        let _ = render_usage(&rows);
        let _ = render_csv(&rows);
    }
});

//! `enforcer usage`: the usage ledger summed into the operators' billing rows, per Spark
//! application, queue, namespace or pod, as a terminal table or as CSV that loads into the
//! operators' billing table as is.
//!
//! Pure functions of ledger records: the handler reads the ledger (with the daemon down,
//! too) and prints what these return.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
};

use serde::Serialize;

use crate::{
    clock::parse_rfc3339,
    model::usage::{UsageRecord, UsageStatus},
};

/// The `spark-role` of the pod that stands for its application.
const DRIVER: &str = "driver";
const EXECUTOR: &str = "executor";

/// The last record of every id, in the order the ids first appear.
///
/// A unit's `running` records are periodic flushes of figures that only grow, and its ended
/// record closes it: summing them would bill the unit once per flush, so only the last one
/// of an id (in file order) counts. First-appearance order keeps units in the order they
/// entered the ledger, which is roughly the order they started.
pub fn latest(records: impl IntoIterator<Item = UsageRecord>) -> Vec<UsageRecord> {
    let mut out: Vec<UsageRecord> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for r in records {
        match index.get(&r.id) {
            Some(&i) => out[i] = r,
            None => {
                index.insert(r.id.clone(), out.len());
                out.push(r);
            }
        }
    }
    out
}

/// What one row of the report stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    /// A Spark application (driver and executors); other units one row each.
    Application,
    Queue,
    Namespace,
    Pod,
}

/// A time window in unix seconds, both ends inclusive and optional.
///
/// A unit is in the window when its life, `[start_time, end_time]`, overlaps it, and then
/// its whole-life figures are reported: the ledger holds totals, not a time series, so a
/// unit that straddles a bound is not pro-rated (billing a month bills the units that ran in
/// it, in full). A unit whose times do not parse cannot be shown to overlap a bound, so it is
/// only in a window without that bound.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Range {
    pub since: Option<f64>,
    pub until: Option<f64>,
}

impl Range {
    fn overlaps(&self, r: &UsageRecord) -> bool {
        if let Some(until) = self.until {
            match parse_rfc3339(&r.start_time) {
                Some(start) if start <= until => {}
                _ => return false,
            }
        }
        if let Some(since) = self.since {
            match parse_rfc3339(&r.end_time) {
                Some(end) if end >= since => {}
                _ => return false,
            }
        }
        true
    }
}

/// One billing row: the operators' columns, in their order, then extra figures the terminal
/// and `--output json` can show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    pub application_id: String,
    pub namespace: String,
    pub queue: String,
    pub driver_pod_name: String,
    pub executor_count: u64,
    pub cpu_seconds: f64,
    pub memory_mb_seconds: f64,
    pub start_time: String,
    pub end_time: String,
    pub status: String,
    /// Units (ledger ids) summed into the row.
    pub pods: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

/// What a group is keyed by; its order is the tie-break of rows of equal CPU.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Application {
        application_id: String,
        namespace: String,
    },
    /// A unit of no Spark application, a row of its own: the pod's name, else its cgroup.
    Unit {
        name: String,
        namespace: String,
    },
    Queue(String),
    Namespace(String),
    /// `index` keeps records apart that share a name (a pod recreated under its name).
    Pod {
        namespace: String,
        name: String,
        index: usize,
    },
}

/// The pod's name, else (a unit no runtime knows) its cgroup.
fn name(r: &UsageRecord) -> &str {
    if r.pod_name.is_empty() {
        &r.cgroup
    } else {
        &r.pod_name
    }
}

fn key(by: GroupBy, index: usize, r: &UsageRecord) -> Key {
    match by {
        GroupBy::Application if r.application_id.is_empty() => Key::Unit {
            name: name(r).to_string(),
            namespace: r.namespace.clone(),
        },
        GroupBy::Application => Key::Application {
            application_id: r.application_id.clone(),
            namespace: r.namespace.clone(),
        },
        GroupBy::Queue => Key::Queue(r.queue.clone()),
        GroupBy::Namespace => Key::Namespace(r.namespace.clone()),
        GroupBy::Pod => Key::Pod {
            namespace: r.namespace.clone(),
            name: name(r).to_string(),
            index,
        },
    }
}

/// The billing rows of `records` (already [`latest`]) whose life overlaps `range`, one per
/// group of `by`, the most CPU first.
///
/// Figures are the units' whole-life totals (see [`Range`]): a row is what its units used
/// from start to end, not what they used inside the window.
pub fn report(records: &[UsageRecord], by: GroupBy, range: &Range) -> Vec<UsageRow> {
    let mut groups: BTreeMap<Key, Vec<&UsageRecord>> = BTreeMap::new();
    for (index, r) in records.iter().enumerate() {
        if range.overlaps(r) {
            groups.entry(key(by, index, r)).or_default().push(r);
        }
    }
    let mut rows: Vec<(Key, UsageRow)> = groups
        .into_iter()
        .map(|(key, members)| {
            let row = row(&key, &members);
            (key, row)
        })
        .collect();
    rows.sort_by(|(ka, a), (kb, b)| {
        b.cpu_seconds
            .total_cmp(&a.cpu_seconds)
            .then_with(|| ka.cmp(kb))
    });
    rows.into_iter().map(|(_, row)| row).collect()
}

/// One group's row. `members` is never empty (a group exists because a record joined it).
fn row(key: &Key, members: &[&UsageRecord]) -> UsageRow {
    let first = members.first().copied();
    // A queue or a namespace mixes applications: no one driver speaks for it. Of an
    // application's drivers (a resubmitted one) the last is the latest attempt.
    let driver = match key {
        Key::Queue(_) | Key::Namespace(_) => None,
        _ => members
            .iter()
            .rev()
            .find(|r| r.spark_role == DRIVER)
            .copied(),
    };
    let own = |f: fn(&UsageRecord) -> &str| {
        driver
            .or(first)
            .map(|r| f(r).to_string())
            .unwrap_or_default()
    };
    let (application_id, namespace, queue) = match key {
        Key::Application {
            application_id,
            namespace,
        } => (application_id.clone(), namespace.clone(), own(|r| &r.queue)),
        Key::Unit { name, namespace } => (name.clone(), namespace.clone(), own(|r| &r.queue)),
        Key::Queue(queue) => (
            String::new(),
            common(members, |r| &r.namespace),
            queue.clone(),
        ),
        Key::Namespace(namespace) => (
            String::new(),
            namespace.clone(),
            common(members, |r| &r.queue),
        ),
        Key::Pod { namespace, .. } => (
            own(|r| &r.application_id),
            namespace.clone(),
            own(|r| &r.queue),
        ),
    };
    UsageRow {
        application_id,
        namespace,
        queue,
        driver_pod_name: driver.map(|d| d.pod_name.clone()).unwrap_or_default(),
        executor_count: members.iter().filter(|r| r.spark_role == EXECUTOR).count() as u64,
        cpu_seconds: members.iter().map(|r| r.cpu_seconds).sum(),
        memory_mb_seconds: members.iter().map(|r| r.memory_mb_seconds).sum(),
        start_time: extreme(members, |r| &r.start_time, |a, b| a < b),
        end_time: extreme(members, |r| &r.end_time, |a, b| a > b),
        status: status(members, driver).as_str().to_string(),
        pods: members.len() as u64,
        net_rx_bytes: members
            .iter()
            .fold(0, |acc: u64, r| acc.saturating_add(r.net_rx_bytes)),
        net_tx_bytes: members
            .iter()
            .fold(0, |acc: u64, r| acc.saturating_add(r.net_tx_bytes)),
    }
}

/// The value all members share, else empty (the group mixes them).
fn common(members: &[&UsageRecord], f: fn(&UsageRecord) -> &str) -> String {
    let mut values = members.iter().map(|r| f(r));
    match values.next() {
        Some(v) if values.all(|o| o == v) => v.to_string(),
        _ => String::new(),
    }
}

/// The time string whose parsed instant wins `better` (strings do not compare across
/// offsets: `16:00+02:00` is before `15:00Z`); the first member's when none parses.
fn extreme(
    members: &[&UsageRecord],
    f: fn(&UsageRecord) -> &str,
    better: fn(f64, f64) -> bool,
) -> String {
    let mut best: Option<(f64, &str)> = None;
    for r in members {
        let s = f(r);
        if let Some(t) = parse_rfc3339(s)
            && best.is_none_or(|(b, _)| better(t, b))
        {
            best = Some((t, s));
        }
    }
    best.map(|(_, s)| s)
        .or_else(|| members.first().map(|r| f(r)))
        .unwrap_or_default()
        .to_string()
}

/// How much an ended status says about the group: a kill is what the operator has to
/// answer for, so it outranks the kernel's OOM kill, which outranks a deletion, which
/// outranks a plain completion.
fn severity(s: UsageStatus) -> u8 {
    match s {
        UsageStatus::Completed => 0,
        UsageStatus::Deleted => 1,
        UsageStatus::OomKilled => 2,
        UsageStatus::Killed => 3,
        UsageStatus::Running => 4,
    }
}

/// `running` while any unit runs (the row will still grow); else the driver's, as the
/// application ended the way its driver did (executors are killed or deleted when a driver
/// completes); else the most severe.
fn status(members: &[&UsageRecord], driver: Option<&UsageRecord>) -> UsageStatus {
    if members.iter().any(|r| r.status == UsageStatus::Running) {
        return UsageStatus::Running;
    }
    if let Some(d) = driver {
        return d.status;
    }
    members
        .iter()
        .map(|r| r.status)
        .max_by_key(|s| severity(*s))
        .unwrap_or(UsageStatus::Completed)
}

/// The ten billing columns, in the operators' order.
const COLUMNS: [&str; 10] = [
    "application_id",
    "namespace",
    "queue",
    "driver_pod_name",
    "executor_count",
    "cpu_seconds",
    "memory_mb_seconds",
    "start_time",
    "end_time",
    "status",
];

/// Columns of numbers, right-aligned in the table.
fn numeric(column: usize) -> bool {
    (4..=6).contains(&column)
}

fn cells(row: &UsageRow, decimals: usize) -> [String; 10] {
    [
        row.application_id.clone(),
        row.namespace.clone(),
        row.queue.clone(),
        row.driver_pod_name.clone(),
        row.executor_count.to_string(),
        format!("{:.decimals$}", row.cpu_seconds),
        format!("{:.decimals$}", row.memory_mb_seconds),
        row.start_time.clone(),
        row.end_time.clone(),
        row.status.clone(),
    ]
}

/// `enforcer usage`: the rows as a table padded to the widest cell, numbers right-aligned.
/// An empty cell shows as `-` so the columns stay readable; the last column is not padded,
/// so lines carry no trailing blanks.
pub fn render_usage(rows: &[UsageRow]) -> String {
    if rows.is_empty() {
        return "no usage records in this range\n".to_string();
    }
    let table: Vec<[String; 10]> = std::iter::once(COLUMNS.map(str::to_string))
        .chain(
            rows.iter()
                .map(|r| cells(r, 1).map(|c| if c.is_empty() { "-".to_string() } else { c })),
        )
        .collect();
    let mut widths = [0usize; 10];
    for line in &table {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &table {
        for (i, (cell, &w)) in line.iter().zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            if numeric(i) {
                let _ = write!(out, "{cell:>w$}");
            } else if i == COLUMNS.len() - 1 {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<w$}");
            }
        }
        out.push('\n');
    }
    out
}

/// A CSV field, quoted (quotes doubled) only when it has to be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `enforcer usage --output csv`: the ten billing columns with a header line, to load into
/// the operators' table as is. Seconds keep three decimals (milliseconds): more than the
/// terminal shows, as the sums are billed.
pub fn render_csv(rows: &[UsageRow]) -> String {
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for row in rows {
        let line: Vec<String> = cells(row, 3).iter().map(|c| csv_field(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-12-03T10:00:00Z";

    /// A completed unit of no application, its times given.
    fn rec(id: &str, cpu: f64, start: &str, end: &str) -> UsageRecord {
        UsageRecord {
            id: id.to_string(),
            node: "node-1".to_string(),
            status: UsageStatus::Completed,
            application_id: String::new(),
            namespace: "batch".to_string(),
            pod_name: format!("pod-{id}"),
            spark_role: String::new(),
            queue: "root.batch".to_string(),
            priority: None,
            cgroup: format!("kubepods/besteffort/pod{id}"),
            cpu_seconds: cpu,
            memory_mb_seconds: cpu * 100.0,
            memory_peak_bytes: 1 << 20,
            net_rx_bytes: 10,
            net_tx_bytes: 20,
            start_time: start.to_string(),
            end_time: end.to_string(),
            killed_seq: None,
            oom_kills: 0,
            last_known: false,
        }
    }

    fn spark(id: &str, app: &str, role: &str, status: UsageStatus, cpu: f64) -> UsageRecord {
        UsageRecord {
            application_id: app.to_string(),
            spark_role: role.to_string(),
            status,
            ..rec(id, cpu, T0, "2026-12-03T11:00:00Z")
        }
    }

    fn all() -> Range {
        Range::default()
    }

    #[test]
    fn latest_keeps_the_last_record_of_each_id_in_first_appearance_order() {
        let mut a1 = rec("a", 1.0, T0, T0);
        a1.status = UsageStatus::Running;
        let b = rec("b", 5.0, T0, T0);
        let a2 = rec("a", 3.0, T0, T0);
        let got = latest([a1, b.clone(), a2.clone()]);
        assert_eq!(got, vec![a2, b]);
    }

    #[test]
    fn a_running_record_and_its_later_end_count_once() {
        let mut flush = spark("d", "spark-1", DRIVER, UsageStatus::Running, 40.0);
        flush.end_time = "2026-12-03T10:30:00Z".to_string();
        let ended = spark("d", "spark-1", DRIVER, UsageStatus::Completed, 100.0);
        let rows = report(&latest([flush, ended]), GroupBy::Application, &all());
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].pods, 1);
        assert_eq!(rows[0].cpu_seconds, 100.0);
        assert_eq!(rows[0].status, "completed");
        assert_eq!(rows[0].end_time, "2026-12-03T11:00:00Z");
    }

    #[test]
    fn a_spark_application_is_one_row_with_its_driver_and_executors() {
        let mut driver = spark("d", "spark-1", DRIVER, UsageStatus::Completed, 10.0);
        driver.pod_name = "app-driver".to_string();
        driver.queue = "root.etl".to_string();
        driver.start_time = "2026-12-03T09:59:00Z".to_string();
        let mut records = vec![];
        for i in 0..3 {
            let mut e = spark(
                &format!("e{i}"),
                "spark-1",
                EXECUTOR,
                UsageStatus::Deleted,
                20.0,
            );
            e.queue = "root.other".to_string();
            e.end_time = format!("2026-12-03T11:0{i}:00Z");
            records.push(e);
        }
        records.insert(1, driver);
        records.push(spark("x", "spark-2", DRIVER, UsageStatus::Completed, 1.0));
        let rows = report(&records, GroupBy::Application, &all());
        assert_eq!(rows.len(), 2);
        let app = &rows[0];
        assert_eq!(app.application_id, "spark-1");
        assert_eq!(app.namespace, "batch");
        assert_eq!(app.queue, "root.etl");
        assert_eq!(app.driver_pod_name, "app-driver");
        assert_eq!(app.executor_count, 3);
        assert_eq!(app.pods, 4);
        assert_eq!(app.cpu_seconds, 70.0);
        assert_eq!(app.memory_mb_seconds, 7000.0);
        assert_eq!((app.net_rx_bytes, app.net_tx_bytes), (40, 80));
        assert_eq!(app.start_time, "2026-12-03T09:59:00Z");
        assert_eq!(app.end_time, "2026-12-03T11:02:00Z");
        // The executors were deleted when the driver completed: the app completed.
        assert_eq!(app.status, "completed");
        assert_eq!(rows[1].application_id, "spark-2");
    }

    #[test]
    fn the_same_application_id_in_two_namespaces_is_two_rows() {
        let a = spark("a", "spark-1", DRIVER, UsageStatus::Completed, 1.0);
        let mut b = spark("b", "spark-1", DRIVER, UsageStatus::Completed, 2.0);
        b.namespace = "other".to_string();
        let rows = report(&[a, b], GroupBy::Application, &all());
        let keys: Vec<_> = rows.iter().map(|r| r.namespace.as_str()).collect();
        assert_eq!(keys, ["other", "batch"]);
    }

    #[test]
    fn units_of_no_application_are_rows_of_their_own_named_by_pod_or_cgroup() {
        let pod = rec("p", 2.0, T0, T0);
        let mut yarn = rec("cgroup:yarn/c1", 3.0, T0, T0);
        yarn.pod_name = String::new();
        yarn.namespace = String::new();
        yarn.cgroup = "offline/yarn/container_1".to_string();
        let rows = report(&[pod, yarn], GroupBy::Application, &all());
        let names: Vec<_> = rows.iter().map(|r| r.application_id.as_str()).collect();
        assert_eq!(names, ["offline/yarn/container_1", "pod-p"]);
        assert!(
            rows.iter()
                .all(|r| r.pods == 1 && r.driver_pod_name.is_empty())
        );
        assert_eq!(rows[1].queue, "root.batch");
    }

    #[test]
    fn a_queue_row_keeps_a_common_namespace_and_blanks_a_mixed_one() {
        let a = spark("a", "spark-1", EXECUTOR, UsageStatus::Completed, 1.0);
        let b = spark("b", "spark-2", EXECUTOR, UsageStatus::Completed, 1.0);
        let mut c = rec("c", 5.0, T0, T0);
        c.queue = "root.adhoc".to_string();
        c.namespace = "x".to_string();
        let mut d = rec("d", 1.0, T0, T0);
        d.queue = "root.adhoc".to_string();
        d.namespace = "y".to_string();
        let rows = report(&[a, b, c, d], GroupBy::Queue, &all());
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].queue.as_str(), rows[0].namespace.as_str()),
            ("root.adhoc", "")
        );
        assert_eq!(
            (rows[1].queue.as_str(), rows[1].namespace.as_str()),
            ("root.batch", "batch")
        );
        assert_eq!(rows[1].executor_count, 2);
        assert!(rows.iter().all(|r| r.application_id.is_empty()));
        assert!(rows.iter().all(|r| r.driver_pod_name.is_empty()));
    }

    #[test]
    fn a_namespace_row_blanks_a_mixed_queue() {
        let a = rec("a", 1.0, T0, T0);
        let mut b = rec("b", 1.0, T0, T0);
        b.queue = "root.adhoc".to_string();
        let mut c = rec("c", 1.0, T0, T0);
        c.namespace = "solo".to_string();
        let rows = report(&[a, b, c], GroupBy::Namespace, &all());
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].namespace.as_str(), rows[0].queue.as_str()),
            ("batch", "")
        );
        assert_eq!(
            (rows[1].namespace.as_str(), rows[1].queue.as_str()),
            ("solo", "root.batch")
        );
        assert_eq!(rows[0].pods, 2);
    }

    #[test]
    fn a_pod_row_is_one_record_named_driver_only_for_the_driver() {
        let mut d = spark("d", "spark-1", DRIVER, UsageStatus::Completed, 1.0);
        d.pod_name = "app-driver".to_string();
        let e = spark("e", "spark-1", EXECUTOR, UsageStatus::Completed, 2.0);
        let rows = report(&[d, e], GroupBy::Pod, &all());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].driver_pod_name, "");
        assert_eq!(rows[0].executor_count, 1);
        assert_eq!(rows[1].driver_pod_name, "app-driver");
        assert_eq!(rows[1].executor_count, 0);
        assert!(rows.iter().all(|r| r.application_id == "spark-1"));
    }

    #[test]
    fn a_unit_is_in_a_range_its_life_overlaps_and_reported_whole() {
        let day = |h: u32| parse_rfc3339(&format!("2026-12-03T{h:02}:00:00Z"));
        let unit = rec("u", 9.0, "2026-12-03T10:00:00Z", "2026-12-03T12:00:00Z");
        let within = |since: Option<u32>, until: Option<u32>| {
            let range = Range {
                since: since.and_then(day),
                until: until.and_then(day),
            };
            report(std::slice::from_ref(&unit), GroupBy::Pod, &range)
        };
        // Overlapping either end, inside, containing, unbounded: in, figures whole.
        for (since, until) in [
            (Some(9), Some(11)),
            (Some(11), Some(13)),
            (Some(11), Some(11)),
            (Some(8), Some(14)),
            (None, Some(10)),
            (Some(12), None),
            (None, None),
        ] {
            let rows = within(since, until);
            assert_eq!(rows.len(), 1, "{since:?}..{until:?}");
            assert_eq!(rows[0].cpu_seconds, 9.0);
        }
        // Ended before the window, started after it: out.
        for (since, until) in [(Some(13), None), (None, Some(9)), (Some(13), Some(14))] {
            assert!(within(since, until).is_empty(), "{since:?}..{until:?}");
        }
    }

    #[test]
    fn a_unit_whose_times_do_not_parse_is_only_in_an_unbounded_range() {
        let unit = rec("u", 1.0, "yesterday", "today");
        let bounded = Range {
            since: Some(0.0),
            until: None,
        };
        assert_eq!(
            report(std::slice::from_ref(&unit), GroupBy::Pod, &all()).len(),
            1
        );
        assert!(report(&[unit], GroupBy::Pod, &bounded).is_empty());
    }

    #[test]
    fn status_precedence() {
        use UsageStatus::*;
        let group = |statuses: &[(UsageStatus, &str)]| {
            let records: Vec<_> = statuses
                .iter()
                .enumerate()
                .map(|(i, (s, role))| spark(&i.to_string(), "spark-1", role, *s, 1.0))
                .collect();
            report(&records, GroupBy::Application, &all())[0]
                .status
                .clone()
        };
        // Anything still running: the row still grows.
        assert_eq!(
            group(&[(Completed, DRIVER), (Running, EXECUTOR)]),
            "running"
        );
        // The driver speaks for the application, over worse executor endings.
        assert_eq!(
            group(&[(Killed, EXECUTOR), (Completed, DRIVER)]),
            "completed"
        );
        assert_eq!(
            group(&[(Completed, EXECUTOR), (OomKilled, DRIVER)]),
            "oom_killed"
        );
        // No driver: killed > oom_killed > deleted > completed.
        assert_eq!(
            group(&[(Completed, ""), (OomKilled, ""), (Killed, "")]),
            "killed"
        );
        assert_eq!(
            group(&[(Deleted, ""), (OomKilled, ""), (Completed, "")]),
            "oom_killed"
        );
        assert_eq!(group(&[(Completed, ""), (Deleted, "")]), "deleted");
        assert_eq!(group(&[(Completed, ""), (Completed, "")]), "completed");
    }

    #[test]
    fn a_queue_of_several_applications_takes_no_drivers_status() {
        let a = spark("a", "spark-1", DRIVER, UsageStatus::Completed, 1.0);
        let b = spark("b", "spark-2", EXECUTOR, UsageStatus::Killed, 1.0);
        let rows = report(&[a, b], GroupBy::Queue, &all());
        assert_eq!(rows[0].status, "killed");
    }

    #[test]
    fn times_compare_as_instants_not_strings() {
        // 16:00+02:00 is 14:00Z: earlier than 15:00Z although it sorts later as text.
        let a = rec("a", 1.0, "2026-12-03T15:00:00Z", "2026-12-03T18:00:00Z");
        let b = rec(
            "b",
            1.0,
            "2026-12-03T16:00:00+02:00",
            "2026-12-03T19:30:00+02:00",
        );
        let rows = report(&[a, b], GroupBy::Namespace, &all());
        assert_eq!(rows[0].start_time, "2026-12-03T16:00:00+02:00");
        assert_eq!(rows[0].end_time, "2026-12-03T18:00:00Z");
    }

    #[test]
    fn rows_sort_by_cpu_descending_then_by_key() {
        let records: Vec<_> = [("c", 1.0), ("a", 5.0), ("b", 1.0)]
            .iter()
            .map(|(id, cpu)| rec(id, *cpu, T0, T0))
            .collect();
        let rows = report(&records, GroupBy::Application, &all());
        let names: Vec<_> = rows.iter().map(|r| r.application_id.as_str()).collect();
        assert_eq!(names, ["pod-a", "pod-b", "pod-c"]);
    }

    fn billing_row(application_id: &str, cpu: f64, status: &str) -> UsageRow {
        UsageRow {
            application_id: application_id.to_string(),
            namespace: "batch".to_string(),
            queue: "root.etl".to_string(),
            driver_pod_name: String::new(),
            executor_count: 12,
            cpu_seconds: cpu,
            memory_mb_seconds: 2048.26,
            start_time: "2026-12-03T10:00:00Z".to_string(),
            end_time: "2026-12-03T11:00:00Z".to_string(),
            status: status.to_string(),
            pods: 13,
            net_rx_bytes: 1,
            net_tx_bytes: 2,
        }
    }

    #[test]
    fn the_table_pads_columns_and_right_aligns_numbers() {
        let rows = [
            billing_row("spark-long-application", 12345.678, "completed"),
            UsageRow {
                driver_pod_name: "d".to_string(),
                executor_count: 3,
                ..billing_row("s", 5.0, "running")
            },
        ];
        let want = "\
application_id          namespace  queue     driver_pod_name  executor_count  cpu_seconds  memory_mb_seconds  start_time            end_time              status
spark-long-application  batch      root.etl  -                            12      12345.7             2048.3  2026-12-03T10:00:00Z  2026-12-03T11:00:00Z  completed
s                       batch      root.etl  d                             3          5.0             2048.3  2026-12-03T10:00:00Z  2026-12-03T11:00:00Z  running
";
        assert_eq!(render_usage(&rows), want);
    }

    #[test]
    fn an_empty_report_says_so() {
        assert_eq!(render_usage(&[]), "no usage records in this range\n");
        assert_eq!(render_csv(&[]), format!("{}\n", COLUMNS.join(",")));
    }

    #[test]
    fn csv_quotes_only_fields_that_need_it() {
        let rows = [
            billing_row("plain", 1.5, "completed"),
            UsageRow {
                namespace: "a,b".to_string(),
                queue: "say \"hi\"".to_string(),
                driver_pod_name: "two\nlines".to_string(),
                ..billing_row("x", 0.0, "killed")
            },
        ];
        let want = "\
application_id,namespace,queue,driver_pod_name,executor_count,cpu_seconds,memory_mb_seconds,start_time,end_time,status
plain,batch,root.etl,,12,1.500,2048.260,2026-12-03T10:00:00Z,2026-12-03T11:00:00Z,completed
x,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",12,0.000,2048.260,2026-12-03T10:00:00Z,2026-12-03T11:00:00Z,killed
";
        assert_eq!(render_csv(&rows), want);
    }
}

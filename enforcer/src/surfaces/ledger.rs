//! The usage ledger: one JSON line per [`UsageRecord`], appended and fsynced, in segments
//! rotated like the journal's (`<path>`, `<path>.1` newest … oldest). A collector tails it
//! (Fluent Bit, as the operators' log pipeline does); `enforcer usage` reads it with the
//! daemon down.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::{
    actuators::journal::{ends_torn, rotate, segment_paths, sync_dir},
    config::JournalConfig,
    model::usage::UsageRecord,
};

#[derive(Debug, Error)]
#[error(
    "{path}: usage ledger: {what}: {error}; make its directory writable by root, free space, or point daemon.usage_ledger at a writable file"
)]
pub struct LedgerError {
    pub path: PathBuf,
    pub what: &'static str,
    #[source]
    pub error: io::Error,
}

/// The ledger open for appending.
pub struct Ledger {
    config: JournalConfig,
    file: File,
    len: u64,
    torn: bool,
}

impl Ledger {
    pub fn open(config: &JournalConfig) -> Result<Ledger, LedgerError> {
        let path = config.path.clone();
        let err = |what| {
            let path = path.clone();
            move |error| LedgerError { path, what, error }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err("cannot create its directory"))?;
        }
        let mut file = open_live(&path).map_err(err("cannot open it for appending"))?;
        let len = file.metadata().map_err(err("cannot read it"))?.len();
        let torn = ends_torn(&mut file, len).map_err(err("cannot read it"))?;
        Ok(Ledger {
            config: config.clone(),
            file,
            len,
            torn,
        })
    }

    pub fn path(&self) -> &Path {
        &self.config.path
    }

    /// Appends the records with one fsync, rotating first when the live segment would pass
    /// its size. A failed write is the caller's to say (the figures stay in memory and the
    /// next flush writes them again).
    pub fn append(&mut self, records: &[UsageRecord]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut lines = Vec::new();
        if self.torn {
            lines.push(b'\n');
        }
        for r in records {
            serde_json::to_writer(&mut lines, r).map_err(io::Error::other)?;
            lines.push(b'\n');
        }
        if self.len > 0 && self.len + lines.len() as u64 > self.config.segment_size {
            self.rotate()?;
        }
        if let Err(e) = self.file.write_all(&lines) {
            // Cut a half-written line off so that it cannot glue itself to the next.
            if self.file.set_len(self.len).is_err() {
                self.torn = true;
            }
            return Err(e);
        }
        self.torn = false;
        self.len += lines.len() as u64;
        self.file.sync_data()
    }

    fn rotate(&mut self) -> io::Result<()> {
        let live = &self.config.path;
        rotate(live, self.config.segments)?;
        let mut file = open_live(live)?;
        sync_dir(live)?;
        let len = file.metadata()?.len();
        self.torn = ends_torn(&mut file, len)?;
        self.len = len;
        self.file = file;
        Ok(())
    }
}

fn open_live(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
}

/// The records of one segment (none when it does not exist), skipping lines that are not
/// records.
pub fn read_segment(path: &Path) -> io::Result<Vec<UsageRecord>> {
    match File::open(path) {
        Ok(f) => Ok(BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Every record of the ledger, oldest segment first; a line that is not a record (a torn
/// last line after a crash) is skipped and counted.
pub fn read(live: &Path) -> io::Result<(Vec<UsageRecord>, usize)> {
    let mut records = Vec::new();
    let mut bad = 0;
    for path in segment_paths(live)? {
        let file = match File::open(&path) {
            Ok(f) => f,
            // Rotated away between the listing and the open.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<UsageRecord>(&line) {
                Ok(r) => records.push(r),
                Err(_) => bad += 1,
            }
        }
    }
    Ok((records, bad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::usage::UsageStatus;

    fn record(id: &str, status: UsageStatus) -> UsageRecord {
        UsageRecord {
            id: id.into(),
            node: "n1".into(),
            status,
            application_id: "spark-1".into(),
            namespace: "spark".into(),
            pod_name: id.into(),
            spark_role: "executor".into(),
            queue: "root.P1".into(),
            priority: None,
            cgroup: format!("kubepods/besteffort/pod{id}"),
            cpu_seconds: 1.5,
            memory_mb_seconds: 10.0,
            memory_peak_bytes: 1,
            net_rx_bytes: 2,
            net_tx_bytes: 3,
            start_time: "2026-12-03T10:00:00Z".into(),
            end_time: "2026-12-03T10:01:00Z".into(),
            killed_seq: None,
            oom_kills: 0,
            last_known: false,
        }
    }

    #[test]
    fn records_survive_rotation_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let config = JournalConfig {
            path: dir.path().join("usage.jsonl"),
            segment_size: 4096,
            segments: 3,
        };
        let mut ledger = Ledger::open(&config).unwrap();
        let batch: Vec<_> = (0..10)
            .map(|i| record(&format!("u{i}"), UsageStatus::Running))
            .collect();
        ledger.append(&batch).unwrap();
        ledger.append(&batch).unwrap();
        drop(ledger);
        // A crash in the middle of a line.
        let mut f = OpenOptions::new().append(true).open(&config.path).unwrap();
        f.write_all(b"{\"id\":\"torn").unwrap();
        drop(f);
        let mut ledger = Ledger::open(&config).unwrap();
        ledger
            .append(&[record("u0", UsageStatus::Completed)])
            .unwrap();
        let (records, bad) = read(&config.path).unwrap();
        assert_eq!(bad, 1, "the torn line");
        assert!(config.path.with_extension("jsonl.1").exists(), "rotated");
        assert_eq!(records.len(), 21);
        assert_eq!(records.last().unwrap().status, UsageStatus::Completed);
    }

    #[test]
    fn an_unwritable_ledger_is_said_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let config = JournalConfig::from(blocker.join("usage.jsonl").as_path());
        let e = Ledger::open(&config).err().unwrap().to_string();
        assert!(
            e.contains("usage.jsonl: usage ledger: cannot create its directory"),
            "{e}"
        );
        assert!(e.contains("daemon.usage_ledger"), "{e}");
    }
}

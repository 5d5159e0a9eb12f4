//! The action journal: one JSON object per line, appended and fsynced before an action is
//! applied (its intent, with the reason), and again with the outcome. Nothing is ever
//! rewritten, so a daemon killed mid-action leaves an intent without an outcome: exactly
//! what an operator needs to see.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What happened to an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Written before the action is applied.
    Intent,
    Applied,
    /// `--dry-run`: decided, journaled, not applied.
    DryRun,
    /// The choke point refused it (target not offline, or unknown).
    Refused,
    Failed,
}

impl Outcome {
    /// Its one spelling, equal to its serde name (a unit test holds them together).
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Intent => "intent",
            Outcome::Applied => "applied",
            Outcome::DryRun => "dry_run",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Seconds since the Unix epoch.
    pub at: f64,
    /// Ties an outcome to its intent.
    pub seq: u64,
    pub stage: String,
    pub action: String,
    /// The cgroup acted on, relative to its hierarchy root; absent for node-wide actions.
    pub target: Option<String>,
    pub class: Option<String>,
    pub priority: Option<String>,
    /// Why: the trigger and its measured value.
    pub reason: serde_json::Value,
    pub outcome: Outcome,
    /// Detail of a failure or a refusal.
    pub detail: Option<String>,
}

pub struct Journal {
    path: PathBuf,
    file: File,
    next_seq: u64,
    /// Entries that could not be written (full or read-only file system), counted for the
    /// metrics and the alert.
    write_failures: u64,
}

impl Journal {
    /// Opens (creating) the journal for appending; sequence numbers continue after the
    /// last entry, so a restarted daemon never reuses one.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let last_seq = read(path)
            .map_err(io)?
            .iter()
            .map(|e| e.seq)
            .max()
            .unwrap_or(0);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            next_seq: last_seq + 1,
            write_failures: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries that could not be written since the daemon started.
    pub fn write_failures(&self) -> u64 {
        self.write_failures
    }

    pub fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Appends one entry and fsyncs before returning.
    pub fn append(&mut self, entry: &Entry) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(entry).expect("entries serialise");
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// Every entry of a journal file; a torn last line (the daemon died mid-write) is skipped.
pub fn read(path: &Path) -> std::io::Result<Vec<Entry>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_are_their_serde_names() {
        for o in [
            Outcome::Intent,
            Outcome::Applied,
            Outcome::DryRun,
            Outcome::Refused,
            Outcome::Failed,
        ] {
            assert_eq!(
                serde_json::to_value(&o).unwrap(),
                serde_json::Value::String(o.name().into())
            );
        }
    }

    fn entry(seq: u64, outcome: Outcome) -> Entry {
        Entry {
            at: 1.0,
            seq,
            stage: "throttle".into(),
            action: "freeze".into(),
            target: Some("yarn/container_1".into()),
            class: Some("offline".into()),
            priority: Some("P3".into()),
            reason: serde_json::json!({"trigger": "node_cpu", "value": 0.95}),
            outcome,
            detail: None,
        }
    }

    #[test]
    fn appends_survive_reopen_and_sequence_numbers_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/journal.jsonl");
        let mut j = Journal::open(&path).unwrap();
        let seq = j.next_seq();
        j.append(&entry(seq, Outcome::Intent)).unwrap();
        j.append(&entry(seq, Outcome::Applied)).unwrap();
        drop(j);
        // A torn line from a crash mid-write is skipped, not fatal.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"at\": 2.0, \"seq\"")
            .unwrap();
        let mut j = Journal::open(&path).unwrap();
        assert_eq!(j.next_seq(), 2);
        let entries = read(&path).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].outcome, Outcome::Applied);
    }
}

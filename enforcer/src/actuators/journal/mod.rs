//! The action journal: one JSON object per line, appended and fsynced before an action is
//! applied (its intent, with the reason), and again with the outcome. Nothing is ever
//! rewritten, so a daemon killed mid-action leaves an intent without an outcome: exactly
//! what an operator needs to see.
//!
//! The journal is a set of size-capped segments (`segments.rs`): `journal.jsonl` is the
//! live one; before it would pass `daemon.journal_segment_size` it becomes
//! `journal.jsonl.1`, the older ones shift by one and the one beyond
//! `daemon.journal_segments` is deleted, whole. An intent and its outcome are never
//! parted by a rotation. Start-up reads only the live segment's tail for the next
//! sequence number; [`read`] and [`entries`] (`read.rs`) read every segment, oldest first.
//!
//! Protection wins over the record. Once the journal is open, a write or an fsync that
//! fails (full, read-only or failing file system) does not fail [`Journal::append`]: the
//! entry goes to stderr as one line, `enforcer: journal unavailable (<path>: <error>):
//! <json>` (the container log or the systemd journal keeps it), it is counted
//! ([`Journal::write_failures`], the metric `enforcer_journal_write_failures_total`), and
//! the action goes on. The record exists to explain protection; a node whose disk filled
//! up must still be protected. Opening the journal at start-up still fails.

mod read;
mod segments;

use std::{
    collections::BTreeSet,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use read::{Entries, entries, read};
pub use segments::segment_paths;
/// The segment rotation, shared with the usage ledger (rotated the same way).
pub(crate) use segments::{ends_torn, numbered as numbered_path, rotate, sync_dir};

use crate::config::JournalConfig;

#[derive(Debug, Error)]
pub enum JournalError {
    /// Opening at start-up: the directory, the live segment, or its tail. (The I/O error
    /// is in the message, not a source, so that a chain printed whole says it once.)
    #[error("journal {path}: {what}: {error}; {hint}")]
    Io {
        path: PathBuf,
        what: &'static str,
        error: std::io::Error,
        hint: &'static str,
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
    /// The target's pod (`namespace/name`) and uid, when the runtime knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The classification rule the choke point matched the target with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

pub struct Journal {
    config: JournalConfig,
    /// The live segment, opened for appending.
    file: File,
    /// Its length as written so far.
    len: u64,
    /// The live segment may end in a partial line (a torn write that could not be cut
    /// off): the next write starts with a newline so that it is not glued to it.
    torn: bool,
    next_seq: u64,
    /// Intents written without their outcome yet: no rotation until they are concluded,
    /// so an intent and its outcome (under the same number) are in the same segment.
    open_intents: BTreeSet<u64>,
    /// Entries that could not be written (full or read-only file system), counted for the
    /// metrics and the alert.
    write_failures: u64,
    /// Since the last write failed: the entries gone to stderr only in this outage.
    unavailable: Option<u64>,
    /// A rotation failed (said once until one succeeds).
    rotation_failing: bool,
}

/// Intents remembered as open; older ones were abandoned (a daemon that concludes every
/// action has one or two open at a time).
const MAX_OPEN_INTENTS: usize = 64;

/// The message of a failed open: one line naming the file, the step and what to do.
const OPEN_HINT: &str = "the journal must be writable before enforcer acts: make its directory writable by root, free space, or point daemon.journal at a writable file";

impl Journal {
    /// Opens (creating) the journal for appending; sequence numbers continue after the
    /// last entry (read from the tail of the live segment, else of the newest older one),
    /// so a restarted daemon never reuses one. A `&Path` gets the default rotation.
    pub fn open(at: impl Into<JournalConfig>) -> Result<Journal, JournalError> {
        let config: JournalConfig = at.into();
        let path = config.path.clone();
        let io = |what| {
            let path = path.clone();
            move |error| JournalError::Io {
                path,
                what,
                error,
                hint: OPEN_HINT,
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io("cannot create its directory"))?;
        }
        let last_seq = segments::last_seq(&path, segments::TAIL_WINDOW)
            .map_err(io("cannot read its last entries"))?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io("cannot open it for appending"))?;
        let len = file
            .metadata()
            .map_err(io("cannot open it for appending"))?
            .len();
        let torn =
            segments::ends_torn(&mut file, len).map_err(io("cannot read its last entries"))?;
        let mut journal = Journal {
            config,
            file,
            len,
            torn,
            next_seq: last_seq.map_or(1, |s| s + 1),
            open_intents: BTreeSet::new(),
            write_failures: 0,
            unavailable: None,
            rotation_failing: false,
        };
        if journal.torn {
            // Ends the torn line now; if the disk is full, the next write tries again.
            let _ = journal.write_line(&[]);
        }
        Ok(journal)
    }

    /// The live segment.
    pub fn path(&self) -> &Path {
        &self.config.path
    }

    /// Entries that could not be written since the daemon started.
    pub fn write_failures(&self) -> u64 {
        self.write_failures
    }

    /// The sequence number handed out last (`None` before the first).
    pub fn last_seq(&self) -> Option<u64> {
        (self.next_seq > 1).then(|| self.next_seq - 1)
    }

    pub fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Appends one entry and fsyncs before returning, rotating first if the live segment
    /// would pass its size (never between an intent and its outcome). Never fails on I/O:
    /// an entry that cannot be written goes to stderr, is counted, and the caller acts on
    /// (see the module's documentation). The `Result` is kept for the callers' `?`.
    pub fn append(&mut self, entry: &Entry) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(entry).expect("entries serialise");
        line.push(b'\n');
        // An outcome goes into the segment of its intent.
        let concludes = entry.outcome != Outcome::Intent && self.open_intents.remove(&entry.seq);
        if !concludes {
            self.rotate_if_due(line.len() as u64);
        }
        if entry.outcome == Outcome::Intent {
            self.open_intents.insert(entry.seq);
            if self.open_intents.len() > MAX_OPEN_INTENTS {
                self.open_intents.pop_first();
            }
        }
        match self.write_line(&line) {
            Ok(()) => {
                if let Some(lost) = self.unavailable.take() {
                    tracing::warn!(
                        journal = %self.config.display(),
                        entries_on_stderr_only = lost,
                        "journal writable again"
                    );
                }
            }
            Err(e) => {
                self.write_failures += 1;
                let lost = self.unavailable.get_or_insert(0);
                if *lost == 0 {
                    tracing::error!(
                        journal = %self.config.display(),
                        error = %e,
                        "journal unavailable: each entry goes to stderr instead, one line \
                         prefixed \"enforcer: journal unavailable\"; protection goes on"
                    );
                }
                *lost += 1;
                let mut copy = format!(
                    "enforcer: journal unavailable ({}: {e}): ",
                    self.config.display()
                )
                .into_bytes();
                copy.extend_from_slice(&line);
                let _ = io::stderr().lock().write_all(&copy);
            }
        }
        Ok(())
    }

    /// Rotates before a line of `incoming` bytes if the live segment would pass its size.
    /// An intent still open holds the rotation back, by at most a quarter of the size: an
    /// intent and its outcome are lines apart, so one that is still open then was never
    /// concluded (or concluded under another number) and holds nothing back any more.
    fn rotate_if_due(&mut self, incoming: u64) {
        let cap = self.config.segment_size;
        let after = self.len + incoming;
        let due = self.len > 0 && after > cap;
        if !due || (!self.open_intents.is_empty() && after <= cap.saturating_add(cap / 4)) {
            return;
        }
        match self.rotate() {
            Ok(()) => {
                self.open_intents.clear();
                if std::mem::take(&mut self.rotation_failing) {
                    tracing::warn!(journal = %self.config.display(), "journal rotates again");
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut self.rotation_failing, true) {
                    tracing::error!(
                        journal = %self.config.display(),
                        error = %e,
                        "journal rotation failed: the live segment grows past daemon.journal_segment_size until one succeeds"
                    );
                }
            }
        }
    }

    /// Shifts the segments and opens a new live one. On an error the old file stays the
    /// one written (it is the newest whatever its name now is); when a failed rotation
    /// has already moved it away from the live name, the retry only creates the new one.
    fn rotate(&mut self) -> io::Result<()> {
        let live = &self.config.path;
        let ours = self.file.metadata()?;
        let still_live =
            std::fs::metadata(live).is_ok_and(|m| (m.dev(), m.ino()) == (ours.dev(), ours.ino()));
        if still_live {
            segments::rotate(live, self.config.segments)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(live)?;
        segments::sync_dir(live)?;
        let len = file.metadata()?.len();
        self.torn = segments::ends_torn(&mut file, len)?;
        self.len = len;
        self.file = file;
        Ok(())
    }

    /// Writes `line` (ending a torn line first) and fsyncs. A write that fails halfway is
    /// cut off again, so that it cannot glue itself to the next entry.
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.torn {
            self.file.write_all(b"\n")?;
            self.len += 1;
            self.torn = false;
        }
        if let Err(e) = self.file.write_all(line) {
            if self.file.set_len(self.len).is_err() {
                self.len = self.file.metadata().map_or(self.len, |m| m.len());
                self.torn = true;
            }
            return Err(e);
        }
        self.len += line.len() as u64;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests;

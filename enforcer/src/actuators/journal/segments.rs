//! The journal's files: the live segment `<path>` and the older ones `<path>.1` (newest)
//! … `<path>.<n>` (oldest), how they are rotated, and the tail read that finds the last
//! sequence number without reading the history.
//!
//! Rotation is a chain of renames, oldest first, each followed by an fsync of the
//! directory: at every instant the files on disk are a set of whole segments whose
//! numbers still order them (a crash may leave a gap in the numbers, never a lost or
//! misordered segment). Only a segment shifted past the count kept is deleted, whole.

use std::{
    ffi::OsString,
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use serde::Deserialize;

/// How much of a segment's end the start-up reads for the last sequence number; it grows
/// (×4) only when that much holds no complete entry.
pub(super) const TAIL_WINDOW: u64 = 64 * 1024;

/// The directory holding the journal's segments.
fn dir_of(live: &Path) -> &Path {
    match live.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `<live>.<n>`.
pub(crate) fn numbered(live: &Path, n: u32) -> PathBuf {
    let mut name = OsString::from(live.as_os_str());
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The numbers of the older segments present, ascending (newest first). A missing
/// directory has none.
fn older(live: &Path) -> io::Result<Vec<u32>> {
    let Some(name) = live.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let entries = match std::fs::read_dir(dir_of(live)) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut numbers = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(n) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|suffix| {
                suffix
                    .parse::<u32>()
                    .ok()
                    .filter(|n| n.to_string() == suffix)
            })
        else {
            continue;
        };
        if n >= 1 {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Every segment present, oldest first, the live one last (if it exists).
pub fn segment_paths(live: &Path) -> io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = older(live)?
        .into_iter()
        .rev()
        .map(|n| numbered(live, n))
        .collect();
    if live.exists() {
        paths.push(live.to_path_buf());
    }
    Ok(paths)
}

/// Makes the directory's entries (renames, creations, deletions) durable.
pub(crate) fn sync_dir(live: &Path) -> io::Result<()> {
    File::open(dir_of(live))?.sync_all()
}

/// Makes room for the live segment as `<live>.1` and moves it there: segments numbered
/// past the count kept (`keep`, the live one included) are deleted; the run `<live>.1` …
/// `<live>.<m>` shifts by one, oldest first (the one that would pass the count is
/// deleted); then `<live>` → `<live>.1`. The directory is fsynced after each step; the
/// caller creates the new live segment. Only the run starting at `.1` shifts, so a
/// rotation retried after a failure (or after a crash) shifts nothing twice.
pub(crate) fn rotate(live: &Path, keep: usize) -> io::Result<()> {
    let present = older(live)?;
    for &n in present.iter().rev().filter(|&&n| n as usize >= keep) {
        std::fs::remove_file(numbered(live, n))?;
        sync_dir(live)?;
    }
    let run = present
        .iter()
        .zip(1..)
        .take_while(|&(&n, expected)| n == expected)
        .count() as u32;
    for n in (1..=run).rev().filter(|&n| (n as usize) < keep) {
        let from = numbered(live, n);
        if n as usize + 1 >= keep {
            std::fs::remove_file(&from)?;
        } else {
            std::fs::rename(&from, numbered(live, n + 1))?;
        }
        sync_dir(live)?;
    }
    match std::fs::rename(live, numbered(live, 1)) {
        Ok(()) => sync_dir(live),
        // A crash after the last rotation's rename, before the new live segment existed.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Only the field the tail read needs.
#[derive(Deserialize)]
struct Seq {
    seq: u64,
}

/// The highest sequence number among the complete entries at the end of `path`: reads the
/// last `window` bytes (skipping the first, partial line and a torn last one), more only
/// if they hold no entry. `None`: no entry (or no file).
pub(super) fn last_seq_in(path: &Path, window: u64) -> io::Result<Option<u64>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut window = window.max(1);
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::with_capacity((len - start) as usize);
        (&mut file).take(len - start).read_to_end(&mut tail)?;
        let mut lines = tail.split(|&b| b == b'\n');
        if start > 0 {
            // Starts mid-line.
            lines.next();
        }
        let last = lines
            .filter_map(|l| serde_json::from_slice::<Seq>(l).ok())
            .map(|s| s.seq)
            .max();
        if last.is_some() || start == 0 {
            return Ok(last);
        }
        window = window.saturating_mul(4);
    }
}

/// The last sequence number of the journal: from the tail of the live segment, else of
/// the newest older segment that has an entry.
pub(super) fn last_seq(live: &Path, window: u64) -> io::Result<Option<u64>> {
    if let Some(seq) = last_seq_in(live, window)? {
        return Ok(Some(seq));
    }
    for n in older(live)? {
        if let Some(seq) = last_seq_in(&numbered(live, n), window)? {
            return Ok(Some(seq));
        }
    }
    Ok(None)
}

/// Whether `file` (of `len` bytes) ends in the middle of a line.
pub(crate) fn ends_torn(file: &mut File, len: u64) -> io::Result<bool> {
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

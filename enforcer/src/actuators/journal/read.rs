//! Reading the journal back across its segments, oldest first: all at once ([`read`]) or
//! one entry at a time ([`entries`]), which keeps memory flat over a long history.

use std::{
    fs::File,
    io::{self, BufRead, BufReader},
    os::unix::fs::MetadataExt,
    path::Path,
};

use super::{Entry, segments};

/// Every entry of every segment of the journal whose live segment is `path`, oldest
/// first. A torn line (a daemon killed mid-write, a full disk) is skipped; no journal at
/// all is no entry.
pub fn read(path: &Path) -> io::Result<Vec<Entry>> {
    entries(path)?.collect()
}

/// The entries of every segment, oldest first, read as they are asked for. Every segment
/// is opened at once, so a rotation while reading neither hides nor repeats one.
pub fn entries(path: &Path) -> io::Result<Entries> {
    // Newest first: a rotation between two opens shifts the older names onto files
    // already open (recognised by their inode and skipped), never past one not yet opened.
    let mut seen = Vec::new();
    let mut files = Vec::new();
    for p in segments::segment_paths(path)?.into_iter().rev() {
        let file = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let id = (meta.dev(), meta.ino());
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        files.push(file);
    }
    Ok(Entries {
        files,
        current: None,
        line: Vec::new(),
    })
}

/// See [`entries`].
pub struct Entries {
    /// The segments not started yet, newest first (popped from the end: oldest first).
    files: Vec<File>,
    current: Option<BufReader<File>>,
    line: Vec<u8>,
}

impl Iterator for Entries {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<io::Result<Entry>> {
        loop {
            let reader = match &mut self.current {
                Some(r) => r,
                None => self.current.insert(BufReader::new(self.files.pop()?)),
            };
            self.line.clear();
            match reader.read_until(b'\n', &mut self.line) {
                Ok(0) => self.current = None,
                Ok(_) => {
                    if let Ok(entry) = serde_json::from_slice(&self.line) {
                        return Some(Ok(entry));
                    }
                }
                Err(e) => {
                    self.current = None;
                    self.files.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}

//! A node in memory for unit tests: files set by the test, directories implied by them.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    sync::Mutex,
};

use super::Host;

#[derive(Debug, Default)]
pub struct FakeHost {
    files: Mutex<BTreeMap<PathBuf, String>>,
}

impl FakeHost {
    /// A node with these files (path, contents).
    pub fn with(files: &[(&str, &str)]) -> FakeHost {
        let host = FakeHost::default();
        for (path, text) in files {
            host.set(path, text);
        }
        host
    }

    pub fn set(&self, path: impl AsRef<Path>, text: &str) {
        self.files
            .lock()
            .unwrap()
            .insert(path.as_ref().to_path_buf(), text.to_string());
    }

    pub fn remove(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        self.files
            .lock()
            .unwrap()
            .retain(|p, _| !p.starts_with(path));
    }
}

impl Host for FakeHost {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.files
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let files = self.files.lock().unwrap();
        let mut dirs: Vec<PathBuf> = files
            .keys()
            .filter_map(|p| {
                let rest = p.strip_prefix(path).ok()?;
                let mut parts = rest.components();
                let first = parts.next()?;
                // A file directly in `path` is not a directory.
                parts.next()?;
                Some(path.join(first))
            })
            .collect();
        dirs.dedup();
        Ok(dirs)
    }

    fn exists(&self, path: &Path) -> bool {
        self.files
            .lock()
            .unwrap()
            .keys()
            .any(|p| p.starts_with(path))
    }
}

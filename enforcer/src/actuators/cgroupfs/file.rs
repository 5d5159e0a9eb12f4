//! One write or read of a cgroupfs file, with the failure explained.

use std::{
    io::{self, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use super::error::{CgroupfsError, Facts, explain};
use crate::model::controllers::{self, Controller};

/// The file a write goes to, and what is needed to explain its failure.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target<'a> {
    pub dir: &'a Path,
    pub file: &'static str,
    /// The cgroup2 controller the file belongs to, and the cgroup's path relative to the
    /// cgroup2 root; None for v1 files and cgroup2 core files.
    pub v2: Option<(Controller, &'a str)>,
}

impl Target<'_> {
    fn path(&self) -> PathBuf {
        self.dir.join(self.file)
    }

    /// Looks at the node (only after a failure).
    fn facts(&self) -> Facts {
        let path = self.path();
        let not_delegated = self.v2.and_then(|(controller, rel)| {
            let depth = rel.split('/').filter(|p| !p.is_empty()).count();
            let root = self.dir.ancestors().nth(depth)?;
            controllers::delegation(root, rel, controller).err()
        });
        Facts {
            cgroup_exists: self.dir.is_dir(),
            file_read_only: std::fs::metadata(&path)
                .is_ok_and(|m| m.permissions().mode() & 0o222 == 0),
            not_delegated,
        }
    }
}
/// Writes `value` in one write(2), never creating the file (cgroupfs cannot: a missing
/// controller file is a fact to explain, not to create). `O_TRUNC` is a no-op on cgroupfs
/// and keeps a plain file of the unit tests exact.
pub(super) fn write_to(target: Target, value: &str) -> Result<(), CgroupfsError> {
    let path = target.path();
    let result = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    result.map_err(|err| explain(err, path, value, target.facts()))
}

pub(super) fn write(dir: &Path, file: &'static str, value: &str) -> Result<(), CgroupfsError> {
    write_to(
        Target {
            dir,
            file,
            v2: None,
        },
        value,
    )
}

pub(super) fn read(path: PathBuf) -> Result<String, CgroupfsError> {
    std::fs::read_to_string(&path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound if !path.parent().is_some_and(Path::is_dir) => {
            CgroupfsError::CgroupRemoved { path }
        }
        _ => CgroupfsError::Io { path, source },
    })
}

//! cgroup2 delegation: a controller's files exist in a cgroup only when every ancestor, root
//! included, lists the controller in its `cgroup.subtree_control`.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::kind::Controller;
use crate::host::{Host, RealHost};

/// A controller that an ancestor of a cgroup does not delegate down to it on cgroup2.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{controller} controller not enabled in {}", .cgroup.join("cgroup.subtree_control").display())]
pub struct NotDelegated {
    pub controller: Controller,
    /// The ancestor whose `cgroup.subtree_control` lacks it (a full path).
    pub cgroup: PathBuf,
}

/// Whether every ancestor of `root/rel` on cgroup2, `root` included, lists `controller` in
/// its `cgroup.subtree_control`, so that the controller's files exist in `root/rel`.
/// Reads the real files; see [`delegation_with`].
pub fn delegation(root: &Path, rel: &str, controller: Controller) -> Result<(), NotDelegated> {
    delegation_with(&RealHost, root, rel, controller)
}

/// [`delegation`] through `files`. `Ok` when no ancestor was found lacking it: the freezer
/// (core on cgroup2), the root itself (`rel` empty: it has no controller files) and an
/// ancestor whose `subtree_control` cannot be read (gone: not evidence) all pass.
pub fn delegation_with(
    files: &dyn Host,
    root: &Path,
    rel: &str,
    controller: Controller,
) -> Result<(), NotDelegated> {
    if !controller.delegated_on_v2() {
        return Ok(());
    }
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let mut ancestor = root.to_path_buf();
    // Every ancestor of the cgroup, not the cgroup itself: the last part is left out.
    for part in std::iter::once("")
        .chain(parts.iter().copied())
        .take(parts.len())
    {
        if !part.is_empty() {
            ancestor.push(part);
        }
        let Ok(text) = files.read(&ancestor.join("cgroup.subtree_control")) else {
            return Ok(());
        };
        if !text.split_whitespace().any(|c| c == controller.name()) {
            return Err(NotDelegated {
                controller,
                cgroup: ancestor,
            });
        }
    }
    Ok(())
}

//! What the surfaces show of the node's file systems (reported, never enforced).

use serde::{Deserialize, Serialize};

/// One file system, under the first configured path on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilesystemUsage {
    /// The path as the node names it.
    pub mountpoint: String,
    pub size_bytes: u64,
    /// Free for unprivileged users (`df`'s Avail).
    pub avail_bytes: u64,
    /// Used over used + available, as `df` computes Use%.
    pub used_ratio: f64,
    /// Since the figures were read (they are read every `filesystems.interval`; a hung
    /// mount's figures only age).
    pub age_seconds: f64,
}

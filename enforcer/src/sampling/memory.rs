//! Memory use read from cgroupfs (v1 and v2), with page cache and shmem/tmpfs broken out:
//! tmpfs files are charged to the cgroup that wrote them and are not freed by killing its
//! processes, which is how offline work once pushed a node into direct reclaim.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryUsage {
    /// Everything charged to the cgroup (hierarchical).
    pub usage_bytes: u64,
    /// Anonymous memory.
    pub rss_bytes: u64,
    /// Page cache, shmem included.
    pub cache_bytes: u64,
    /// shmem and tmpfs.
    pub shmem_bytes: u64,
}

impl std::ops::AddAssign for MemoryUsage {
    fn add_assign(&mut self, o: MemoryUsage) {
        self.usage_bytes += o.usage_bytes;
        self.rss_bytes += o.rss_bytes;
        self.cache_bytes += o.cache_bytes;
        self.shmem_bytes += o.shmem_bytes;
    }
}

fn stat_field(stat: &str, name: &str) -> u64 {
    crate::host::keyed(stat, name).unwrap_or(0)
}

/// Hierarchical memory use of one memory cgroup directory; `None` when it has no memory
/// controller files.
pub fn read(dir: &Path, v2: bool) -> Option<MemoryUsage> {
    // v1's total_* fields are hierarchical (the plain ones are the cgroup's own); cgroup2's
    // memory.stat is hierarchical throughout.
    let (usage_file, [rss, cache, shmem]) = if v2 {
        ("memory.current", ["anon", "file", "shmem"])
    } else {
        (
            "memory.usage_in_bytes",
            ["total_rss", "total_cache", "total_shmem"],
        )
    };
    let usage = std::fs::read_to_string(dir.join(usage_file))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
    Some(MemoryUsage {
        usage_bytes: usage,
        rss_bytes: stat_field(&stat, rss),
        cache_bytes: stat_field(&stat, cache),
        shmem_bytes: stat_field(&stat, shmem),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1_and_v2_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.usage_in_bytes"), "1000\n").unwrap();
        std::fs::write(
            dir.path().join("memory.stat"),
            "cache 5\nrss 6\nshmem 7\ntotal_cache 500\ntotal_rss 400\ntotal_shmem 100\n",
        )
        .unwrap();
        assert_eq!(
            read(dir.path(), false),
            Some(MemoryUsage {
                usage_bytes: 1000,
                rss_bytes: 400,
                cache_bytes: 500,
                shmem_bytes: 100
            })
        );
        std::fs::write(dir.path().join("memory.current"), "2000\n").unwrap();
        std::fs::write(
            dir.path().join("memory.stat"),
            "anon 900\nfile 1000\nshmem 300\nfile_mapped 3\n",
        )
        .unwrap();
        assert_eq!(
            read(dir.path(), true),
            Some(MemoryUsage {
                usage_bytes: 2000,
                rss_bytes: 900,
                cache_bytes: 1000,
                shmem_bytes: 300
            })
        );
        assert_eq!(read(Path::new("/nonexistent"), true), None);
    }
}

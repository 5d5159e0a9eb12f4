//! The node's cgroup root for a test's pods, as kubelet's `--cgroup-root` would be: one
//! relative path below the test's own memory cgroup, created in every hierarchy.

use std::path::PathBuf;

use crate::cgroup::TestCgroup;

/// Every cgroup hierarchy's mount point (v1 controllers, named ones, cgroup2).
fn hierarchies() -> Vec<PathBuf> {
    let mut mounts: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mount = left.split_whitespace().nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mount))
        })
        .collect();
    mounts.sort();
    mounts.dedup();
    mounts
}

/// The node's cgroup root for this test's pods, `<own memory cgroup>/<unique>` (memory
/// cgroups only below the test's own), created with the same relative path in every
/// hierarchy as kubelet's `--cgroup-root` would be; removed depth-first (pods' leftover
/// `kubepods/<qos>/pod<uid>` included) when the guards drop.
pub struct CgroupRoot {
    /// Relative to every hierarchy's mount point.
    pub rel: String,
    guards: Vec<TestCgroup>,
    created_parents: Vec<PathBuf>,
}

impl CgroupRoot {
    // Not `Default`: it creates cgroups in every hierarchy.
    #[allow(clippy::new_without_default)]
    pub fn new() -> CgroupRoot {
        let memory = crate::cgroup::mount_point("memory").expect("a memory hierarchy");
        let own = crate::cgroup::own_cgroup_dir("memory");
        let own_rel = own
            .strip_prefix(&memory)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let unique = crate::unique_name("enf-node");
        let mut guards = Vec::new();
        let mut created_parents = Vec::new();
        for mount in hierarchies() {
            let parent = mount.join(&own_rel);
            // The same relative path in the other hierarchies may not exist yet: remember
            // what was created, to remove it (if empty) afterwards.
            let mut p = parent.clone();
            let mut missing = Vec::new();
            while !p.exists() && p.starts_with(&mount) {
                missing.push(p.clone());
                p.pop();
            }
            created_parents.extend(missing);
            guards.push(TestCgroup::create_at(&parent, &unique));
        }
        CgroupRoot {
            rel: format!("{own_rel}/{unique}"),
            guards,
            created_parents,
        }
    }

    /// A cgroup `rel` below the root in the hierarchy mounted at `mount`.
    pub fn child(&self, controller: &str, rel: &str) -> TestCgroup {
        let mount = crate::cgroup::mount_point(controller)
            .unwrap_or_else(|| panic!("no {controller} hierarchy"));
        TestCgroup::create_at(&mount.join(&self.rel), rel)
    }
}

impl Drop for CgroupRoot {
    fn drop(&mut self) {
        self.guards.clear();
        for p in &self.created_parents {
            let _ = std::fs::remove_dir(p);
        }
    }
}

/// What kubelet does after a pod's sandbox is removed: its pod cgroup `rel` (relative to
/// the mount points) goes from every hierarchy, deepest first. Bounded: a cgroup that still
/// has tasks after 10 s is left (and said) for the root's guard.
pub fn remove_pod_cgroup(rel: &str) {
    fn remove(dir: &std::path::Path, deadline: std::time::Instant) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&e.path(), deadline);
                }
            }
        }
        while dir.exists() && std::fs::remove_dir(dir).is_err() {
            if std::time::Instant::now() > deadline {
                eprintln!("warning: could not remove {}", dir.display());
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for mount in hierarchies() {
        remove(&mount.join(rel.trim_start_matches('/')), deadline);
    }
}

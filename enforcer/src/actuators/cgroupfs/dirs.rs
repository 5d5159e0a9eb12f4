//! Where one cgroup lives in each hierarchy of the host.

use std::path::{Path, PathBuf};

use crate::model::layout::CgroupLayout;

/// One cgroup (a relative path) in every hierarchy that can act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDirs {
    pub rel: String,
    /// v1 `cpu` hierarchy, or cgroup2 when it has the cpu controller.
    pub cpu: Option<PathBuf>,
    pub cpu_is_v2: bool,
    pub memory: Option<PathBuf>,
    pub memory_is_v2: bool,
    /// v1 freezer.
    pub freezer: Option<PathBuf>,
    /// cgroup2 (controllers or not: `cgroup.freeze` and `cgroup.kill` are core files).
    pub unified: Option<PathBuf>,
}

impl CgroupDirs {
    /// Resolves `rel` in each hierarchy of `layout`; a hierarchy where the directory does
    /// not exist is left out.
    pub fn resolve(layout: &CgroupLayout, rel: &str) -> CgroupDirs {
        let rel = rel.trim_start_matches('/');
        let existing = |root: Option<&Path>| root.map(|r| r.join(rel)).filter(|p| p.is_dir());
        let unified = existing(layout.unified_mount());
        let v2_has = |c: &str| layout.unified_controllers.iter().any(|x| x == c);
        let (cpu, cpu_is_v2) = if v2_has("cpu") {
            (unified.clone(), true)
        } else {
            (existing(layout.v1_mount("cpu")), false)
        };
        let (memory, memory_is_v2) = if v2_has("memory") {
            (unified.clone(), true)
        } else {
            (existing(layout.v1_mount("memory")), false)
        };
        CgroupDirs {
            rel: rel.to_string(),
            cpu,
            cpu_is_v2,
            memory,
            memory_is_v2,
            freezer: existing(layout.v1_mount("freezer")),
            unified,
        }
    }
}

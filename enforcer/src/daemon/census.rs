//! What the controllers know of the offline side in one tick: the offline parents, units and
//! cgroups from the live index (captured under the state lock), then their processes and
//! memory read from the node through [`Host`] (without the lock).

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use crate::{
    host::{self, Host},
    model::{
        Class, Priority,
        index::{CgroupEntry, CgroupIndex},
        layout::CgroupLayout,
    },
    policy::{ladder::OfflineUnit, usage::UsageTracker},
};

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// The top cgroups of a class: those whose parent is of another class. For offline these
/// are the parents the limits go on (the BestEffort slice, `yarn`); summing a class's
/// hierarchical memory over them counts nothing twice.
pub fn class_roots(index: &CgroupIndex, class: Class) -> Vec<&CgroupEntry> {
    let members: HashSet<&str> = index
        .iter()
        .filter(|e| e.class == class)
        .map(|e| &*e.path)
        .collect();
    let mut roots: Vec<&CgroupEntry> = index
        .iter()
        .filter(|e| e.class == class && !e.path.is_empty() && !members.contains(parent(&e.path)))
        .collect();
    roots.sort_by(|a, b| a.path.cmp(&b.path));
    roots
}

/// Offline parents: the cgroups the offline limits go on.
pub fn offline_roots(index: &CgroupIndex) -> Vec<&CgroupEntry> {
    class_roots(index, Class::Offline)
}

/// Offline units, the things evicted one at a time: children of an offline parent (a pod,
/// a Yarn container), or an offline parent with no offline children.
pub fn offline_units(index: &CgroupIndex) -> Vec<&CgroupEntry> {
    let roots: HashSet<&str> = offline_roots(index).iter().map(|e| &*e.path).collect();
    let has_offline_child: HashSet<&str> = index
        .iter()
        .filter(|e| e.class == Class::Offline)
        .map(|e| parent(&e.path))
        .collect();
    index
        .iter()
        .filter(|e| e.class == Class::Offline)
        .filter(|e| {
            roots.contains(parent(&e.path))
                || (roots.contains(&*e.path) && !has_offline_child.contains(&*e.path))
        })
        .collect()
}

/// The offline side as the index sees it (relative paths).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OfflineView {
    pub parents: Vec<String>,
    /// Units with their CPU use over the window (memory is read later, from the node).
    pub units: Vec<(OfflineUnit, String)>,
    /// Every offline cgroup.
    pub cgroups: Vec<String>,
}

impl OfflineView {
    pub fn capture(index: &CgroupIndex, usage: &UsageTracker) -> OfflineView {
        OfflineView {
            parents: offline_roots(index)
                .iter()
                .map(|e| e.path.to_string())
                .collect(),
            units: offline_units(index)
                .into_iter()
                .map(|e| {
                    let unit = OfflineUnit {
                        id: e.id,
                        priority: e.priority.unwrap_or(Priority::P3),
                        cpu_cores: usage.cgroup(e.id).map_or(0.0, |(_, cores)| cores),
                        memory_bytes: 0,
                    };
                    (unit, e.path.to_string())
                })
                .collect(),
            cgroups: index
                .iter()
                .filter(|e| e.class == Class::Offline && !e.path.is_empty())
                .map(|e| e.path.to_string())
                .collect(),
        }
    }
}

/// Where a cgroup's processes and memory figures are.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupRoots {
    /// The hierarchy the CPU index is of (its `cgroup.procs` list the processes).
    pub cpu: PathBuf,
    /// The memory hierarchy and whether it is cgroup2; `None` without a memory controller.
    pub memory: Option<(PathBuf, bool)>,
}

impl CgroupRoots {
    pub fn new(layout: &CgroupLayout, cpu_root: &Path) -> CgroupRoots {
        let memory = if layout.unified_controllers.iter().any(|c| c == "memory") {
            layout.unified_mount().map(|p| (p.to_path_buf(), true))
        } else {
            layout.v1_mount("memory").map(|p| (p.to_path_buf(), false))
        };
        CgroupRoots {
            cpu: cpu_root.to_path_buf(),
            memory,
        }
    }

    /// Hierarchical memory use of `rel`; `None` when it has no memory cgroup.
    pub fn memory_usage(&self, host: &dyn Host, rel: &str) -> Option<u64> {
        let (root, v2) = self.memory.as_ref()?;
        host::memory_usage(host, &root.join(rel), *v2)
    }
}

/// An offline parent and its memory use (`None`: no memory cgroup to limit).
#[derive(Debug, Clone, PartialEq)]
pub struct Parent {
    pub path: String,
    pub memory_bytes: Option<u64>,
}

/// The offline side read from the node.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Census {
    pub parents: Vec<Parent>,
    /// Units that still have processes, with their memory use; read only when the ladder is
    /// engaged (a node with thousands of pods pays nothing for it otherwise).
    pub units: Vec<(OfflineUnit, String)>,
    /// The processes of each offline cgroup, for isolation; read only when it is on.
    pub procs: Vec<(String, Vec<i32>)>,
}

/// Reads what `view` names from the node.
pub fn read(
    host: &dyn Host,
    roots: &CgroupRoots,
    view: &OfflineView,
    engaged: bool,
    with_procs: bool,
) -> Census {
    let parents = view
        .parents
        .iter()
        .map(|p| Parent {
            path: p.clone(),
            memory_bytes: roots.memory_usage(host, p),
        })
        .collect();
    let units = if engaged {
        view.units
            .iter()
            .filter(|(_, path)| host::populated(host, &roots.cpu.join(path)))
            .map(|(unit, path)| {
                let mut unit = unit.clone();
                unit.memory_bytes = roots.memory_usage(host, path).unwrap_or(0);
                (unit, path.clone())
            })
            .collect()
    } else {
        Vec::new()
    };
    let procs = if with_procs {
        view.cgroups
            .iter()
            .map(|rel| (rel.clone(), host::procs(host, &roots.cpu.join(rel))))
            .collect()
    } else {
        Vec::new()
    };
    Census {
        parents,
        units,
        procs,
    }
}

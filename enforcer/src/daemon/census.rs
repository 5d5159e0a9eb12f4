//! What the controllers know of the offline side in one tick: the offline parents, units and
//! cgroups from the live index (captured under the state lock), then their processes and
//! memory read from the node through [`Host`] (without the lock).

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use super::procs::ProcsReader;
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

/// Offline parents: the cgroups the offline limits go on — the top offline cgroups with
/// nothing but offline work below them. An offline cgroup with an online or system cgroup
/// anywhere below it (a BestEffort pod an operator labelled online) is never one: its limit
/// would bound that work too; its offline children are the parents instead.
pub fn offline_roots(index: &CgroupIndex) -> Vec<&CgroupEntry> {
    let mut above_other: HashSet<&str> = HashSet::new();
    for e in index.iter().filter(|e| e.class != Class::Offline) {
        let mut p = &*e.path;
        while !p.is_empty() {
            p = parent(p);
            if !above_other.insert(p) {
                break;
            }
        }
    }
    let bounded = |e: &CgroupEntry| e.class == Class::Offline && !above_other.contains(&*e.path);
    let parents: HashSet<&str> = index
        .iter()
        .filter(|e| bounded(e))
        .map(|e| &*e.path)
        .collect();
    let mut roots: Vec<&CgroupEntry> = index
        .iter()
        .filter(|e| bounded(e) && !e.path.is_empty() && !parents.contains(parent(&e.path)))
        .collect();
    roots.sort_by(|a, b| a.path.cmp(&b.path));
    roots
}

/// Offline units, the things evicted one at a time: a pod the runtime knows (its own
/// cgroup, never one of its containers'), else children of an offline parent (a pod, a Yarn
/// container), or an offline parent with no offline children.
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
        .filter(|e| match &e.pod {
            Some(p) => p.is_pod_cgroup,
            None => {
                roots.contains(parent(&e.path))
                    || (roots.contains(&*e.path) && !has_offline_child.contains(&*e.path))
            }
        })
        .collect()
}

/// The offline side's shape: parents, units and cgroups as the index has them, computed
/// again only when the index changed (the walk over every entry costs a node of 10,000
/// cgroups percents of a core at ten ticks a second).
#[derive(Debug, Default, Clone)]
pub struct OfflineShape {
    version: Option<u64>,
    parents: Vec<String>,
    units: Vec<(u64, Priority, Arc<str>)>,
    cgroups: Vec<(u64, Arc<str>)>,
}

impl OfflineShape {
    /// The index version this shape was computed from (`0`: never).
    pub fn version(&self) -> u64 {
        self.version.unwrap_or(0)
    }

    /// Whether `path` is an offline parent or unit.
    pub fn owns(&self, path: &str) -> bool {
        self.parents.iter().any(|p| p == path) || self.units.iter().any(|(_, _, u)| &**u == path)
    }

    pub fn refresh(&mut self, index: &CgroupIndex) {
        if self.version == Some(index.version()) {
            return;
        }
        self.version = Some(index.version());
        self.parents = offline_roots(index)
            .iter()
            .map(|e| e.path.to_string())
            .collect();
        self.units = offline_units(index)
            .into_iter()
            .map(|e| (e.id, e.priority.unwrap_or(Priority::P3), e.path.clone()))
            .collect();
        self.cgroups = index
            .iter()
            .filter(|e| e.class == Class::Offline && !e.path.is_empty())
            .map(|e| (e.id, e.path.clone()))
            .collect();
    }
}

/// The offline side as the index sees it (relative paths).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OfflineView {
    pub parents: Vec<String>,
    /// Units with their CPU use over the window (memory is read later, from the node).
    /// Paths are shared with the index: a tick copies no string.
    pub units: Vec<(OfflineUnit, Arc<str>)>,
    /// Every offline cgroup (id, path), with the CPU time its tasks have had (ns): the
    /// isolation reads the processes only of cgroups that ran since it last looked.
    pub cgroups: Vec<(u64, Arc<str>, u64)>,
}

impl OfflineView {
    pub fn capture(index: &CgroupIndex, usage: &UsageTracker) -> OfflineView {
        let mut shape = OfflineShape::default();
        shape.refresh(index);
        OfflineView::of(&shape, usage, true)
    }

    /// The shape with this tick's CPU figures; the units only `with_units` (the ladder is
    /// engaged: nothing else looks at them).
    pub fn of(shape: &OfflineShape, usage: &UsageTracker, with_units: bool) -> OfflineView {
        OfflineView {
            parents: shape.parents.clone(),
            units: shape
                .units
                .iter()
                .filter(|_| with_units)
                .map(|(id, priority, path)| {
                    let unit = OfflineUnit {
                        id: *id,
                        priority: *priority,
                        cpu_cores: usage.cgroup(*id).map_or(0.0, |(_, cores)| cores),
                        memory_bytes: 0,
                    };
                    (unit, path.clone())
                })
                .collect(),
            cgroups: shape
                .cgroups
                .iter()
                .map(|(id, path)| {
                    let ran = usage.cgroup(*id).map_or(0, |(total_ns, _)| total_ns);
                    (*id, path.clone(), ran)
                })
                .collect(),
        }
    }
}

/// Where a cgroup's processes, memory figures and limits are.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupRoots {
    /// The hierarchy the CPU index is of (its `cgroup.procs` list the processes).
    pub cpu: PathBuf,
    /// Whether `cpu` is cgroup2 with the cpu controller (`cpu.max`) rather than v1.
    pub cpu_v2: bool,
    /// The memory hierarchy and whether it is cgroup2; `None` without a memory controller.
    pub memory: Option<(PathBuf, bool)>,
    /// Where freezing happens: cgroup2 (`cgroup.freeze`, true) or the v1 freezer.
    pub freezer: Option<(PathBuf, bool)>,
    /// Where the kernel's own CPU accounting is: v1 `cpuacct` (false) or cgroup2's
    /// `cpu.stat` (true, there without the cpu controller too).
    pub cpu_usage: Option<(PathBuf, bool)>,
}

impl CgroupRoots {
    pub fn new(layout: &CgroupLayout, cpu_root: &Path) -> CgroupRoots {
        let memory = if layout.unified_controllers.iter().any(|c| c == "memory") {
            layout.unified_mount().map(|p| (p.to_path_buf(), true))
        } else {
            layout.v1_mount("memory").map(|p| (p.to_path_buf(), false))
        };
        let cpu_v2 = layout.unified_mount() == Some(cpu_root)
            && layout.unified_controllers.iter().any(|c| c == "cpu");
        let freezer = layout
            .unified_mount()
            .map(|p| (p.to_path_buf(), true))
            .or_else(|| layout.v1_mount("freezer").map(|p| (p.to_path_buf(), false)));
        let cpu_usage = if cpu_v2 {
            Some((cpu_root.to_path_buf(), true))
        } else {
            layout
                .v1_mount("cpuacct")
                .map(|p| (p.to_path_buf(), false))
                .or_else(|| layout.unified_mount().map(|p| (p.to_path_buf(), true)))
        };
        CgroupRoots {
            cpu: cpu_root.to_path_buf(),
            cpu_v2,
            memory,
            freezer,
            cpu_usage,
        }
    }

    /// Whether the kernel has `rel` frozen (read back, not believed).
    pub fn frozen(&self, host: &dyn Host, rel: &str) -> Option<bool> {
        let (root, v2) = self.freezer.as_ref()?;
        let dir = root.join(rel);
        if *v2 {
            Some(host.read(&dir.join("cgroup.freeze")).ok()?.trim() == "1")
        } else {
            let state = host.read(&dir.join("freezer.state")).ok()?;
            Some(matches!(state.trim(), "FROZEN" | "FREEZING"))
        }
    }

    /// The CPU quota in force on `rel`, in cores (`None`: unlimited or unreadable).
    pub fn cpu_quota_cores(&self, host: &dyn Host, rel: &str) -> Option<f64> {
        let dir = self.cpu.join(rel);
        if self.cpu_v2 {
            let text = host.read(&dir.join("cpu.max")).ok()?;
            let mut parts = text.split_whitespace();
            let quota: f64 = parts.next()?.parse().ok()?;
            let period: f64 = parts.next()?.parse().ok()?;
            (period > 0.0).then(|| quota / period)
        } else {
            let quota: f64 = host
                .read(&dir.join("cpu.cfs_quota_us"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let period: f64 = host
                .read(&dir.join("cpu.cfs_period_us"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            (quota > 0.0 && period > 0.0).then(|| quota / period)
        }
    }

    /// The memory limit in force on `rel` (`None`: unlimited, or no memory cgroup). On
    /// cgroup2 the lower of `memory.high` (what enforcer squeezes with) and `memory.max`.
    pub fn memory_limit(&self, host: &dyn Host, rel: &str) -> Option<u64> {
        let (root, v2) = self.memory.as_ref()?;
        let read = |file: &str| -> Option<u64> {
            host.read(&root.join(rel).join(file))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        let value = if *v2 {
            // "max" does not parse: unlimited.
            match (read("memory.high"), read("memory.max")) {
                (Some(h), Some(m)) => h.min(m),
                (h, m) => h.or(m)?,
            }
        } else {
            read("memory.limit_in_bytes")?
        };
        // v1 says "no limit" with a huge page-aligned number.
        (value < 1 << 62).then_some(value)
    }

    /// Hierarchical memory use of `rel`; `None` when it has no memory cgroup.
    pub fn memory_usage(&self, host: &dyn Host, rel: &str) -> Option<u64> {
        let (root, v2) = self.memory.as_ref()?;
        host::memory_usage(host, &root.join(rel), *v2)
    }

    /// The kernel's CPU time of `rel` and everything below it, ever (removed children
    /// included): `cpuacct.usage`, or `usage_usec` of cgroup2's `cpu.stat`.
    pub fn cpu_usage_ns(&self, host: &dyn Host, rel: &str) -> Option<u64> {
        let (root, v2) = self.cpu_usage.as_ref()?;
        let dir = root.join(rel);
        if *v2 {
            host::keyed_value(host, &dir.join("cpu.stat"), "usage_usec").map(|us| us * 1000)
        } else {
            host.read(&dir.join("cpuacct.usage"))
                .ok()?
                .trim()
                .parse()
                .ok()
        }
    }

    /// Processes of `rel` and below the kernel's OOM killer killed (`oom_kill` of
    /// `memory.events` on cgroup2, of `memory.oom_control` on v1); `None` when unreadable.
    pub fn oom_kills(&self, host: &dyn Host, rel: &str) -> Option<u64> {
        let (root, v2) = self.memory.as_ref()?;
        let file = if *v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        host::keyed_value(host, &root.join(rel).join(file), "oom_kill")
    }
}

/// An offline parent and its memory use (`None`: no memory cgroup to limit), with what
/// the kernel says is in force on it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parent {
    pub path: String,
    pub memory_bytes: Option<u64>,
    /// Its memory is limited on cgroup2 (`memory.high` below a `memory.max` backstop), not
    /// with v1's one hard `memory.limit_in_bytes`.
    pub memory_v2: bool,
    pub state: crate::surfaces::snapshot::ParentState,
}

/// The offline side read from the node.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Census {
    pub parents: Vec<Parent>,
    /// Units that still have processes, with their memory use; read only when the ladder is
    /// engaged (a node with thousands of pods pays nothing for it otherwise).
    pub units: Vec<(OfflineUnit, Arc<str>)>,
    /// The processes of each offline cgroup, for isolation; read only when it is on. The
    /// same `Arc` from tick to tick while nothing changed.
    pub procs: Arc<Vec<(String, Vec<i32>)>>,
}

/// An offline parent's freeze and limits as the kernel has them now.
pub fn parent_state(
    host: &dyn Host,
    roots: &CgroupRoots,
    path: &str,
) -> crate::surfaces::snapshot::ParentState {
    crate::surfaces::snapshot::ParentState {
        path: path.to_string(),
        frozen: roots.frozen(host, path).unwrap_or(false),
        cpu_quota_cores: roots.cpu_quota_cores(host, path),
        memory_limit_bytes: roots.memory_limit(host, path),
    }
}

/// Reads what `view` names from the node; `procs` (the isolation's reader, when it is on)
/// lists the offline cgroups' processes.
pub fn read(
    host: &dyn Host,
    roots: &CgroupRoots,
    view: &OfflineView,
    engaged: bool,
    procs: Option<(&mut ProcsReader, Instant)>,
) -> Census {
    let parents = view
        .parents
        .iter()
        .map(|p| Parent {
            path: p.clone(),
            memory_bytes: roots.memory_usage(host, p),
            memory_v2: roots.memory.as_ref().is_some_and(|(_, v2)| *v2),
            state: parent_state(host, roots, p),
        })
        .collect();
    let units = if engaged {
        view.units
            .iter()
            .filter(|(_, path)| host::populated(host, &roots.cpu.join(&**path)))
            .map(|(unit, path)| {
                let mut unit = unit.clone();
                unit.memory_bytes = roots.memory_usage(host, path).unwrap_or(0);
                (unit, path.clone())
            })
            .collect()
    } else {
        Vec::new()
    };
    let procs = match procs {
        Some((reader, now)) => reader.read(host, &roots.cpu, &view.cgroups, now),
        None => Arc::default(),
    };
    Census {
        parents,
        units,
        procs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    fn roots(v2: bool) -> CgroupRoots {
        CgroupRoots {
            cpu: PathBuf::from(if v2 { "/cg" } else { "/cg/cpu" }),
            cpu_v2: v2,
            memory: Some((PathBuf::from(if v2 { "/cg" } else { "/cg/memory" }), v2)),
            freezer: Some((PathBuf::from(if v2 { "/cg" } else { "/cg/freezer" }), v2)),
            cpu_usage: Some((PathBuf::from(if v2 { "/cg" } else { "/cg/cpuacct" }), v2)),
        }
    }

    #[test]
    fn a_units_kernel_cpu_time_and_oom_kills_on_v2_and_v1() {
        let host = FakeHost::default();
        host.set(
            "/cg/pod/cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        );
        host.set(
            "/cg/pod/memory.events",
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
        assert_eq!(roots(true).cpu_usage_ns(&host, "pod"), Some(1_500_000));
        assert_eq!(roots(true).oom_kills(&host, "pod"), Some(1));
        host.set("/cg/cpuacct/pod/cpuacct.usage", "2500000\n");
        host.set(
            "/cg/memory/pod/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        assert_eq!(roots(false).cpu_usage_ns(&host, "pod"), Some(2_500_000));
        assert_eq!(roots(false).oom_kills(&host, "pod"), Some(2));
        // `oom_kill` is not `oom_kill_disable`, nor `oom_group_kill`.
        assert_eq!(roots(false).oom_kills(&host, "gone"), None);
    }

    #[test]
    fn the_kernel_state_of_a_parent_is_read_back_on_v2_and_v1() {
        let host = FakeHost::default();
        host.set("/cg/be/cgroup.freeze", "1\n");
        host.set("/cg/be/cpu.max", "50000 100000\n");
        host.set("/cg/be/memory.max", "max\n");
        host.set("/cg/be/memory.current", "4096\n");
        let r = roots(true);
        assert_eq!(r.frozen(&host, "be"), Some(true));
        assert_eq!(r.cpu_quota_cores(&host, "be"), Some(0.5));
        assert_eq!(r.memory_limit(&host, "be"), None, "max is no limit");
        assert_eq!(r.memory_usage(&host, "be"), Some(4096));
        // enforcer's squeeze is memory.high, with memory.max a margin above.
        host.set("/cg/be/memory.high", "1073741824\n");
        host.set("/cg/be/memory.max", "1342177280\n");
        assert_eq!(r.memory_limit(&host, "be"), Some(1 << 30));
        host.set("/cg/be/memory.high", "max\n");
        assert_eq!(r.memory_limit(&host, "be"), Some(1342177280));
        host.set("/cg/be/memory.max", "max\n");
        host.set("/cg/freezer/yarn/freezer.state", "THAWED\n");
        host.set("/cg/cpu/yarn/cpu.cfs_quota_us", "-1\n");
        host.set("/cg/cpu/yarn/cpu.cfs_period_us", "100000\n");
        host.set(
            "/cg/memory/yarn/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        let r = roots(false);
        assert_eq!(r.frozen(&host, "yarn"), Some(false));
        assert_eq!(r.cpu_quota_cores(&host, "yarn"), None);
        assert_eq!(r.memory_limit(&host, "yarn"), None);
        host.set("/cg/memory/yarn/memory.limit_in_bytes", "1073741824\n");
        assert_eq!(r.memory_limit(&host, "yarn"), Some(1 << 30));
    }

    #[test]
    fn units_are_read_only_when_the_ladder_needs_them() {
        let host = FakeHost::default();
        host.set("/cg/be/cgroup.procs", "");
        host.set("/cg/be/pod1/cgroup.procs", "7\n");
        host.set("/cg/be/pod2/cgroup.procs", "");
        let unit = |id| OfflineUnit {
            id,
            priority: Priority::P3,
            cpu_cores: 0.0,
            memory_bytes: 0,
        };
        let view = OfflineView {
            parents: vec!["be".into()],
            units: vec![(unit(1), "be/pod1".into()), (unit(2), "be/pod2".into())],
            cgroups: vec![
                (10, "be".into(), 0),
                (1, "be/pod1".into(), 0),
                (2, "be/pod2".into(), 0),
            ],
        };
        let mut reader = ProcsReader::default();
        let quiet = read(
            &host,
            &roots(true),
            &view,
            false,
            Some((&mut reader, Instant::now())),
        );
        assert!(quiet.units.is_empty());
        assert_eq!(quiet.procs.len(), 3);
        let engaged = read(&host, &roots(true), &view, true, None);
        let ids: Vec<u64> = engaged.units.iter().map(|(u, _)| u.id).collect();
        assert_eq!(ids, [1], "only units that still have processes");
        assert!(engaged.procs.is_empty());
    }
}

#[cfg(test)]
mod pod_tests {
    use super::*;
    use crate::model::{
        classify::{CLASS_LABEL, RuleSet},
        layout::CgroupDir,
        pod::{ContainerMeta, Pod, PodTable},
    };

    fn pod(uid: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            uid: uid.into(),
            namespace: "spark".into(),
            name: format!("p{uid}"),
            sandbox_id: format!("s{uid}"),
            ready: true,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: Default::default(),
            containers: vec![ContainerMeta {
                id: format!("c{uid}"),
                name: "main".into(),
                running: true,
            }],
            netns: None,
            created_at: 0,
        }
    }

    fn index(pods: &PodTable) -> CgroupIndex {
        let dirs = [
            "",
            "kubepods",
            "kubepods/besteffort",
            "kubepods/besteffort/poda1",
            "kubepods/besteffort/poda1/ca1",
            "kubepods/besteffort/poda2",
            "kubepods/besteffort/poda2/ca2",
        ];
        let mut ix = CgroupIndex::new();
        ix.refresh(
            dirs.iter()
                .enumerate()
                .map(|(i, p)| CgroupDir {
                    rel_path: p.to_string(),
                    id: i as u64 + 1,
                })
                .collect(),
            &RuleSet::defaults(),
            pods,
        );
        ix
    }

    fn paths(v: Vec<&CgroupEntry>) -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|e| e.path.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn pods_are_the_units_and_the_besteffort_slice_the_parent() {
        let mut pods = PodTable::new();
        pods.replace(vec![pod("a1", &[]), pod("a2", &[])]);
        let ix = index(&pods);
        assert_eq!(paths(offline_roots(&ix)), ["kubepods/besteffort"]);
        assert_eq!(
            paths(offline_units(&ix)),
            ["kubepods/besteffort/poda1", "kubepods/besteffort/poda2"]
        );
    }

    /// A BestEffort pod labelled online: no limit goes on the BestEffort slice (it would
    /// bound the online pod), the other pod is its own parent, and the online pod is no unit.
    #[test]
    fn an_online_pod_inside_the_besteffort_slice_keeps_limits_off_the_slice() {
        let mut pods = PodTable::new();
        pods.replace(vec![pod("a1", &[(CLASS_LABEL, "online")]), pod("a2", &[])]);
        let ix = index(&pods);
        assert_eq!(paths(offline_roots(&ix)), ["kubepods/besteffort/poda2"]);
        assert_eq!(paths(offline_units(&ix)), ["kubepods/besteffort/poda2"]);
    }
}

#[cfg(test)]
mod shape_tests {
    use super::*;
    use crate::model::{classify::RuleSet, pod::PodTable};

    /// The shape is computed once per index version, and again after any change.
    #[test]
    fn the_shape_follows_the_index_and_only_when_it_changes() {
        let (rules, pods) = (RuleSet::defaults(), PodTable::new());
        let mut index = CgroupIndex::new();
        index.insert(1, "yarn", &rules, &pods);
        index.insert(2, "yarn/container_1_01_000002", &rules, &pods);
        let mut shape = OfflineShape::default();
        shape.refresh(&index);
        assert_eq!(shape.parents, vec!["yarn".to_string()]);
        assert_eq!(shape.units.len(), 1);
        let v = shape.version;
        shape.refresh(&index);
        assert_eq!(shape.version, v, "nothing changed: not computed again");
        index.insert(3, "yarn/container_1_01_000003", &rules, &pods);
        shape.refresh(&index);
        assert_eq!(shape.units.len(), 2);
        index.remove(2);
        shape.refresh(&index);
        assert_eq!(shape.units.len(), 1);
        assert_eq!(shape.cgroups.len(), 2, "yarn and the one container left");
    }
}

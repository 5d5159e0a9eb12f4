//! Which cgroup controllers the enforcer's effects need, where each one is on this host, and
//! whether cgroup2 delegates it down to a given cgroup: found at start-up so that a missing
//! or undelegated controller is said once, in one line naming it and the cgroup, with the
//! feature it turns off, instead of showing up as a bare "Permission denied" on every write
//! or as memory limiting that silently does nothing.
//!
//! Pure over the [`CgroupLayout`] (itself parsed from mountinfo text) and the
//! [`ReadFile`] seam for `cgroup.subtree_control` and friends, so every case is a unit test
//! over fixtures.
//!
//! On cgroup2 a controller's files (`cpu.max`, `memory.max`) exist in a cgroup only when
//! every ancestor, root included, lists the controller in its `cgroup.subtree_control`;
//! writing one that is absent fails with EACCES (kernfs cannot create files). Freezing and
//! killing use the core files `cgroup.freeze` and `cgroup.kill`, which need no delegation.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::layout::{CgroupLayout, Fs, ReadFile};

/// A controller the enforcer's effects rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    Cpu,
    Memory,
    /// The v1 `freezer`; on cgroup2 freezing is the core file `cgroup.freeze`.
    Freezer,
    Pids,
}

impl Controller {
    pub const ALL: [Controller; 4] = [
        Controller::Cpu,
        Controller::Memory,
        Controller::Freezer,
        Controller::Pids,
    ];

    /// The name in mount options, `cgroup.controllers` and `cgroup.subtree_control`.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Memory => "memory",
            Controller::Freezer => "freezer",
            Controller::Pids => "pids",
        }
    }

    /// Whether cgroup2 needs it delegated (`+name` in the ancestors' `subtree_control`):
    /// not the freezer, which is a core file there.
    pub fn delegated_on_v2(self) -> bool {
        self != Controller::Freezer
    }

    /// The enforcer feature that is off without it. The pids controller is reported for
    /// completeness: nothing of the enforcer depends on it.
    pub fn feature(self) -> Option<Feature> {
        match self {
            Controller::Cpu => Some(Feature::CpuQuota),
            Controller::Memory => Some(Feature::MemoryLimits),
            Controller::Freezer => Some(Feature::Freeze),
            Controller::Pids => None,
        }
    }
}

impl std::fmt::Display for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the enforcer does to offline cgroups, as a controller gap can turn it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    CpuQuota,
    MemoryLimits,
    Freeze,
    /// Never off for want of a controller (`cgroup.procs` is core, signals need none); listed
    /// so that the surfaces show the four effects side by side.
    Kill,
}

impl Feature {
    pub const ALL: [Feature; 4] = [
        Feature::CpuQuota,
        Feature::MemoryLimits,
        Feature::Freeze,
        Feature::Kill,
    ];

    /// The metric label and the wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::CpuQuota => "cpu_quota",
            Feature::MemoryLimits => "memory_limits",
            Feature::Freeze => "freeze",
            Feature::Kill => "kill",
        }
    }

    /// What an operator reads: "offline memory limits are off".
    pub fn off(self) -> &'static str {
        match self {
            Feature::CpuQuota => "offline CPU quota is off",
            Feature::MemoryLimits => "offline memory limits are off",
            Feature::Freeze => "offline freeze is off",
            Feature::Kill => "offline kill is off",
        }
    }
}

/// Where a controller is on this host, as the actuators will use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Placement {
    /// A v1 hierarchy mounted here.
    V1(PathBuf),
    /// The cgroup2 hierarchy mounted here, with the controller in its root's
    /// `cgroup.controllers` (for the freezer: cgroup2 is mounted, `cgroup.freeze` is core).
    Unified(PathBuf),
    /// Neither.
    Nowhere,
}

impl Placement {
    fn describe(&self) -> String {
        match self {
            Placement::V1(p) => format!("v1 {}", p.display()),
            Placement::Unified(p) => format!("cgroup2 {}", p.display()),
            Placement::Nowhere => "none".into(),
        }
    }
}

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
    delegation_with(&Fs, root, rel, controller)
}

/// [`delegation`] through `files`. `Ok` when no ancestor was found lacking it: the freezer
/// (core on cgroup2), the root itself (`rel` empty: it has no controller files) and an
/// ancestor whose `subtree_control` cannot be read (gone: not evidence) all pass.
pub fn delegation_with(
    files: &impl ReadFile,
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

/// A controller that is missing, or not delegated to a cgroup: what it turns off and the one
/// line that says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub controller: Controller,
    /// None for the pids controller, which nothing depends on.
    pub feature: Option<Feature>,
    /// The cgroup whose `cgroup.subtree_control` lacks the controller, or the cgroup missing
    /// from a v1 hierarchy; None when the controller is on no hierarchy at all.
    pub cgroup: Option<PathBuf>,
    /// One line, naming the controller and the cgroup, saying what is off and what to do.
    pub explain: String,
}

impl Gap {
    fn new(controller: Controller, cgroup: Option<PathBuf>, what: String, hint: &str) -> Gap {
        let off = controller
            .feature()
            .map_or("no enforcer feature depends on it", Feature::off);
        Gap {
            controller,
            feature: controller.feature(),
            cgroup,
            explain: format!("{what}: {off}{hint}"),
        }
    }

    fn not_delegated(nd: NotDelegated) -> Gap {
        let hint = format!(" (enable it with \"+{}\")", nd.controller.name());
        Gap::new(
            nd.controller,
            Some(nd.cgroup.clone()),
            nd.to_string(),
            &hint,
        )
    }
}

/// Where each controller the enforcer needs is on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Controllers {
    pub cpu: Placement,
    pub memory: Placement,
    /// cgroup2 when it is mounted (`cgroup.freeze`), else the v1 freezer.
    pub freezer: Placement,
    /// The v1 freezer when cgroup2 is preferred for freezing: a cgroup that the kubelet
    /// made only in the v1 hierarchies of a hybrid host is frozen there.
    pub freezer_v1: Option<PathBuf>,
    pub pids: Placement,
    /// The cgroup2 mount, controllers or not.
    pub unified: Option<PathBuf>,
}

impl Controllers {
    /// The placements the actuators use (`cgroupfs::CgroupDirs::resolve` chooses the same):
    /// cgroup2 for a controller in its root's `cgroup.controllers`, else its v1 hierarchy.
    pub fn of(layout: &CgroupLayout) -> Controllers {
        let unified = layout.unified_mount().map(Path::to_path_buf);
        let place = |c: Controller| match &unified {
            Some(u) if layout.unified_controllers.iter().any(|x| x == c.name()) => {
                Placement::Unified(u.clone())
            }
            _ => layout
                .v1_mount(c.name())
                .map_or(Placement::Nowhere, |m| Placement::V1(m.to_path_buf())),
        };
        let freezer_v1 = layout.v1_mount("freezer").map(Path::to_path_buf);
        let freezer = match (&unified, &freezer_v1) {
            (Some(u), _) => Placement::Unified(u.clone()),
            (None, Some(v1)) => Placement::V1(v1.clone()),
            (None, None) => Placement::Nowhere,
        };
        Controllers {
            cpu: place(Controller::Cpu),
            memory: place(Controller::Memory),
            freezer,
            freezer_v1: freezer_v1.filter(|_| unified.is_some()),
            pids: place(Controller::Pids),
            unified,
        }
    }

    pub fn placement(&self, controller: Controller) -> &Placement {
        match controller {
            Controller::Cpu => &self.cpu,
            Controller::Memory => &self.memory,
            Controller::Freezer => &self.freezer,
            Controller::Pids => &self.pids,
        }
    }

    /// The start-up line: `cpu=v1 /sys/fs/cgroup/cpu memory=cgroup2 /sys/fs/cgroup ...`.
    pub fn summary(&self) -> String {
        let mut out: Vec<String> = Controller::ALL
            .iter()
            .map(|&c| format!("{c}={}", self.placement(c).describe()))
            .collect();
        if let Some(v1) = &self.freezer_v1 {
            out.push(format!("freezer_v1={}", v1.display()));
        }
        out.join(" ")
    }

    /// Controllers on no hierarchy at all, whatever the cgroup.
    pub fn missing(&self) -> Vec<Gap> {
        Controller::ALL
            .iter()
            .filter(|&&c| *self.placement(c) == Placement::Nowhere)
            .map(|&c| self.missing_gap(c))
            .collect()
    }

    fn missing_gap(&self, c: Controller) -> Gap {
        let where_not = match (&self.unified, c) {
            (None, Controller::Freezer) => "no v1 freezer hierarchy, no cgroup2 mounted".into(),
            (None, _) => format!("no v1 {c} hierarchy, no cgroup2 mounted"),
            (Some(u), _) => format!(
                "no v1 {c} hierarchy, not in {}",
                u.join("cgroup.controllers").display()
            ),
        };
        let hint = match c {
            Controller::Memory if self.unified.is_none() => {
                " (kernels from 6.12 on mount the v1 memory controller only with CONFIG_MEMCG_V1: mount cgroup2)"
            }
            _ => "",
        };
        Gap::new(
            c,
            None,
            format!("{c} controller not mounted ({where_not})"),
            hint,
        )
    }

    /// Every gap for the cgroup `rel` (relative to each hierarchy's root; e.g.
    /// `kubepods.slice/kubepods-besteffort.slice`, an offline parent): the controllers
    /// missing everywhere, those cgroup2 does not delegate down to it, those whose hierarchy
    /// lacks the cgroup while another has it, and no freezer where neither `cgroup.freeze`
    /// nor a v1 freezer cgroup is there.
    /// A cgroup that exists in no hierarchy has no gap (it is not there to act on).
    pub fn check(&self, rel: &str) -> Vec<Gap> {
        self.check_with(&Fs, rel)
    }

    /// [`check`](Self::check) through `files`; a cgroup exists when its `cgroup.procs` can be
    /// read (every cgroup of every hierarchy has one).
    pub fn check_with(&self, files: &impl ReadFile, rel: &str) -> Vec<Gap> {
        let rel = rel.trim_matches('/');
        let exists = |root: &Path| files.read(&root.join(rel).join("cgroup.procs")).is_ok();
        let mut gaps = Vec::new();
        for c in Controller::ALL {
            match self.placement(c) {
                Placement::Nowhere => gaps.push(self.missing_gap(c)),
                Placement::Unified(root) if c == Controller::Freezer => {
                    let in_v2 = exists(root);
                    if in_v2 && files.read(&root.join(rel).join("cgroup.freeze")).is_ok() {
                        continue;
                    }
                    // Frozen through the v1 freezer instead (the actuators do the same).
                    if self.freezer_v1.as_deref().is_some_and(exists)
                        || !self.exists_anywhere(files, rel)
                    {
                        continue;
                    }
                    let dir = root.join(rel);
                    let what = if in_v2 {
                        // Before 5.2 cgroup2 had no freezer.
                        format!(
                            "no cgroup.freeze in {} (kernel before 5.2) and no v1 freezer",
                            dir.display()
                        )
                    } else {
                        format!(
                            "freezer: no cgroup {rel} in cgroup2 ({} is missing) nor in a v1 freezer hierarchy",
                            dir.display()
                        )
                    };
                    gaps.push(Gap::new(c, Some(dir), what, ""));
                }
                Placement::Unified(root) if exists(root) => {
                    if let Err(nd) = delegation_with(files, root, rel, c) {
                        gaps.push(Gap::not_delegated(nd));
                    }
                }
                Placement::Unified(root) | Placement::V1(root) => {
                    if !rel.is_empty() && !exists(root) && self.exists_anywhere(files, rel) {
                        let hierarchy = match self.placement(c) {
                            Placement::V1(_) => format!("the v1 {c} hierarchy"),
                            _ => "cgroup2".to_string(),
                        };
                        let dir = root.join(rel);
                        gaps.push(Gap::new(
                            c,
                            Some(dir.clone()),
                            format!(
                                "{c} controller: no cgroup {rel} in {hierarchy} ({} is missing)",
                                dir.display()
                            ),
                            " (have it created there, as in the other hierarchies)",
                        ));
                    }
                }
            }
        }
        gaps
    }

    /// Every gap of the host and of the offline parents `parents` (relative paths, as in
    /// the index), each line once: the controllers missing everywhere first, then those of
    /// each parent (two parents under one undelegating ancestor give one line). What the
    /// surfaces show in `ProtectionView::controller_gaps`.
    pub fn gaps<'a>(&self, parents: impl IntoIterator<Item = &'a str>) -> Vec<Gap> {
        self.gaps_with(&Fs, parents)
    }

    /// [`gaps`](Self::gaps) through `files`.
    pub fn gaps_with<'a>(
        &self,
        files: &impl ReadFile,
        parents: impl IntoIterator<Item = &'a str>,
    ) -> Vec<Gap> {
        let mut out = self.missing();
        for rel in parents {
            for gap in self.check_with(files, rel) {
                if !out.iter().any(|g| g.explain == gap.explain) {
                    out.push(gap);
                }
            }
        }
        out
    }

    fn exists_anywhere(&self, files: &impl ReadFile, rel: &str) -> bool {
        Controller::ALL
            .iter()
            .filter_map(|&c| match self.placement(c) {
                Placement::V1(r) | Placement::Unified(r) => Some(r),
                Placement::Nowhere => None,
            })
            .chain(self.unified.iter())
            .any(|root| files.read(&root.join(rel).join("cgroup.procs")).is_ok())
    }
}

/// The features off because of `gaps` (each once, in [`Feature::ALL`] order).
pub fn features_off(gaps: &[Gap]) -> Vec<Feature> {
    Feature::ALL
        .into_iter()
        .filter(|f| gaps.iter().any(|g| g.feature == Some(*f)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, io};

    use super::*;

    /// A node's cgroupfs as a map of file paths to contents.
    struct Files(HashMap<PathBuf, String>);

    impl Files {
        fn new(files: &[(&str, &str)]) -> Files {
            Files(
                files
                    .iter()
                    .map(|(p, t)| (PathBuf::from(p), t.to_string()))
                    .collect(),
            )
        }
    }

    impl ReadFile for Files {
        fn read(&self, path: &Path) -> io::Result<String> {
            self.0
                .get(path)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
    }

    const V2: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";

    /// Pure v1, kernel 6.12+: cpu, cpuacct, freezer, pids mounted; the memory controller
    /// could not be mounted and there is no cgroup2.
    const V1_NO_MEMORY: &str = "\
25 18 0:21 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
29 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpuacct,cpu
31 25 0:27 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
32 25 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";

    const BESTEFFORT: &str = "kubepods.slice/kubepods-besteffort.slice";

    fn v2_node(kubepods_subtree: &str) -> (Controllers, Files) {
        let files = Files::new(&[
            (
                "/sys/fs/cgroup/cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma misc\n",
            ),
            (
                "/sys/fs/cgroup/cgroup.subtree_control",
                "cpuset cpu io memory pids\n",
            ),
            ("/sys/fs/cgroup/kubepods.slice/cgroup.procs", ""),
            (
                "/sys/fs/cgroup/kubepods.slice/cgroup.subtree_control",
                kubepods_subtree,
            ),
            (
                "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/cgroup.procs",
                "",
            ),
            (
                "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/cgroup.freeze",
                "0\n",
            ),
        ]);
        let layout = CgroupLayout::from_mountinfo_with(V2, &files).unwrap();
        (Controllers::of(&layout), files)
    }

    #[test]
    fn pure_v1_without_the_memory_controller_says_memory_limits_are_off() {
        let layout = CgroupLayout::from_mountinfo_with(V1_NO_MEMORY, &Files::new(&[])).unwrap();
        assert_eq!(layout.memory_hierarchy(), None);
        let c = Controllers::of(&layout);
        assert_eq!(c.memory, Placement::Nowhere);
        assert_eq!(c.cpu, Placement::V1("/sys/fs/cgroup/cpu,cpuacct".into()));
        assert_eq!(c.freezer, Placement::V1("/sys/fs/cgroup/freezer".into()));
        assert_eq!(c.freezer_v1, None);
        assert_eq!(
            c.summary(),
            "cpu=v1 /sys/fs/cgroup/cpu,cpuacct memory=none freezer=v1 /sys/fs/cgroup/freezer pids=v1 /sys/fs/cgroup/pids"
        );
        let gaps = c.missing();
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].controller, Controller::Memory);
        assert_eq!(gaps[0].feature, Some(Feature::MemoryLimits));
        assert_eq!(gaps[0].cgroup, None);
        assert_eq!(
            gaps[0].explain,
            "memory controller not mounted (no v1 memory hierarchy, no cgroup2 mounted): offline memory limits are off (kernels from 6.12 on mount the v1 memory controller only with CONFIG_MEMCG_V1: mount cgroup2)"
        );
        assert_eq!(features_off(&gaps), [Feature::MemoryLimits]);
    }

    #[test]
    fn delegation_names_the_ancestor_that_lacks_the_controller() {
        let (_, files) = v2_node("cpu pids\n");
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            delegation_with(&files, root, BESTEFFORT, Controller::Cpu),
            Ok(())
        );
        let err = delegation_with(&files, root, BESTEFFORT, Controller::Memory).unwrap_err();
        assert_eq!(
            err,
            NotDelegated {
                controller: Controller::Memory,
                cgroup: "/sys/fs/cgroup/kubepods.slice".into(),
            }
        );
        assert_eq!(
            err.to_string(),
            "memory controller not enabled in /sys/fs/cgroup/kubepods.slice/cgroup.subtree_control"
        );
        // One level up only the root is an ancestor, and it delegates memory.
        assert_eq!(
            delegation_with(&files, root, "kubepods.slice", Controller::Memory),
            Ok(())
        );
        // The freezer is core on cgroup2; the root has no controller files to delegate.
        assert_eq!(
            delegation_with(&files, root, BESTEFFORT, Controller::Freezer),
            Ok(())
        );
        assert_eq!(
            delegation_with(&files, root, "", Controller::Memory),
            Ok(())
        );
        // An ancestor that cannot be read is no evidence.
        assert_eq!(
            delegation_with(&files, root, "gone.slice/x", Controller::Memory),
            Ok(())
        );
    }

    #[test]
    fn delegation_fails_at_the_root_when_the_root_lacks_it() {
        let files = Files::new(&[("/sys/fs/cgroup/cgroup.subtree_control", "memory\n")]);
        assert_eq!(
            delegation_with(&files, Path::new("/sys/fs/cgroup"), "a/b", Controller::Cpu),
            Err(NotDelegated {
                controller: Controller::Cpu,
                cgroup: "/sys/fs/cgroup".into()
            })
        );
    }

    #[test]
    fn v2_check_of_an_offline_parent_reports_the_undelegated_controller() {
        let (c, files) = v2_node("cpu pids\n");
        assert_eq!(c.memory, Placement::Unified("/sys/fs/cgroup".into()));
        assert_eq!(c.freezer, Placement::Unified("/sys/fs/cgroup".into()));
        assert!(c.missing().is_empty());
        let gaps = c.check_with(&files, BESTEFFORT);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_eq!(gaps[0].controller, Controller::Memory);
        assert_eq!(gaps[0].feature, Some(Feature::MemoryLimits));
        assert_eq!(
            gaps[0].cgroup.as_deref(),
            Some(Path::new("/sys/fs/cgroup/kubepods.slice"))
        );
        assert_eq!(
            gaps[0].explain,
            r#"memory controller not enabled in /sys/fs/cgroup/kubepods.slice/cgroup.subtree_control: offline memory limits are off (enable it with "+memory")"#
        );
        // Fully delegated: no gap; and a cgroup that is not there has none either.
        let (c, files) = v2_node("cpu memory pids\n");
        assert!(c.check_with(&files, BESTEFFORT).is_empty());
        assert!(c.check_with(&files, "yarn").is_empty());
    }

    #[test]
    fn gaps_of_several_parents_say_each_line_once() {
        let (c, mut files) = v2_node("cpu pids\n");
        let burstable = "kubepods.slice/kubepods-burstable.slice";
        files.0.insert(
            PathBuf::from(format!("/sys/fs/cgroup/{burstable}/cgroup.procs")),
            String::new(),
        );
        files.0.insert(
            PathBuf::from(format!("/sys/fs/cgroup/{burstable}/cgroup.freeze")),
            "0\n".into(),
        );
        let gaps = c.gaps_with(&files, [BESTEFFORT, burstable, "yarn"]);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_eq!(features_off(&gaps), [Feature::MemoryLimits]);
        // On the pure v1 node the missing memory controller comes first, parents or not.
        let layout = CgroupLayout::from_mountinfo_with(V1_NO_MEMORY, &Files::new(&[])).unwrap();
        let gaps = Controllers::of(&layout).gaps_with(&Files::new(&[]), [BESTEFFORT]);
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].controller, Controller::Memory);
    }

    #[test]
    fn v2_pids_gap_turns_nothing_off() {
        let (c, files) = v2_node("cpu memory\n");
        let gaps = c.check_with(&files, BESTEFFORT);
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].feature, None);
        assert_eq!(
            gaps[0].explain,
            r#"pids controller not enabled in /sys/fs/cgroup/kubepods.slice/cgroup.subtree_control: no enforcer feature depends on it (enable it with "+pids")"#
        );
        assert!(features_off(&gaps).is_empty());
    }

    #[test]
    fn v2_without_cgroup_freeze_and_no_v1_freezer_says_freeze_is_off() {
        let (c, mut files) = v2_node("cpu memory pids\n");
        files.0.remove(Path::new(&format!(
            "/sys/fs/cgroup/{BESTEFFORT}/cgroup.freeze"
        )));
        let gaps = c.check_with(&files, BESTEFFORT);
        assert_eq!(gaps.len(), 1);
        assert_eq!(
            gaps[0].explain,
            "no cgroup.freeze in /sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice (kernel before 5.2) and no v1 freezer: offline freeze is off"
        );
        assert_eq!(features_off(&gaps), [Feature::Freeze]);
    }

    #[test]
    fn cgroup2_mounted_without_memory_and_no_v1_memory() {
        let files = Files::new(&[("/sys/fs/cgroup/cgroup.controllers", "cpu pids\n")]);
        let layout = CgroupLayout::from_mountinfo_with(V2, &files).unwrap();
        assert_eq!(layout.memory_hierarchy(), None);
        let gaps = Controllers::of(&layout).missing();
        assert_eq!(gaps.len(), 1);
        assert_eq!(
            gaps[0].explain,
            "memory controller not mounted (no v1 memory hierarchy, not in /sys/fs/cgroup/cgroup.controllers): offline memory limits are off"
        );
    }

    /// Hybrid, Yarn: the NodeManager made `yarn` in the cpu hierarchy only, so its memory
    /// cannot be limited; the cgroup2 mount has no controllers and no `yarn`, so freezing
    /// falls back to the v1 freezer, where `yarn` is.
    #[test]
    fn hybrid_v1_cgroup_missing_from_the_memory_hierarchy() {
        let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let files = Files::new(&[
            ("/sys/fs/cgroup/unified/cgroup.controllers", ""),
            ("/sys/fs/cgroup/cpu/yarn/cgroup.procs", ""),
            ("/sys/fs/cgroup/freezer/yarn/cgroup.procs", ""),
            ("/sys/fs/cgroup/pids/yarn/cgroup.procs", ""),
        ]);
        let layout = CgroupLayout::from_mountinfo_with(mountinfo, &files).unwrap();
        assert_eq!(
            layout.memory_hierarchy(),
            Some(crate::model::layout::MemoryHierarchy::V1(
                "/sys/fs/cgroup/memory".into()
            ))
        );
        let c = Controllers::of(&layout);
        assert_eq!(
            c.freezer,
            Placement::Unified("/sys/fs/cgroup/unified".into())
        );
        assert_eq!(
            c.freezer_v1.as_deref(),
            Some(Path::new("/sys/fs/cgroup/freezer"))
        );
        assert!(c.summary().ends_with(" freezer_v1=/sys/fs/cgroup/freezer"));
        let gaps = c.check_with(&files, "/yarn");
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_eq!(
            gaps[0].explain,
            "memory controller: no cgroup yarn in the v1 memory hierarchy (/sys/fs/cgroup/memory/yarn is missing): offline memory limits are off (have it created there, as in the other hierarchies)"
        );
        assert_eq!(
            gaps[0].cgroup.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/yarn"))
        );
        // A cgroup only the memory hierarchy has: no CPU quota, no freeze, no pids.
        let mut files = files;
        files.0.insert(
            "/sys/fs/cgroup/memory/spark/cgroup.procs".into(),
            String::new(),
        );
        let explains: Vec<String> = c
            .check_with(&files, "spark")
            .into_iter()
            .map(|g| g.explain)
            .collect();
        assert_eq!(
            explains,
            [
                "cpu controller: no cgroup spark in the v1 cpu hierarchy (/sys/fs/cgroup/cpu/spark is missing): offline CPU quota is off (have it created there, as in the other hierarchies)",
                "freezer: no cgroup spark in cgroup2 (/sys/fs/cgroup/unified/spark is missing) nor in a v1 freezer hierarchy: offline freeze is off",
                "pids controller: no cgroup spark in the v1 pids hierarchy (/sys/fs/cgroup/pids/spark is missing): no enforcer feature depends on it (have it created there, as in the other hierarchies)",
            ]
        );
    }

    #[test]
    fn gaps_round_trip_on_the_wire() {
        let (c, files) = v2_node("cpu\n");
        let gaps = c.check_with(&files, BESTEFFORT);
        let json = serde_json::to_string(&gaps).unwrap();
        assert!(
            json.contains(r#""controller":"memory","feature":"memory_limits""#),
            "{json}"
        );
        let back: Vec<Gap> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, gaps);
    }
}

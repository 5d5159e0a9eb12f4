//! Where each controller is on this host, and the gaps of a given cgroup.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    delegation::delegation_with,
    gap::Gap,
    kind::{Controller, Placement},
};
use crate::{
    host::{Host, RealHost},
    model::layout::CgroupLayout,
};

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
        self.check_with(&RealHost, rel)
    }

    /// [`check`](Self::check) through `files`; a cgroup exists when its `cgroup.procs` can be
    /// read (every cgroup of every hierarchy has one).
    pub fn check_with(&self, files: &dyn Host, rel: &str) -> Vec<Gap> {
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
        self.gaps_with(&RealHost, parents)
    }

    /// [`gaps`](Self::gaps) through `files`.
    pub fn gaps_with<'a>(
        &self,
        files: &dyn Host,
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

    fn exists_anywhere(&self, files: &dyn Host, rel: &str) -> bool {
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

//! Controllers missing or not delegated to the offline parents, checked again whenever the
//! parents change: at start-up the index is still empty, and kubelet creates
//! `kubepods-besteffort.slice` only with the first BestEffort pod, so a check made once at
//! start would miss exactly the gap that turns a feature off on that node.

use crate::{
    host::Host,
    model::controllers::{Controllers as ControllerSites, Gap},
};

pub struct ParentGaps {
    sites: ControllerSites,
    /// The parents the gaps were last computed for.
    checked: Option<Vec<String>>,
    gaps: Vec<Gap>,
}

impl ParentGaps {
    /// Starts from the controllers missing on the whole host (already said at start-up).
    pub fn new(sites: ControllerSites) -> ParentGaps {
        let gaps = sites.missing();
        ParentGaps {
            sites,
            checked: None,
            gaps,
        }
    }

    /// The gaps of the host and of `parents`, when the parents are not those checked last
    /// (`None`: nothing changed). Each gap not said before is said once, on one line.
    pub fn update<'a>(
        &mut self,
        host: &dyn Host,
        parents: impl Iterator<Item = &'a str> + Clone,
    ) -> Option<&[Gap]> {
        if self
            .checked
            .as_ref()
            .is_some_and(|c| c.iter().map(String::as_str).eq(parents.clone()))
        {
            return None;
        }
        let gaps = self.sites.gaps_with(host, parents.clone());
        for gap in gaps.iter().filter(|g| !self.gaps.contains(g)) {
            tracing::warn!("{}", gap.explain);
        }
        self.checked = Some(parents.map(String::from).collect());
        self.gaps = gaps;
        Some(&self.gaps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{host::fake::FakeHost, model::layout::CgroupLayout};

    /// A pure cgroup2 node whose `kubepods.slice` does not delegate memory: no gap until
    /// the BestEffort slice is a parent, then one line; the same parents again: no news.
    #[test]
    fn a_parent_that_appears_is_checked_and_said_once() {
        let be = "kubepods.slice/kubepods-besteffort.slice";
        let host = FakeHost::with(&[
            ("/sys/fs/cgroup/cgroup.controllers", "cpu io memory pids\n"),
            (
                "/sys/fs/cgroup/cgroup.subtree_control",
                "cpu io memory pids\n",
            ),
            ("/sys/fs/cgroup/kubepods.slice/cgroup.procs", ""),
            (
                "/sys/fs/cgroup/kubepods.slice/cgroup.subtree_control",
                "cpu pids\n",
            ),
            (&format!("/sys/fs/cgroup/{be}/cgroup.procs"), ""),
            (&format!("/sys/fs/cgroup/{be}/cgroup.freeze"), "0\n"),
        ]);
        let layout = CgroupLayout::from_mountinfo_with(
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            &host,
        )
        .unwrap();
        let mut gaps = ParentGaps::new(ControllerSites::of(&layout));
        assert_eq!(
            gaps.update(&host, std::iter::empty()).map(<[Gap]>::len),
            Some(0)
        );
        let found = gaps.update(&host, [be].into_iter()).unwrap().to_vec();
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0]
                .explain
                .contains("kubepods.slice/cgroup.subtree_control"),
            "{}",
            found[0].explain
        );
        assert!(gaps.update(&host, [be].into_iter()).is_none());
    }
}

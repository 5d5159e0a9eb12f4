use std::path::Path;

use super::*;
use crate::{host::fake::FakeHost, model::layout::CgroupLayout};

/// A node's cgroupfs as a map of file paths to contents.
fn node(files: &[(&str, &str)]) -> FakeHost {
    FakeHost::with(files)
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

fn v2_node(kubepods_subtree: &str) -> (Controllers, FakeHost) {
    let files = node(&[
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
    let layout = CgroupLayout::from_mountinfo_with(V1_NO_MEMORY, &node(&[])).unwrap();
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
    let files = node(&[("/sys/fs/cgroup/cgroup.subtree_control", "memory\n")]);
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
    let (c, files) = v2_node("cpu pids\n");
    let burstable = "kubepods.slice/kubepods-burstable.slice";
    files.set(format!("/sys/fs/cgroup/{burstable}/cgroup.procs"), "");
    files.set(format!("/sys/fs/cgroup/{burstable}/cgroup.freeze"), "0\n");
    let gaps = c.gaps_with(&files, [BESTEFFORT, burstable, "yarn"]);
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(features_off(&gaps), [Feature::MemoryLimits]);
    // On the pure v1 node the missing memory controller comes first, parents or not.
    let layout = CgroupLayout::from_mountinfo_with(V1_NO_MEMORY, &node(&[])).unwrap();
    let gaps = Controllers::of(&layout).gaps_with(&node(&[]), [BESTEFFORT]);
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
    let (c, files) = v2_node("cpu memory pids\n");
    files.remove(Path::new(&format!(
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
    let files = node(&[("/sys/fs/cgroup/cgroup.controllers", "cpu pids\n")]);
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
    let files = node(&[
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

    files.set("/sys/fs/cgroup/memory/spark/cgroup.procs", "");
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

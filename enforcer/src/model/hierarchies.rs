//! Which hierarchy id each cgroup hierarchy has, as the kernel numbers them
//! (`cgroup_root.hierarchy_id`, 0 for cgroup2): how a cgroup event from the kernel is told
//! apart between the CPU, memory and cgroup2 hierarchies. Read from `/proc/self/cgroup`,
//! whose lines are `hierarchy-id:controllers:path` for every hierarchy, named ones
//! included, on every kernel.

use std::collections::HashMap;

/// The hierarchy id of cgroup2.
pub const UNIFIED: u32 = 0;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HierarchyIds {
    /// v1 controller (or `name=...`) -> hierarchy id.
    by_controller: HashMap<String, u32>,
}

impl HierarchyIds {
    /// Parses `/proc/<pid>/cgroup`; lines that do not parse are skipped (the kernel's text,
    /// but a test may hand anything).
    pub fn parse(text: &str) -> HierarchyIds {
        let mut by_controller = HashMap::new();
        for line in text.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(id), Some(controllers)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Ok(id) = id.parse::<u32>() else { continue };
            if id == UNIFIED {
                continue;
            }
            for c in controllers.split(',').filter(|c| !c.is_empty()) {
                by_controller.insert(c.to_string(), id);
            }
        }
        HierarchyIds { by_controller }
    }

    pub fn read(host: &dyn crate::host::Host) -> HierarchyIds {
        host.read(std::path::Path::new("/proc/self/cgroup"))
            .map(|t| HierarchyIds::parse(&t))
            .unwrap_or_default()
    }

    /// The v1 hierarchy holding `controller`; None when it is in cgroup2 (or nowhere).
    pub fn v1(&self, controller: &str) -> Option<u32> {
        self.by_controller.get(controller).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_host_numbers_each_v1_hierarchy() {
        let ids = HierarchyIds::parse(
            "9:name=systemd:/\n4:memory:/a/b\n1:cpu,cpuacct:/\n0::/\ngarbage\nx:cpu:/\n",
        );
        assert_eq!(ids.v1("cpu"), Some(1));
        assert_eq!(ids.v1("cpuacct"), Some(1));
        assert_eq!(ids.v1("memory"), Some(4));
        assert_eq!(ids.v1("name=systemd"), Some(9));
        assert_eq!(ids.v1("io"), None);
    }

    #[test]
    fn pure_v2_host_has_no_v1_hierarchy() {
        let ids = HierarchyIds::parse("0::/system.slice/enforcer.service\n");
        assert_eq!(ids.v1("cpu"), None);
        assert_eq!(ids.v1("memory"), None);
    }
}

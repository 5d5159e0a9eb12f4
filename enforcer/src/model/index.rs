//! The live index `cgroup id -> path -> pod -> class`, refreshed from scans of the hierarchy
//! and from the container runtime's pod list.

use std::{collections::HashMap, sync::Arc};

use super::{
    Class, Priority,
    classify::RuleSet,
    layout::CgroupDir,
    pod::{PodRef, PodTable, pod_path},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupEntry {
    pub id: u64,
    /// Relative to the hierarchy root; "" is the root.
    pub path: Arc<str>,
    pub class: Class,
    pub priority: Option<Priority>,
    pub rule: Arc<str>,
    /// The pod (and container) this cgroup is of, when the runtime knows it.
    pub pod: Option<PodRef>,
}

impl CgroupEntry {
    fn classified(id: u64, path: Arc<str>, rules: &RuleSet, pods: &PodTable) -> CgroupEntry {
        let ctx = pods.lookup(&path);
        let c = rules.classify_with(&path, ctx.as_ref());
        let pod = ctx.as_ref().map(|ctx| PodRef::from_context(ctx, &path));
        CgroupEntry {
            id,
            path,
            class: c.class,
            priority: c.priority,
            rule: c.rule,
            pod,
        }
    }

    /// `namespace/name` of its pod, when known.
    pub fn pod_name(&self) -> Option<String> {
        self.pod.as_ref().map(|p| p.pod.full_name())
    }
}

/// What a refresh changed. A cgroup whose path changed (same id) is removed and added.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IndexDiff {
    pub added: Vec<u64>,
    pub removed: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct CgroupIndex {
    by_id: HashMap<u64, CgroupEntry>,
    /// Bumped by every change of an entry: what is derived from the whole index (the
    /// offline parents and units) is computed again only when it moves.
    version: u64,
}

impl CgroupIndex {
    pub fn new() -> CgroupIndex {
        CgroupIndex::default()
    }

    /// Replaces the content with a fresh scan. Entries whose id and path are unchanged are
    /// kept as they are: the regexes run only for new cgroups (a refresh runs every second
    /// over up to tens of thousands of cgroups).
    pub fn refresh(&mut self, dirs: Vec<CgroupDir>, rules: &RuleSet, pods: &PodTable) -> IndexDiff {
        let mut diff = IndexDiff::default();
        let mut next = HashMap::with_capacity(dirs.len());
        for dir in dirs {
            let entry = match self.by_id.remove(&dir.id) {
                Some(old) if *old.path == *dir.rel_path => old,
                old => {
                    if old.is_some() {
                        diff.removed.push(dir.id);
                    }
                    diff.added.push(dir.id);
                    CgroupEntry::classified(dir.id, Arc::from(dir.rel_path), rules, pods)
                }
            };
            next.insert(entry.id, entry);
        }
        diff.removed.extend(self.by_id.keys().copied());
        self.by_id = next;
        if !diff.added.is_empty() || !diff.removed.is_empty() {
            self.version += 1;
        }
        diff
    }

    /// A cgroup the kernel just created (or an event about one already known): classified
    /// and added. Returns false when the index already had it at that path. A known id at
    /// another path is a rename: the entry is classified again at its new path.
    pub fn insert(&mut self, id: u64, path: &str, rules: &RuleSet, pods: &PodTable) -> bool {
        if self.by_id.get(&id).is_some_and(|e| *e.path == *path) {
            return false;
        }
        let entry = CgroupEntry::classified(id, Arc::from(path), rules, pods);
        self.by_id.insert(id, entry);
        self.version += 1;
        true
    }

    /// A cgroup the kernel removed. Returns whether the index had it.
    pub fn remove(&mut self, id: u64) -> bool {
        let removed = self.by_id.remove(&id).is_some();
        if removed {
            self.version += 1;
        }
        // A node that had 10,000 cgroups for a while must not keep their table for good.
        if self.by_id.capacity() > 1024 && self.by_id.len() * 4 < self.by_id.capacity() {
            self.by_id.shrink_to(self.by_id.len() * 2);
        }
        removed
    }

    /// Applies new rules to every entry (after a configuration reload).
    pub fn reclassify(&mut self, rules: &RuleSet, pods: &PodTable) {
        self.version += 1;
        for entry in self.by_id.values_mut() {
            *entry = CgroupEntry::classified(entry.id, entry.path.clone(), rules, pods);
        }
    }

    /// Applies a new pod list: only the cgroups of kubelet's pod layout are classified again.
    /// Returns the ids whose class or priority changed.
    pub fn apply_pods(&mut self, rules: &RuleSet, pods: &PodTable) -> Vec<u64> {
        // Pod names and rules may change without a class changing: always a new version.
        self.version += 1;
        let mut changed = Vec::new();
        for entry in self.by_id.values_mut() {
            if pod_path(&entry.path).is_none() {
                continue;
            }
            let next = CgroupEntry::classified(entry.id, entry.path.clone(), rules, pods);
            if (next.class, next.priority) != (entry.class, entry.priority) {
                changed.push(entry.id);
            }
            *entry = next;
        }
        changed
    }

    /// Cgroups of kubelet's pod layout whose pod the runtime does not list (yet): a reason to
    /// ask the runtime again now rather than at the next interval.
    pub fn pods_unknown(&self) -> usize {
        self.by_id
            .values()
            .filter(|e| e.pod.is_none() && pod_path(&e.path).is_some())
            .count()
    }

    /// Changes whenever an entry does.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn get(&self, id: u64) -> Option<&CgroupEntry> {
        self.by_id.get(&id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &CgroupEntry> {
        self.by_id.values()
    }

    pub fn count_by_class(&self) -> [(Class, usize); 3] {
        Class::ALL.map(|class| {
            (
                class,
                self.by_id.values().filter(|e| e.class == class).count(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> PodTable {
        PodTable::new()
    }

    fn dir(path: &str, id: u64) -> CgroupDir {
        CgroupDir {
            rel_path: path.into(),
            id,
        }
    }

    #[test]
    fn refresh_reports_added_removed_and_renamed_cgroups() {
        let rules = RuleSet::defaults();
        let mut index = CgroupIndex::new();
        let diff = index.refresh(
            vec![dir("", 1), dir("yarn", 2), dir("yarn/container_1", 3)],
            &rules,
            &none(),
        );
        assert_eq!(diff.added.len(), 3);
        assert!(diff.removed.is_empty());
        assert_eq!(index.get(3).unwrap().class, Class::Offline);
        assert_eq!(index.get(3).unwrap().priority, Some(Priority::P3));

        let mut diff = index.refresh(
            vec![dir("", 1), dir("yarn", 2), dir("moved", 3), dir("new", 4)],
            &rules,
            &none(),
        );
        diff.added.sort();
        assert_eq!(diff.added, [3, 4]);
        assert_eq!(diff.removed, [3]);
        assert_eq!(index.get(3).unwrap().class, Class::System);
        let diff = index.refresh(vec![dir("", 1)], &rules, &none());
        assert!(diff.added.is_empty());
        let mut removed = diff.removed;
        removed.sort();
        assert_eq!(removed, [2, 3, 4]);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn unchanged_entries_keep_their_classification_until_reclassified() {
        let mut index = CgroupIndex::new();
        index.refresh(vec![dir("batch/job", 7)], &RuleSet::defaults(), &none());
        assert_eq!(index.get(7).unwrap().class, Class::System);
        let offline = RuleSet::new(vec![super::super::classify::Rule::path(
            "batch",
            regex::Regex::new("^batch/").unwrap(),
            Class::Offline,
            Some(Priority::Debug),
        )]);
        index.refresh(vec![dir("batch/job", 7)], &offline, &none());
        assert_eq!(
            index.get(7).unwrap().class,
            Class::System,
            "no regex run for known cgroups"
        );
        index.reclassify(&offline, &none());
        let e = index.get(7).unwrap();
        assert_eq!(
            (e.class, e.priority, &*e.rule),
            (Class::Offline, Some(Priority::Debug), "batch")
        );
        assert_eq!(
            index.count_by_class(),
            [(Class::Online, 0), (Class::Offline, 1), (Class::System, 0)]
        );
    }
}

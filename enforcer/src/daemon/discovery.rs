//! Keeping the live indexes true without walking the trees: the kernel programs report
//! every cgroup created, removed and renamed (`sampling::cgroups`), and this thread applies
//! each event to the index of its hierarchy (CPU, memory, cgroup2 for the network) as it
//! arrives. A full walk stays as the safety net, on this thread and never on the tick's:
//! at start, every `rescan_interval`, when the kernel lost events (its ring buffer was
//! full), when an event could not be read (a cut path, a rename that moved a subtree), and
//! when the tick saw a cgroup id no index knows.
//!
//! Without events (the programs' maps missing, a hierarchy whose event paths do not match
//! its mount), the walk runs at least every second, as before.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::Receiver,
    },
    time::{Duration, Instant},
};

use super::state::NodeState;
use crate::{
    model::{Class, index::CgroupIndex, layout::walk},
    sampling::cgroups::{CgroupChange, CgroupEvents},
};

/// Unknown cgroup ids still unknown after this many walks are gone for good (created and
/// removed between two walks); their time is counted as system.
const UNKNOWN_WALKS_BEFORE_FORGET: u32 = 2;
/// Walks asked for by the tick (unknown ids) are at least this far apart.
const NUDGED_WALK_GAP: Duration = Duration::from_secs(1);
/// Without usable events the walk is at least this frequent.
const WALK_WITHOUT_EVENTS: Duration = Duration::from_secs(1);
/// Removals after which, once events go quiet, the freed heap is returned to the kernel.
const TRIM_AFTER_REMOVALS: usize = 1000;
/// How long the thread sleeps on the ring buffer before it looks at its inbox and `stop`.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// Which index a hierarchy feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `NodeState::index`: the hierarchy CPU is charged to.
    Cpu,
    /// `NodeState::memory_index`: the memory hierarchy when it is another one.
    Memory,
    /// `NodeState::net.index`: cgroup2 when the CPU hierarchy is a v1 one.
    Net,
}

/// Whether a hierarchy's event paths are paths below our mount of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// Not checked yet: the first created cgroup that still exists settles it.
    Unverified,
    Verified,
    /// A path from the kernel named another directory (a mount of a subtree, a cgroup
    /// namespace): this hierarchy is walked, its events ignored.
    Unusable,
}

pub struct Hierarchy {
    pub which: Which,
    pub root: PathBuf,
    /// The kernel's id of the hierarchy (0 is cgroup2); None: its events cannot be told.
    pub kernel_id: Option<u32>,
    trust: Trust,
    /// A walk is owed (an unreadable event, a rename).
    walk_owed: bool,
}

impl Hierarchy {
    pub fn new(which: Which, root: PathBuf, kernel_id: Option<u32>) -> Hierarchy {
        Hierarchy {
            which,
            root,
            kernel_id,
            trust: Trust::Unverified,
            walk_owed: false,
        }
    }

    fn events_usable(&self) -> bool {
        self.kernel_id.is_some() && self.trust != Trust::Unusable
    }
}

pub struct Discovery {
    hierarchies: Vec<Hierarchy>,
    events: Option<CgroupEvents>,
    /// The safety net's interval.
    interval: Duration,
    last_walk: Option<Instant>,
    /// Unknown ids (from the tick) and how many walks have not found them.
    unknown_for: HashMap<u64, u32>,
    changes: Vec<CgroupChange>,
    /// Cgroups removed since the heap was last trimmed.
    removed_since_trim: usize,
}

impl Discovery {
    pub fn new(
        hierarchies: Vec<Hierarchy>,
        events: Option<CgroupEvents>,
        interval: Duration,
    ) -> Discovery {
        Discovery {
            hierarchies,
            events,
            interval,
            last_walk: None,
            unknown_for: HashMap::new(),
            changes: Vec::new(),
            removed_since_trim: 0,
        }
    }

    fn events_usable(&self) -> bool {
        self.events.is_some() && self.hierarchies.iter().all(Hierarchy::events_usable)
    }

    fn walk_interval(&self) -> Duration {
        if self.events_usable() {
            self.interval
        } else {
            self.interval.min(WALK_WITHOUT_EVENTS)
        }
    }

    /// The thread's loop: events as they come, walks when owed or due, until `stop`.
    pub fn run(
        mut self,
        state: &Mutex<NodeState>,
        unknown: &Receiver<Vec<u64>>,
        stop: &AtomicBool,
    ) {
        while !stop.load(Ordering::Relaxed) {
            let due_in = self.last_walk.map_or(Duration::ZERO, |t| {
                self.walk_interval().saturating_sub(t.elapsed())
            });
            let slice = due_in.min(WAIT_SLICE);
            match &self.events {
                Some(events) => {
                    if events.wait(slice) {
                        self.drain(state);
                    } else if self.removed_since_trim >= TRIM_AFTER_REMOVALS {
                        // Thousands of entries freed and the churn over: give the heap
                        // back (glibc keeps it), the daemon lives for weeks and a churn
                        // must not ratchet its RSS up.
                        self.removed_since_trim = 0;
                        #[cfg(target_env = "gnu")]
                        // SAFETY: malloc_trim has no preconditions.
                        unsafe {
                            libc::malloc_trim(0);
                        }
                    }
                }
                None => std::thread::sleep(slice),
            }
            let lost = self
                .events
                .as_mut()
                .map_or(0, |e| e.lost().unwrap_or_default());
            if lost > 0 {
                tracing::debug!(lost, "cgroup events lost (ring buffer full): walking");
                state.lock().unwrap().discovery.events_lost_total += lost;
                for h in &mut self.hierarchies {
                    h.walk_owed = true;
                }
            }
            let mut asked: Vec<u64> = Vec::new();
            while let Ok(ids) = unknown.try_recv() {
                asked.extend(ids);
            }
            let nudged = !asked.is_empty()
                && self
                    .last_walk
                    .is_none_or(|t| t.elapsed() >= NUDGED_WALK_GAP);
            let owed = self.hierarchies.iter().any(|h| h.walk_owed);
            let due = self
                .last_walk
                .is_none_or(|t| t.elapsed() >= self.walk_interval());
            if owed || due || nudged {
                self.walk_all(state);
                // Events raised during the walk are applied after it: each is idempotent,
                // so the index ends as the kernel has it whatever the order.
                self.drain(state);
                if nudged {
                    self.settle_unknown(state, asked);
                }
            }
        }
    }

    /// Walks every hierarchy (no lock held while walking) and replaces each index with
    /// what was found.
    pub fn walk_all(&mut self, state: &Mutex<NodeState>) {
        let started = Instant::now();
        self.last_walk = Some(started);
        for h in &mut self.hierarchies {
            h.walk_owed = false;
            let dirs = match walk(&h.root) {
                Ok(dirs) => dirs,
                Err(e) => {
                    tracing::error!("{}: cannot scan the cgroup tree: {e}", h.root.display());
                    continue;
                }
            };
            let mut guard = state.lock().unwrap();
            let st = &mut *guard;
            let (rules, pods) = (st.rules.clone(), st.pods.clone());
            let Some(index) = index_of(st, h.which) else {
                continue;
            };
            let diff = index.refresh(dirs, &rules, &pods);
            if !diff.added.is_empty() {
                st.index_generation += 1;
            }
            forget(st, h.which, &diff.removed);
            if !diff.added.is_empty() || !diff.removed.is_empty() {
                tracing::debug!(
                    hierarchy = %h.root.display(),
                    added = diff.added.len(),
                    removed = diff.removed.len(),
                    "cgroup index changed by a walk"
                );
            }
        }
        let usable = self.events_usable();
        let mut st = state.lock().unwrap();
        st.discovery.walks_total += 1;
        st.discovery.walk_seconds = started.elapsed().as_secs_f64();
        st.discovery.events = usable;
        // The surfaces' older names for the same figures.
        st.health.rescans_total = st.discovery.walks_total;
        st.health.rescan_seconds = st.discovery.walk_seconds;
    }

    /// Applies every queued event to its index.
    fn drain(&mut self, state: &Mutex<NodeState>) {
        let Some(events) = &mut self.events else {
            return;
        };
        self.changes.clear();
        let bad = events.drain(&mut self.changes);
        if self.changes.is_empty() && bad == 0 {
            return;
        }
        self.verify();
        let mut st = state.lock().unwrap();
        apply(&mut self.hierarchies, &mut st, &self.changes);
        drop(st);
        self.removed_since_trim += self
            .changes
            .iter()
            .filter(|c| matches!(c, CgroupChange::Removed { .. }))
            .count();
        if bad > 0 {
            for h in &mut self.hierarchies {
                h.walk_owed = true;
            }
        }
    }

    /// Checks, once per hierarchy, that the kernel's paths are paths below our mount: the
    /// first created cgroup that still exists must be the directory of that inode.
    fn verify(&mut self) {
        for change in &self.changes {
            let CgroupChange::Created {
                hierarchy,
                id,
                path,
                ..
            } = change
            else {
                continue;
            };
            for h in self
                .hierarchies
                .iter_mut()
                .filter(|h| h.kernel_id == Some(*hierarchy) && h.trust == Trust::Unverified)
            {
                match std::fs::metadata(h.root.join(path)) {
                    Ok(m) if m.ino() == *id => h.trust = Trust::Verified,
                    Ok(_) => {
                        tracing::warn!(
                            hierarchy = %h.root.display(),
                            "cgroup events name paths that are not below this mount (a mount of a subtree or a cgroup namespace): this hierarchy is walked every second instead"
                        );
                        h.trust = Trust::Unusable;
                        h.walk_owed = true;
                    }
                    // Gone already (or not yet visible): the next one settles it.
                    Err(_) => {}
                }
            }
        }
    }

    /// Ids the tick saw that no index has: after a walk, those still unknown twice are
    /// cgroups that came and went; their time is counted as system and their map entries
    /// dropped.
    fn settle_unknown(&mut self, state: &Mutex<NodeState>, asked: Vec<u64>) {
        let mut guard = state.lock().unwrap();
        let st = &mut *guard;
        let mut gone = Vec::new();
        for id in asked {
            if st.index.get(id).is_some() {
                self.unknown_for.remove(&id);
                continue;
            }
            let seen = self.unknown_for.entry(id).or_default();
            *seen += 1;
            if *seen >= UNKNOWN_WALKS_BEFORE_FORGET {
                self.unknown_for.remove(&id);
                gone.push(id);
            }
        }
        for &id in &gone {
            st.usage.forget(id, (Class::System, None));
        }
        st.forget.cpu.extend(gone);
        // Bounded: ids asked once and never again are dropped with the next walk's answer.
        if self.unknown_for.len() > 100_000 {
            self.unknown_for.clear();
        }
    }
}

/// Applies events to the index of their hierarchy (every index of it: memory and the
/// network may both be in cgroup2), under the caller's lock.
fn apply(hierarchies: &mut [Hierarchy], st: &mut NodeState, changes: &[CgroupChange]) {
    let (rules, pods) = (st.rules.clone(), st.pods.clone());
    let mut applied = 0u64;
    let mut added = false;
    for change in changes {
        for h in hierarchies
            .iter_mut()
            .filter(|h| h.kernel_id == Some(change.hierarchy()) && h.events_usable())
        {
            let which = h.which;
            let Some(index) = index_of(st, which) else {
                continue;
            };
            applied += 1;
            match change {
                CgroupChange::Created { id, path, .. } => {
                    added |= index.insert(*id, path, &rules, &pods);
                }
                CgroupChange::Removed { id, .. } => {
                    if index.remove(*id) {
                        forget(st, which, &[*id]);
                    }
                }
                CgroupChange::Renamed { id, path, .. } => {
                    index.insert(*id, path, &rules, &pods);
                    // Every descendant's path changed with it.
                    h.walk_owed = true;
                }
                CgroupChange::Unreadable { .. } => h.walk_owed = true,
            }
        }
    }
    if added {
        st.index_generation += 1;
    }
    st.discovery.events_total += applied;
}

fn index_of(st: &mut NodeState, which: Which) -> Option<&mut CgroupIndex> {
    match which {
        Which::Cpu => Some(&mut st.index),
        Which::Memory => st.memory_index.as_mut(),
        Which::Net => st.net.index.as_mut(),
    }
}

/// What removed ids leave behind: usage figures (dropped here) and map entries (queued for
/// the tick, which owns the samplers).
fn forget(st: &mut NodeState, which: Which, ids: &[u64]) {
    if ids.is_empty() {
        return;
    }
    let cpu_is_memory = st.memory_index.is_none();
    let cpu_is_net = st.net.index.is_none();
    let net = match which {
        Which::Cpu => {
            for &id in ids {
                st.usage.forget(id, (Class::System, None));
            }
            st.forget.cpu.extend_from_slice(ids);
            if cpu_is_memory {
                st.forget.reclaim.extend_from_slice(ids);
            }
            cpu_is_net
        }
        Which::Memory => {
            st.forget.reclaim.extend_from_slice(ids);
            false
        }
        Which::Net => true,
    };
    if net {
        for &id in ids {
            st.net.rx.forget(id, (Class::System, None));
            st.net.tx.forget(id, (Class::System, None));
        }
        st.forget.net.extend_from_slice(ids);
    }
}

/// Starts the discovery thread.
pub fn spawn(
    discovery: Discovery,
    state: Arc<Mutex<NodeState>>,
    unknown: Receiver<Vec<u64>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("enforcer-cgroups".into())
        .spawn(move || discovery.run(&state, &unknown, &stop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Class;

    const CPU: u32 = 1;
    const MEMORY: u32 = 4;

    fn created(hierarchy: u32, id: u64, path: &str) -> CgroupChange {
        CgroupChange::Created {
            hierarchy,
            id,
            path: path.into(),
        }
    }

    /// A hybrid node: CPU in v1 hierarchy 1, memory in v1 hierarchy 4, the network in
    /// cgroup2.
    fn hybrid() -> (Vec<Hierarchy>, NodeState) {
        let hierarchies = vec![
            Hierarchy::new(Which::Cpu, "/sys/fs/cgroup/cpu".into(), Some(CPU)),
            Hierarchy::new(Which::Memory, "/sys/fs/cgroup/memory".into(), Some(MEMORY)),
            Hierarchy::new(Which::Net, "/sys/fs/cgroup/unified".into(), Some(0)),
        ];
        (hierarchies, NodeState::for_tests(true, true))
    }

    #[test]
    fn an_event_lands_in_the_index_of_its_hierarchy_classified() {
        let (mut h, mut st) = hybrid();
        apply(
            &mut h,
            &mut st,
            &[
                created(CPU, 10, "yarn/container_1_01_000002"),
                created(MEMORY, 20, "yarn"),
                created(0, 30, "kubepods/besteffort"),
                created(7, 40, "cpuset-only"),
            ],
        );
        let e = st.index.get(10).expect("in the CPU index");
        assert_eq!(e.class, Class::Offline);
        assert_eq!(st.index.len(), 1, "only the CPU hierarchy's event");
        assert!(st.memory_index.as_ref().unwrap().get(20).is_some());
        assert!(st.net.index.as_ref().unwrap().get(30).is_some());
        assert_eq!(st.index_generation, 1);
        assert_eq!(
            st.discovery.events_total, 3,
            "the cpuset event is no index's"
        );
    }

    #[test]
    fn a_removal_queues_the_map_entries_of_its_hierarchy_only() {
        let (mut h, mut st) = hybrid();
        apply(
            &mut h,
            &mut st,
            &[created(CPU, 10, "a"), created(MEMORY, 10, "a")],
        );
        apply(
            &mut h,
            &mut st,
            &[CgroupChange::Removed {
                hierarchy: CPU,
                id: 10,
            }],
        );
        assert!(st.index.get(10).is_none());
        assert!(
            st.memory_index.as_ref().unwrap().get(10).is_some(),
            "the same inode number in another hierarchy is another cgroup"
        );
        assert_eq!(st.forget.cpu, vec![10]);
        assert!(st.forget.reclaim.is_empty() && st.forget.net.is_empty());
        // Removing what no index has queues nothing.
        apply(
            &mut h,
            &mut st,
            &[CgroupChange::Removed {
                hierarchy: CPU,
                id: 99,
            }],
        );
        assert_eq!(st.forget.cpu, vec![10]);
    }

    #[test]
    fn on_a_unified_node_one_removal_frees_every_map() {
        let mut h = vec![Hierarchy::new(Which::Cpu, "/sys/fs/cgroup".into(), Some(0))];
        let mut st = NodeState::for_tests(false, false);
        apply(&mut h, &mut st, &[created(0, 5, "kubepods.slice")]);
        apply(
            &mut h,
            &mut st,
            &[CgroupChange::Removed {
                hierarchy: 0,
                id: 5,
            }],
        );
        assert_eq!(st.forget.cpu, vec![5]);
        assert_eq!(st.forget.reclaim, vec![5]);
        assert_eq!(st.forget.net, vec![5]);
    }

    #[test]
    fn memory_and_network_both_in_cgroup2_both_hear_of_it() {
        let mut h = vec![
            Hierarchy::new(Which::Cpu, "/sys/fs/cgroup/cpu".into(), Some(CPU)),
            Hierarchy::new(Which::Memory, "/sys/fs/cgroup/unified".into(), Some(0)),
            Hierarchy::new(Which::Net, "/sys/fs/cgroup/unified".into(), Some(0)),
        ];
        let mut st = NodeState::for_tests(true, true);
        apply(&mut h, &mut st, &[created(0, 8, "yarn")]);
        assert!(st.memory_index.as_ref().unwrap().get(8).is_some());
        assert!(st.net.index.as_ref().unwrap().get(8).is_some());
    }

    #[test]
    fn a_rename_or_an_unreadable_event_owes_a_walk_of_that_hierarchy() {
        let (mut h, mut st) = hybrid();
        apply(&mut h, &mut st, &[created(CPU, 10, "old")]);
        apply(
            &mut h,
            &mut st,
            &[CgroupChange::Renamed {
                hierarchy: CPU,
                id: 10,
                path: "yarn".into(),
            }],
        );
        assert_eq!(&*st.index.get(10).unwrap().path, "yarn");
        assert!(h[0].walk_owed && !h[1].walk_owed);
        apply(
            &mut h,
            &mut st,
            &[CgroupChange::Unreadable { hierarchy: MEMORY }],
        );
        assert!(h[1].walk_owed);
    }

    #[test]
    fn an_unusable_or_unnumbered_hierarchy_ignores_events() {
        let (mut h, mut st) = hybrid();
        h[0].trust = Trust::Unusable;
        h[1].kernel_id = None;
        apply(
            &mut h,
            &mut st,
            &[created(CPU, 10, "a"), created(MEMORY, 11, "b")],
        );
        assert!(st.index.is_empty());
        assert!(st.memory_index.as_ref().unwrap().is_empty());
        assert_eq!(st.discovery.events_total, 0);
    }

    #[test]
    fn without_usable_events_the_walk_is_at_least_every_second() {
        let (h, _) = hybrid();
        let d = Discovery::new(h, None, Duration::from_secs(60));
        assert_eq!(d.walk_interval(), WALK_WITHOUT_EVENTS);
    }
}

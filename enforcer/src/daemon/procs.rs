//! The offline cgroups' processes for the isolation, read lazily: a cgroup again only when
//! its tasks ran, and handed out as the same shared list while nothing changed.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::host::{self, Host};

/// A cgroup that ran is read again at most this often: a process entering an offline
/// cgroup is isolated within this (plus a tick) once it runs, forks inherit at once.
pub const PROCS_REREAD: Duration = Duration::from_millis(300);

/// Which offline cgroups' processes the isolation reads, and the last answer of each. A
/// `cgroup.procs` read is a path walk and, on v1, a pid list built by the kernel: read for
/// every offline cgroup at every tick, 500 idle pods cost 40% of a core. A cgroup is read
/// when it is new, and again only when its tasks ran since (a process that never runs
/// allocates nothing and competes for nothing) and `PROCS_REREAD` has passed.
///
/// The list it hands out is shared and built again only when a cgroup came, went or
/// changed its processes: the isolation sees the same list (`Arc::ptr_eq`) on a quiet tick
/// and has nothing to compare.
#[derive(Debug, Default)]
pub struct ProcsReader {
    /// By cgroup id.
    seen: HashMap<u64, Seen>,
    listed: Arc<Vec<(String, Vec<i32>)>>,
    /// The (id, CPU time) pairs of the last call, in order: a tick where none moved is
    /// answered without a lookup.
    last: Vec<(u64, u64)>,
}

#[derive(Debug)]
struct Seen {
    ran_ns: u64,
    at: Instant,
    pids: Vec<i32>,
}

impl ProcsReader {
    /// The processes of every cgroup of `cgroups` (id, path, CPU time), read now or as last
    /// read; the same `Arc` as the last call when nothing changed.
    pub fn read(
        &mut self,
        host: &dyn Host,
        cpu_root: &Path,
        cgroups: &[(u64, Arc<str>, u64)],
        now: Instant,
    ) -> Arc<Vec<(String, Vec<i32>)>> {
        let same = self.last.len() == cgroups.len()
            && self
                .last
                .iter()
                .zip(cgroups)
                .all(|(&(id, ran), (i, _, r))| id == *i && ran == *r);
        if same {
            return self.listed.clone();
        }
        self.last.clear();
        self.last
            .extend(cgroups.iter().map(|(id, _, ran_ns)| (*id, *ran_ns)));
        let mut changed = cgroups.len() != self.seen.len();
        let mut deferred = false;
        for (id, rel, ran_ns) in cgroups {
            match self.seen.get_mut(id) {
                Some(s) if s.ran_ns == *ran_ns => {}
                Some(s) if now.duration_since(s.at) < PROCS_REREAD => deferred = true,
                Some(s) => {
                    let pids = host::procs(host, &cpu_root.join(&**rel));
                    (s.ran_ns, s.at) = (*ran_ns, now);
                    if pids != s.pids {
                        s.pids = pids;
                        changed = true;
                    }
                }
                None => {
                    let pids = host::procs(host, &cpu_root.join(&**rel));
                    self.seen.insert(
                        *id,
                        Seen {
                            ran_ns: *ran_ns,
                            at: now,
                            pids,
                        },
                    );
                    changed = true;
                }
            }
        }
        if deferred {
            // A cgroup that ran is read once the bound has passed, quiet or not.
            self.last.clear();
        }
        if changed {
            let ids: HashSet<u64> = cgroups.iter().map(|(id, _, _)| *id).collect();
            self.seen.retain(|id, _| ids.contains(id));
            self.listed = Arc::new(
                cgroups
                    .iter()
                    .map(|(id, rel, _)| (rel.to_string(), self.seen[id].pids.clone()))
                    .collect(),
            );
        }
        self.listed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    /// New cgroups are read at once; one that did not run is never read again; one that ran
    /// is read again once PROCS_REREAD has passed.
    #[test]
    fn only_cgroups_that_ran_are_read_again_and_not_more_often_than_the_bound() {
        let host = FakeHost::default();
        host.set("/cg/a/cgroup.procs", "1\n");
        host.set("/cg/b/cgroup.procs", "2\n");
        let root = Path::new("/cg");
        let mut r = ProcsReader::default();
        let t0 = Instant::now();
        let list = |a, b| vec![(1, Arc::from("a"), a), (2, Arc::from("b"), b)];
        let got = r.read(&host, root, &list(5, 5), t0);
        assert_eq!(*got, [("a".into(), vec![1]), ("b".into(), vec![2])]);
        host.set("/cg/a/cgroup.procs", "1\n3\n");
        host.set("/cg/b/cgroup.procs", "2\n4\n");
        // a ran, b did not; too soon for a: the very same list.
        let soon = t0 + PROCS_REREAD / 2;
        let again = r.read(&host, root, &list(9, 5), soon);
        assert!(Arc::ptr_eq(&got, &again), "nothing read: the same list");
        let later = t0 + PROCS_REREAD;
        let got = r.read(&host, root, &list(9, 5), later);
        assert_eq!(got[0].1, [1, 3], "a ran: read again");
        assert_eq!(got[1].1, [2], "b never ran: not read again");
        assert!(!Arc::ptr_eq(&got, &again), "a changed: a new list");
        // A cgroup gone is forgotten; one new is read at once.
        host.set("/cg/c/cgroup.procs", "7\n");
        let got = r.read(&host, root, &[(3, Arc::from("c"), 0)], later);
        assert_eq!(*got, [("c".into(), vec![7])]);
        // The same set, one cgroup swapped for another: the new one is read, the gone one
        // forgotten.
        host.set("/cg/d/cgroup.procs", "8\n");
        let got = r.read(&host, root, &[(4, Arc::from("d"), 0)], later);
        assert_eq!(*got, [("d".into(), vec![8])]);
    }
}

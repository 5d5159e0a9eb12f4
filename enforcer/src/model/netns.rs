//! The node's network namespaces and whose they are. A pod's macvlan lives in the pod's
//! namespace; the namespace belongs to the processes inside it (`/proc/PID/ns/net`), and
//! those processes to cgroups, which the classification rules name online or offline.
//!
//! A pod sandbox's namespace is its pod's, whatever process enters it (an operator's
//! `nsenter -n -t PID tcpdump` does not lift the pod's shaping): the runtime says which
//! namespace is whose. Where no runtime knows the namespace (Yarn containers, a node without
//! CRI), a census decides: a namespace counts as offline only when every process sampled in
//! it is in an offline cgroup, and one online process is enough to keep enforcer's hands off
//! its interfaces.

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{
    Class, Priority,
    classify::RuleSet,
    pod::{PodTable, pod_path},
};

/// Processes read per namespace to decide whose it is.
const PIDS_SAMPLED: usize = 32;

/// Which line of `/proc/PID/cgroup` names a process's cgroup in the hierarchy the index
/// uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLine {
    /// The cgroup2 line (`0::/path`).
    Unified,
    /// The v1 hierarchy holding this controller (`N:cpu,cpuacct:/path`).
    V1(String),
}

/// The cgroup path (relative, no leading `/`) of `line` in a `/proc/PID/cgroup` text.
pub fn cgroup_path(text: &str, line: &CgroupLine) -> Option<String> {
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match line {
            CgroupLine::Unified => controllers.is_empty(),
            CgroupLine::V1(c) => controllers.split(',').any(|x| x == c),
        };
        hit.then(|| path.trim_start_matches('/').to_string())
    })
}

/// The longest common path prefix, by whole components.
pub fn common_prefix<'a>(paths: impl IntoIterator<Item = &'a str>) -> String {
    let mut prefix: Option<Vec<&str>> = None;
    for p in paths {
        let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
        prefix = Some(match prefix {
            None => parts,
            Some(pre) => pre
                .iter()
                .zip(&parts)
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| *a)
                .collect(),
        });
    }
    prefix.unwrap_or_default().join("/")
}

/// A network namespace other than the host's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// The namespace's inode (`stat -L /proc/PID/ns/net`).
    pub inode: u64,
    /// A path that enters it (`/proc/PID/ns/net` of one of its processes).
    pub path: PathBuf,
    /// The cgroup common to the processes sampled (a pod's cgroup).
    pub owner: String,
    pub class: Class,
    pub priority: Option<Priority>,
    pub processes: usize,
}

/// Decides whose a namespace is: its pod's when the runtime names it the pod's sandbox
/// namespace (and one sampled member is in that pod's cgroup), else from its members'
/// cgroup paths.
pub fn owner_of(
    inode: u64,
    paths: &[String],
    rules: &RuleSet,
    pods: &PodTable,
) -> (String, Class, Option<Priority>) {
    if let Some(pod) = pods.by_netns(inode) {
        let cgroup = paths.iter().find_map(|p| {
            pod_path(p)
                .filter(|at| at.uid == pod.uid)
                .map(|at| at.pod_cgroup.to_string())
        });
        if let Some(cgroup) = cgroup {
            let c = rules.classify_in(&cgroup, pods);
            return (cgroup, c.class, c.priority);
        }
    }
    let owner = common_prefix(paths.iter().map(String::as_str));
    let class_of = |p: &str| rules.classify_in(p, pods).class;
    let all_offline = !paths.is_empty() && paths.iter().all(|p| class_of(p) == Class::Offline);
    let c = rules.classify_in(&owner, pods);
    if all_offline {
        (owner, Class::Offline, c.priority)
    } else if paths.iter().any(|p| class_of(p) == Class::Online) {
        (owner, Class::Online, None)
    } else {
        (owner, Class::System, None)
    }
}

/// The inode of a namespace file.
pub fn inode(path: &Path) -> std::io::Result<u64> {
    std::fs::metadata(path).map(|m| m.ino())
}

/// Finds every network namespace that has a process in it, with its owner.
///
/// A process's namespace is read once (`readlink /proc/PID/ns/net`) and remembered for as
/// long as the pid is listed in /proc: on a node with thousands of processes a scan is then
/// one directory listing plus the new processes, not a system call per process per scan.
/// Pod processes do not change namespace; one that `setns`es elsewhere is seen in its
/// first namespace until it exits (its pid cannot be reused while it is listed).
#[derive(Debug, Default)]
pub struct Scanner {
    known: std::collections::HashMap<i32, u64>,
}

/// The network namespace inode of process `pid` under `proc_root` (`/proc`).
pub fn netns_of(proc_root: &Path, pid: i32) -> Option<u64> {
    // `net:[4026531840]`: the inode, without a stat.
    let link = std::fs::read_link(proc_root.join(pid.to_string()).join("ns/net")).ok()?;
    link.to_str()?
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

impl Scanner {
    /// Every namespace except `host_inode`. Processes that vanish while being read are
    /// skipped.
    pub fn scan(
        &mut self,
        proc_root: &Path,
        host_inode: u64,
        line: &CgroupLine,
        rules: &RuleSet,
        pods: &PodTable,
    ) -> Vec<Namespace> {
        let Ok(entries) = std::fs::read_dir(proc_root) else {
            return Vec::new();
        };
        let listed: Vec<i32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        let mut known = std::collections::HashMap::with_capacity(listed.len());
        for pid in listed {
            let ns = match self.known.get(&pid) {
                Some(&ns) => Some(ns),
                None => netns_of(proc_root, pid),
            };
            if let Some(ns) = ns {
                known.insert(pid, ns);
            }
        }
        self.known = known;
        let mut members: BTreeMap<u64, Vec<i32>> = BTreeMap::new();
        for (&pid, &ino) in &self.known {
            if ino != host_inode {
                members.entry(ino).or_default().push(pid);
            }
        }
        members
            .into_iter()
            .filter_map(|(ino, mut pids)| {
                pids.sort_unstable();
                let mut paths = Vec::new();
                let mut entry_pid = None;
                for &pid in pids.iter().take(PIDS_SAMPLED) {
                    let dir = proc_root.join(pid.to_string());
                    if let Some(p) = std::fs::read_to_string(dir.join("cgroup"))
                        .ok()
                        .and_then(|t| cgroup_path(&t, line))
                    {
                        paths.push(p);
                        entry_pid.get_or_insert(pid);
                    }
                }
                let pid = entry_pid?;
                let (owner, class, priority) = owner_of(ino, &paths, rules, pods);
                Some(Namespace {
                    inode: ino,
                    path: proc_root.join(pid.to_string()).join("ns/net"),
                    owner,
                    class,
                    priority,
                    processes: pids.len(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_CGROUP: &str = "12:memory:/kubepods.slice/pod1\n\
        4:cpu,cpuacct:/kubepods.slice/kubepods-besteffort.slice/pod1/c1\n\
        0::/kubepods.slice/kubepods-besteffort.slice/pod1/c1\n";

    #[test]
    fn the_right_line_of_proc_cgroup_is_read() {
        assert_eq!(
            cgroup_path(PROC_CGROUP, &CgroupLine::V1("cpu".into())).as_deref(),
            Some("kubepods.slice/kubepods-besteffort.slice/pod1/c1")
        );
        assert_eq!(
            cgroup_path(PROC_CGROUP, &CgroupLine::V1("memory".into())).as_deref(),
            Some("kubepods.slice/pod1")
        );
        assert!(cgroup_path(PROC_CGROUP, &CgroupLine::Unified).is_some());
        assert_eq!(
            cgroup_path("1:name=systemd:/x\n", &CgroupLine::Unified),
            None
        );
    }

    #[test]
    fn the_owner_is_the_common_cgroup_of_the_members() {
        assert_eq!(common_prefix(["a/b/c", "a/b/d", "a/b"]), "a/b");
        assert_eq!(common_prefix(["a/b", "x"]), "");
        let rules = RuleSet::defaults();
        let none = PodTable::new();
        let pod = "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice";
        let (owner, class, _) = owner_of(
            1,
            &[format!("{pod}/pause"), format!("{pod}/app")],
            &rules,
            &none,
        );
        assert_eq!((owner.as_str(), class), (pod, Class::Offline));
    }

    #[test]
    fn one_online_member_keeps_a_namespace_online() {
        let rules = RuleSet::defaults();
        let none = PodTable::new();
        let offline = "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/c";
        let online = "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2.slice/c";
        let (_, class, _) = owner_of(1, &[offline.into(), online.into()], &rules, &none);
        assert_eq!(class, Class::Online);
        let (_, class, _) = owner_of(
            1,
            &[offline.into(), "system.slice/sshd.service".into()],
            &rules,
            &none,
        );
        assert_eq!(class, Class::System, "not all offline: not shaped");
        assert_eq!(owner_of(1, &[], &rules, &none).1, Class::System);
    }

    /// A process of the host entering an offline pod's sandbox namespace (an operator's
    /// `nsenter`) leaves the namespace the pod's: the runtime says whose it is.
    #[test]
    fn a_sandbox_namespace_stays_its_pods_whoever_enters_it() {
        use crate::model::pod::{ContainerMeta, Pod};
        let rules = RuleSet::defaults();
        let uid = "0a1b";
        let pod = format!("kubepods/besteffort/pod{uid}");
        let mut pods = PodTable::new();
        pods.replace(vec![Pod {
            uid: uid.into(),
            namespace: "spark".into(),
            name: "exec-1".into(),
            sandbox_id: "s".into(),
            ready: true,
            labels: [("queue".to_string(), "root.P1".to_string())].into(),
            annotations: Default::default(),
            containers: vec![ContainerMeta {
                id: "c".into(),
                name: "executor".into(),
                running: true,
            }],
            netns: Some(7),
            created_at: 0,
        }]);
        let members = [format!("{pod}/s"), "system.slice/sshd.service".to_string()];
        let (owner, class, priority) = owner_of(7, &members, &rules, &pods);
        assert_eq!(
            (owner.as_str(), class, priority),
            (pod.as_str(), Class::Offline, Some(Priority::P1))
        );
        // Another namespace with the same members: the census, which an online or system
        // process keeps from being offline.
        assert_eq!(owner_of(8, &members, &rules, &pods).1, Class::System);
    }

    #[test]
    fn scanning_this_host_finds_no_namespace_twice() {
        let host = inode(Path::new("/proc/self/ns/net")).unwrap();
        let rules = RuleSet::defaults();
        let none = PodTable::new();
        let mut scanner = Scanner::default();
        let found = scanner.scan(
            Path::new("/proc"),
            host,
            &CgroupLine::Unified,
            &rules,
            &none,
        );
        // The second scan reads only new processes and finds the same namespaces.
        let again = scanner.scan(
            Path::new("/proc"),
            host,
            &CgroupLine::Unified,
            &rules,
            &none,
        );
        assert_eq!(
            found.iter().map(|n| n.inode).collect::<Vec<_>>(),
            again.iter().map(|n| n.inode).collect::<Vec<_>>()
        );
        let mut inodes: Vec<u64> = found.iter().map(|n| n.inode).collect();
        inodes.dedup();
        assert_eq!(inodes.len(), found.len());
        assert!(found.iter().all(|n| n.inode != host && n.path.exists()));
    }
}

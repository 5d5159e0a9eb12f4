//! Cgroup layout discovery: which hierarchies are mounted where (v1, v2 or hybrid hosts,
//! SPEC §1), read from mountinfo, never assumed; and a fast walk of one hierarchy.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::Serialize;
use thiserror::Error;

use crate::host::{Host, RealHost};

const MOUNTINFO: &str = "/proc/self/mountinfo";

#[derive(Debug, Error)]
pub enum LayoutError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("no cgroup filesystem mounted (read {0})")]
    NoCgroups(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LayoutMode {
    V1,
    V2,
    Hybrid,
}

impl LayoutMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LayoutMode::V1 => "v1",
            LayoutMode::V2 => "v2",
            LayoutMode::Hybrid => "hybrid",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct V1Hierarchy {
    pub mount_point: PathBuf,
    pub controllers: Vec<String>,
    /// `name=systemd` style named hierarchies carry no controller.
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupLayout {
    pub mode: LayoutMode,
    pub v1: Vec<V1Hierarchy>,
    pub unified: Option<PathBuf>,
    pub unified_controllers: Vec<String>,
}

/// Where CPU time is accounted and limited on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuHierarchy {
    Unified(PathBuf),
    V1 {
        cpu: PathBuf,
        cpuacct: Option<PathBuf>,
    },
}

impl CpuHierarchy {
    pub fn root(&self) -> &Path {
        match self {
            CpuHierarchy::Unified(p) => p,
            CpuHierarchy::V1 { cpu, .. } => cpu,
        }
    }
}

/// Where memory is accounted and limited on this host. There may be none: a pure v1 host
/// whose kernel cannot mount the v1 memory controller (6.12 and later without
/// `CONFIG_MEMCG_V1`) and has no cgroup2 mounted limits no memory at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryHierarchy {
    /// cgroup2, with `memory` in its root's `cgroup.controllers`.
    Unified(PathBuf),
    /// The v1 hierarchy holding `memory`.
    V1(PathBuf),
}

impl MemoryHierarchy {
    pub fn root(&self) -> &Path {
        match self {
            MemoryHierarchy::Unified(p) | MemoryHierarchy::V1(p) => p,
        }
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`). An
/// escape is of one byte, `\000` to `\377`; anything else is kept as it is.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && (b'0'..=b'3').contains(&bytes[i + 1])
            && bytes[i + 2..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl CgroupLayout {
    pub fn discover() -> Result<CgroupLayout, LayoutError> {
        let text = std::fs::read_to_string(MOUNTINFO).map_err(|source| LayoutError::Read {
            path: MOUNTINFO.into(),
            source,
        })?;
        Self::from_mountinfo(&text)
    }

    /// Parses mountinfo text; reads `cgroup.controllers` of the cgroup2 mount, if any, from
    /// the real filesystem.
    pub fn from_mountinfo(text: &str) -> Result<CgroupLayout, LayoutError> {
        Self::from_mountinfo_with(text, &RealHost)
    }

    /// [`from_mountinfo`](Self::from_mountinfo), reading `cgroup.controllers` through `files`.
    pub fn from_mountinfo_with(text: &str, files: &dyn Host) -> Result<CgroupLayout, LayoutError> {
        let mut v1: Vec<V1Hierarchy> = Vec::new();
        let mut unified: Option<PathBuf> = None;
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split_whitespace().collect();
            let right: Vec<&str> = right.split_whitespace().collect();
            if left.len() < 5 || right.len() < 3 {
                continue;
            }
            // A bind mount of a subtree (root field other than "/") is not the hierarchy.
            if left[3] != "/" {
                continue;
            }
            let mount_point = PathBuf::from(unescape(left[4]));
            // The kernel writes absolute paths without NUL; a line with another is not a
            // mount (a relative one would be taken from the daemon's working directory).
            if !mount_point.is_absolute() || mount_point.as_os_str().as_encoded_bytes().contains(&0)
            {
                continue;
            }
            match right[0] {
                "cgroup2" => {
                    unified.get_or_insert(mount_point);
                }
                "cgroup" => {
                    let mut controllers = Vec::new();
                    let mut name = None;
                    for opt in right[2].split(',') {
                        match opt {
                            "rw" | "ro" | "" => {}
                            o if o.starts_with("name=") => name = Some(o[5..].to_string()),
                            o if o.contains('=') => {}
                            "noprefix" | "clone_children" | "xattr" | "cpuset_v2_mode" => {}
                            o => controllers.push(o.to_string()),
                        }
                    }
                    let duplicate = v1
                        .iter()
                        .any(|h| h.controllers == controllers && h.name == name);
                    if !duplicate {
                        v1.push(V1Hierarchy {
                            mount_point,
                            controllers,
                            name,
                        });
                    }
                }
                _ => {}
            }
        }
        let unified_controllers = unified
            .as_ref()
            .and_then(|p| files.read(&p.join("cgroup.controllers")).ok())
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let mode = match (v1.is_empty(), unified.is_some()) {
            (true, true) => LayoutMode::V2,
            (false, false) => LayoutMode::V1,
            (false, true) => LayoutMode::Hybrid,
            (true, false) => return Err(LayoutError::NoCgroups(MOUNTINFO.into())),
        };
        Ok(CgroupLayout {
            mode,
            v1,
            unified,
            unified_controllers,
        })
    }

    pub fn v1_mount(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.mount_point.as_path())
    }

    pub fn unified_mount(&self) -> Option<&Path> {
        self.unified.as_deref()
    }

    /// Where the cpu controller lives: cgroup2 when it is enabled there, else the v1
    /// hierarchy holding `cpu` (with the one holding `cpuacct`, possibly the same mount).
    pub fn cpu_hierarchy(&self) -> Option<CpuHierarchy> {
        if let Some(u) = &self.unified
            && self.unified_controllers.iter().any(|c| c == "cpu")
        {
            return Some(CpuHierarchy::Unified(u.clone()));
        }
        self.v1_mount("cpu").map(|cpu| CpuHierarchy::V1 {
            cpu: cpu.to_path_buf(),
            cpuacct: self.v1_mount("cpuacct").map(Path::to_path_buf),
        })
    }

    /// Where the memory controller lives: cgroup2 when it is enabled there, else the v1
    /// hierarchy holding `memory`, else nowhere (`None`: no memory limit can be set, and
    /// reclaim can only be charged to cgroup2's default hierarchy).
    pub fn memory_hierarchy(&self) -> Option<MemoryHierarchy> {
        if let Some(u) = &self.unified
            && self.unified_controllers.iter().any(|c| c == "memory")
        {
            return Some(MemoryHierarchy::Unified(u.clone()));
        }
        self.v1_mount("memory")
            .map(|m| MemoryHierarchy::V1(m.to_path_buf()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KubeletDriver {
    Systemd,
    Cgroupfs,
    None,
}

/// Which cgroup driver the kubelet uses, from the top of a hierarchy.
pub fn detect_driver(hierarchy_root: &Path) -> KubeletDriver {
    if hierarchy_root.join("kubepods.slice").is_dir() {
        KubeletDriver::Systemd
    } else if hierarchy_root.join("kubepods").is_dir() {
        KubeletDriver::Cgroupfs
    } else {
        KubeletDriver::None
    }
}

/// One cgroup found by [`walk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDir {
    /// Relative to the hierarchy root, no leading slash; "" for the root itself.
    pub rel_path: String,
    /// The directory's inode number, which on cgroupfs is the kernel's cgroup id.
    pub id: u64,
}

/// Every cgroup under `root`, root included. Iterative; directories that vanish mid-walk are
/// skipped (cgroups come and go all the time on a busy node).
pub fn walk(root: &Path) -> std::io::Result<Vec<CgroupDir>> {
    let mut out = vec![CgroupDir {
        rel_path: String::new(),
        id: std::fs::metadata(root)?.ino(),
    }];
    let mut pending: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if dir == root => return Err(e),
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            // file_type() comes from the dirent: no stat for the thousands of plain files.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let child_rel = if rel.is_empty() {
                name.into_owned()
            } else {
                format!("{rel}/{name}")
            };
            // DirEntry::ino is the dirent's inode number: the cgroup id, without a stat.
            out.push(CgroupDir {
                rel_path: child_rel.clone(),
                id: std::os::unix::fs::DirEntryExt::ino(&entry),
            });
            pending.push((entry.path(), child_rel));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /nonexistent/unified rw,relatime - cgroup2 cgroup2 rw
";

    const CENTOS7: &str = "\
25 18 0:21 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:22 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpuacct,cpu
30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
90 29 0:25 /kubepods /var/lib/kubelet/bind rw - cgroup cgroup rw,cpuacct,cpu
";

    #[test]
    fn centos7_v1_with_comounted_cpu_cpuacct() {
        let l = CgroupLayout::from_mountinfo(CENTOS7).unwrap();
        assert_eq!(l.mode, LayoutMode::V1);
        let cpu = Path::new("/sys/fs/cgroup/cpu,cpuacct");
        assert_eq!(l.v1_mount("cpu"), Some(cpu));
        assert_eq!(l.v1_mount("cpuacct"), Some(cpu));
        assert_eq!(
            l.cpu_hierarchy(),
            Some(CpuHierarchy::V1 {
                cpu: cpu.into(),
                cpuacct: Some(cpu.into())
            })
        );
        // The named systemd hierarchy is not a controller; the bind mount is ignored.
        assert_eq!(l.v1.len(), 4);
        assert_eq!(l.v1[0].name.as_deref(), Some("systemd"));
        assert!(l.v1[0].controllers.is_empty());
    }

    #[test]
    fn hybrid_with_controllerless_cgroup2() {
        let l = CgroupLayout::from_mountinfo(HYBRID).unwrap();
        assert_eq!(l.mode, LayoutMode::Hybrid);
        assert_eq!(l.unified_mount(), Some(Path::new("/nonexistent/unified")));
        assert!(l.unified_controllers.is_empty());
        assert_eq!(
            l.cpu_hierarchy().unwrap().root(),
            Path::new("/sys/fs/cgroup/cpu")
        );
        assert_eq!(
            l.v1_mount("cpuacct"),
            Some(Path::new("/sys/fs/cgroup/cpuacct"))
        );
    }

    #[test]
    fn pure_v2_reads_its_controllers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let escaped = dir.path().display().to_string().replace(' ', "\\040");
        let text = format!("30 23 0:26 / {escaped} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
        let l = CgroupLayout::from_mountinfo(&text).unwrap();
        assert_eq!(l.mode, LayoutMode::V2);
        assert_eq!(
            l.unified_controllers,
            ["cpuset", "cpu", "io", "memory", "pids"]
        );
        assert_eq!(
            l.cpu_hierarchy(),
            Some(CpuHierarchy::Unified(dir.path().into()))
        );
        assert_eq!(l.v1_mount("cpu"), None);
    }

    #[test]
    fn memory_hierarchy_is_cgroup2_v1_or_none() {
        let none = FakeHost::default();
        let l = CgroupLayout::from_mountinfo_with(CENTOS7, &none).unwrap();
        assert_eq!(
            l.memory_hierarchy(),
            Some(MemoryHierarchy::V1("/sys/fs/cgroup/memory".into()))
        );
        // Pure v1 on 6.12+ without CONFIG_MEMCG_V1: no memory line, no cgroup2. Not
        // "unified" by default: nowhere.
        let no_memory: String = CENTOS7
            .lines()
            .filter(|l| !l.ends_with("rw,memory"))
            .map(|l| format!("{l}\n"))
            .collect();
        let l = CgroupLayout::from_mountinfo_with(&no_memory, &none).unwrap();
        assert_eq!(l.mode, LayoutMode::V1);
        assert_eq!(l.unified_mount(), None);
        assert_eq!(l.memory_hierarchy(), None);
        // cgroup2 with memory enabled at its root, read through the seam.
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let files = FakeHost::with(&[("/sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n")]);
        let l = CgroupLayout::from_mountinfo_with(v2, &files).unwrap();
        let m = l.memory_hierarchy().unwrap();
        assert_eq!(m, MemoryHierarchy::Unified("/sys/fs/cgroup".into()));
        assert_eq!(m.root(), Path::new("/sys/fs/cgroup"));
        // The hybrid fixture: cgroup2 without controllers, memory on v1.
        let l = CgroupLayout::from_mountinfo_with(HYBRID, &none).unwrap();
        assert_eq!(
            l.memory_hierarchy(),
            Some(MemoryHierarchy::V1("/sys/fs/cgroup/memory".into()))
        );
    }

    #[test]
    fn no_cgroups_is_an_error_and_escapes_are_undone() {
        let err = CgroupLayout::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/vda rw\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no cgroup filesystem mounted (read /proc/self/mountinfo)"
        );
        assert_eq!(unescape(r"/a\040b\134c"), r"/a b\c");
    }

    #[test]
    fn escapes_past_a_byte_are_kept_as_they_are() {
        // `\777` overflowed the byte it was decoded into: a panic with overflow checks, a
        // wrong byte without.
        assert_eq!(unescape(r"/a\777\400b\377"), "/a\\777\\400b\u{fffd}");
        assert_eq!(unescape(r"/x\04"), r"/x\04");
    }

    #[test]
    fn mount_points_that_are_not_absolute_paths_are_no_mounts() {
        // The fuzzer's first find: `\0sys/fs/cgroup/...` was taken as a hierarchy.
        let text = "\
32 31 0:29 / sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/nul\0byte rw - cgroup cgroup rw,memory
34 31 0:31 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";
        let l = CgroupLayout::from_mountinfo(text).unwrap();
        assert_eq!(l.v1.len(), 1);
        assert_eq!(l.v1[0].mount_point, Path::new("/sys/fs/cgroup/pids"));
        let err = CgroupLayout::from_mountinfo("32 31 0:29 / cpu rw - cgroup cgroup rw,cpu\n");
        assert!(err.is_err());
    }

    #[test]
    fn discovers_this_hosts_layout() {
        let l = CgroupLayout::discover().unwrap();
        assert!(l.cpu_hierarchy().is_some(), "{l:?}");
    }

    /// Builds a host's cgroup tree in a temp dir: one directory per mount point holding
    /// a kubelet layout, and the mountinfo lines that describe it.
    fn host_tree(mounts: &[(&str, &str, &str)], pods: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let mut mountinfo = String::new();
        for (i, (name, fstype, opts)) in mounts.iter().enumerate() {
            let mount = dir.path().join(name);
            std::fs::create_dir_all(mount.join(pods)).unwrap();
            if *fstype == "cgroup2" {
                std::fs::write(mount.join("cgroup.controllers"), opts).unwrap();
            }
            let super_opts = if *fstype == "cgroup2" { "rw" } else { opts };
            mountinfo.push_str(&format!(
                "{} 1 0:{i} / {} rw,relatime - {fstype} {fstype} {super_opts}\n",
                30 + i,
                mount.display()
            ));
        }
        (dir, mountinfo)
    }

    fn pod_paths(root: &Path) -> Vec<String> {
        let mut found: Vec<String> = walk(root)
            .unwrap()
            .into_iter()
            .map(|d| d.rel_path)
            .collect();
        found.sort();
        found
    }

    #[test]
    fn v1_tree_in_a_temp_dir_with_the_cgroupfs_driver() {
        let pods = "kubepods/besteffort/pod1/ctr";
        let (dir, mountinfo) = host_tree(
            &[
                ("cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
                ("memory", "cgroup", "rw,memory"),
            ],
            pods,
        );
        let l = CgroupLayout::from_mountinfo(&mountinfo).unwrap();
        assert_eq!(l.mode, LayoutMode::V1);
        let root = l.cpu_hierarchy().unwrap().root().to_path_buf();
        assert_eq!(root, dir.path().join("cpu,cpuacct"));
        assert_eq!(detect_driver(&root), KubeletDriver::Cgroupfs);
        assert_eq!(
            pod_paths(&root),
            [
                "",
                "kubepods",
                "kubepods/besteffort",
                "kubepods/besteffort/pod1",
                pods
            ]
        );
        assert_eq!(
            l.v1_mount("memory"),
            Some(dir.path().join("memory").as_path())
        );
    }

    #[test]
    fn v2_tree_in_a_temp_dir_with_the_systemd_driver() {
        let pods = "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2.slice";
        let (dir, mountinfo) =
            host_tree(&[("unified", "cgroup2", "cpuset cpu io memory pids")], pods);
        let l = CgroupLayout::from_mountinfo(&mountinfo).unwrap();
        assert_eq!(l.mode, LayoutMode::V2);
        let root = dir.path().join("unified");
        assert_eq!(l.cpu_hierarchy(), Some(CpuHierarchy::Unified(root.clone())));
        assert_eq!(detect_driver(&root), KubeletDriver::Systemd);
        assert_eq!(pod_paths(&root).len(), 4);
    }

    #[test]
    fn hybrid_tree_in_a_temp_dir_charges_the_v1_cpu_hierarchy() {
        let pods = "kubepods.slice/kubepods-besteffort.slice";
        let (dir, mountinfo) = host_tree(
            &[
                ("cpu", "cgroup", "rw,cpu"),
                ("cpuacct", "cgroup", "rw,cpuacct"),
                ("unified", "cgroup2", ""),
            ],
            pods,
        );
        let l = CgroupLayout::from_mountinfo(&mountinfo).unwrap();
        assert_eq!(l.mode, LayoutMode::Hybrid);
        assert!(l.unified_controllers.is_empty());
        assert_eq!(
            l.cpu_hierarchy(),
            Some(CpuHierarchy::V1 {
                cpu: dir.path().join("cpu"),
                cpuacct: Some(dir.path().join("cpuacct")),
            })
        );
        // With the cpu controller enabled on cgroup2, the unified hierarchy wins.
        std::fs::write(dir.path().join("unified/cgroup.controllers"), "cpu memory").unwrap();
        let l = CgroupLayout::from_mountinfo(&mountinfo).unwrap();
        assert_eq!(
            l.cpu_hierarchy(),
            Some(CpuHierarchy::Unified(dir.path().join("unified")))
        );
        assert_eq!(
            detect_driver(&dir.path().join("cpu")),
            KubeletDriver::Systemd
        );
    }

    #[test]
    fn walk_reports_inode_ids_and_no_driver_without_kubepods() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("yarn/container_1_01_000002")).unwrap();
        std::fs::write(dir.path().join("yarn/cpu.stat"), "").unwrap();
        let dirs = walk(dir.path()).unwrap();
        assert_eq!(dirs.len(), 3, "plain files are not cgroups");
        let yarn = dirs.iter().find(|d| d.rel_path == "yarn").unwrap();
        assert_eq!(
            yarn.id,
            std::fs::metadata(dir.path().join("yarn")).unwrap().ino()
        );
        assert_eq!(detect_driver(dir.path()), KubeletDriver::None);
        assert!(walk(Path::new("/nonexistent")).is_err());
    }
}

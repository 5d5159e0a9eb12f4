//! Test cgroups: created under the cgroup this process runs in, emptied and removed on drop.

use std::{
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::process::ChildGuard;

/// Where cgroup hierarchies are mounted on the test host.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The mount point of a v1 controller, or of the cgroup2 hierarchy (`"unified"`), as read
/// from /proc/self/mountinfo.
pub fn mount_point(controller: &str) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount = PathBuf::from(left.split_whitespace().nth(4)?);
        let mut r = right.split_whitespace();
        let fstype = r.next()?;
        let opts = r.nth(1)?;
        let hit = match controller {
            "unified" => fstype == "cgroup2",
            c => fstype == "cgroup" && opts.split(',').any(|o| o == c),
        };
        hit.then_some(mount)
    })
}

/// This process's own cgroup in a v1 controller's hierarchy (or `"unified"` for cgroup2),
/// as a directory: the only place tests may create children.
pub fn own_cgroup_dir(controller: &str) -> PathBuf {
    let mount = mount_point(controller)
        .unwrap_or_else(|| panic!("no cgroup hierarchy for {controller} on this host"));
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
    let rel = cgroups
        .lines()
        .find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let matches = match controller {
                "unified" => ctrls.is_empty(),
                c => ctrls.split(',').any(|x| x == c),
            };
            matches.then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("this process is in no {controller} cgroup"));
    mount.join(rel.trim_start_matches('/'))
}

/// A cgroup created for a test; on drop every process in it is killed and it is removed.
pub struct TestCgroup {
    dir: PathBuf,
}

impl TestCgroup {
    /// Creates `name` under this process's own cgroup of `controller` (`"cpu"`, `"cpuacct"`,
    /// `"memory"`, `"freezer"`, `"unified"`...).
    pub fn create(controller: &str, name: &str) -> TestCgroup {
        Self::create_at(&own_cgroup_dir(controller), name)
    }

    /// Creates `rel` (which may be nested, e.g. `"kubepods/besteffort/pod1"`) under `parent`.
    pub fn create_at(parent: &Path, rel: &str) -> TestCgroup {
        let dir = parent.join(rel);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
        TestCgroup { dir }
    }

    /// Creates `mount/rel`, where `rel` may have several components: the guard is for the
    /// first component that did not exist yet, so everything created is removed on drop.
    /// Used to give a test cgroup the same relative path in every hierarchy (as kubelet
    /// does), e.g. a cpu twin of a child of the test's own memory cgroup.
    pub fn create_path(mount: &Path, rel: &str) -> TestCgroup {
        let mut first_new = None;
        let mut dir = mount.to_path_buf();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            dir.push(part);
            if first_new.is_none() && !dir.exists() {
                first_new = Some(dir.clone());
            }
        }
        let top = first_new.unwrap_or_else(|| panic!("{} already exists", dir.display()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
        TestCgroup { dir: top }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kernel's cgroup id (the directory's inode number on cgroupfs).
    pub fn id(&self) -> u64 {
        std::fs::metadata(&self.dir).expect("stat cgroup").ino()
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_else(|e| panic!("reading {}/{file}: {e}", self.dir.display()))
    }

    pub fn pids(&self) -> Vec<i32> {
        self.read("cgroup.procs")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// `cpuacct.usage` (v1) in nanoseconds.
    pub fn cpuacct_usage_ns(&self) -> u64 {
        self.read("cpuacct.usage")
            .trim()
            .parse()
            .expect("cpuacct.usage")
    }

    /// `usage_usec` of `cpu.stat` (cgroup2, present even without the cpu controller), in ns.
    pub fn cpu_stat_usage_ns(&self) -> u64 {
        let stat = self.read("cpu.stat");
        stat.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("usage_usec in cpu.stat")
            * 1000
    }
}

/// Spawns `command` with its process already in every cgroup of `cgroups` before it execs,
/// so that none of its CPU time is spent elsewhere.
pub fn spawn_in(cgroups: &[&TestCgroup], mut command: Command) -> ChildGuard {
    let procs: Vec<PathBuf> = cgroups.iter().map(|c| c.dir.join("cgroup.procs")).collect();
    // SAFETY: between fork and exec only async-signal-safe work: open/write/close.
    unsafe {
        command.pre_exec(move || {
            for path in &procs {
                std::fs::write(path, b"0")?;
            }
            Ok(())
        });
    }
    ChildGuard::spawn(command)
}

/// A CPU hog that spins for `seconds` and exits by itself (bounded even if the test dies).
pub fn cpu_hog(seconds: f64) -> Command {
    let mut c = Command::new("timeout");
    c.args([&format!("{seconds}"), "sh", "-c", "while :; do :; done"]);
    c
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Children first (nested test layouts), deepest first.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            let mut subdirs: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect();
            subdirs.sort();
            for sub in subdirs {
                drop(TestCgroup { dir: sub });
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids: Vec<i32> = std::fs::read_to_string(self.dir.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            for pid in &pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            // A frozen v1 cgroup would keep its killed processes: thaw it.
            let _ = std::fs::write(self.dir.join("freezer.state"), "THAWED");
            let _ = std::fs::write(self.dir.join("cgroup.freeze"), "0");
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "warning: could not remove test cgroup {}",
                    self.dir.display()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

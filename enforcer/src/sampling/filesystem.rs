//! File system usage of the node's mounts, read with `statvfs`, for reporting only (SPEC
//! §1: disks are physically separated, so they are reported, never enforced).
//!
//! A `statvfs` (or `stat`) on a hung network mount, an NFS server gone, blocks in the
//! kernel for as long as the server is gone. Skipping network file systems by their type in
//! mountinfo would also drop the ones an operator asked for, and a local-looking path can
//! sit behind an automount that hangs the same way. So each path is read on its own thread
//! at a slow cadence, and the last reading is published with its time: a hung mount stalls
//! its own thread only (its figure ages: `age` below), never the tick, a scrape or the
//! other paths. The threads are never joined: one stuck in the kernel could not be, and
//! they hold nothing that needs cleaning up.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The node's mounts as its init sees them (the daemon's own mount namespace may be a
/// container's, or systemd's ProtectSystem view).
pub const INIT_ROOT: &str = "/proc/1/root";

/// Where the node's paths are read when `filesystems.root` is not set: [`INIT_ROOT`] when
/// it can be entered (root with CAP_SYS_PTRACE, as the DaemonSet and the unit run), else
/// the daemon's own `/`, said in one line.
pub fn default_root() -> PathBuf {
    match std::fs::metadata(Path::new(INIT_ROOT).join(".")) {
        Ok(_) => PathBuf::from(INIT_ROOT),
        Err(e) => {
            tracing::warn!(
                "filesystems: cannot enter {INIT_ROOT} ({e}); the node's paths are read in the daemon's own mount namespace (filesystems.root = \"/\")"
            );
            PathBuf::from("/")
        }
    }
}

/// `node_path` (absolute, as the node names it) under `root`.
pub fn under(root: &Path, node_path: &Path) -> PathBuf {
    root.join(node_path.strip_prefix("/").unwrap_or(node_path))
}

/// Bytes of one file system, as `statvfs` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    pub size_bytes: u64,
    /// Free for everyone (root included).
    pub free_bytes: u64,
    /// Free for unprivileged users (what `df` calls Avail).
    pub avail_bytes: u64,
    /// `st_dev` of the path: paths with the same one are on the same file system.
    pub device: u64,
}

impl FsStats {
    /// From `statvfs`'s block counts (in units of `f_frsize`).
    pub fn from_blocks(blocks: u64, free: u64, avail: u64, fragment: u64, device: u64) -> Self {
        FsStats {
            size_bytes: blocks.saturating_mul(fragment),
            free_bytes: free.saturating_mul(fragment),
            avail_bytes: avail.saturating_mul(fragment),
            device,
        }
    }

    pub fn used_bytes(&self) -> u64 {
        self.size_bytes.saturating_sub(self.free_bytes)
    }

    /// What `df` shows as Use%: used over what users can have (used + available), so the
    /// blocks reserved for root count as unusable and a file system users cannot write to
    /// any more reads 1 (100%). 0 for a file system without blocks.
    pub fn used_ratio(&self) -> f64 {
        let used = self.used_bytes();
        let usable = used.saturating_add(self.avail_bytes);
        if usable == 0 {
            0.0
        } else {
            used as f64 / usable as f64
        }
    }
}

/// Reads the file system holding `path`.
pub fn read(path: &Path) -> std::io::Result<FsStats> {
    let device = std::fs::metadata(path)?.dev();
    let v = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(FsStats::from_blocks(
        v.blocks(),
        v.blocks_free(),
        v.blocks_available(),
        v.fragment_size(),
        device,
    ))
}

/// One configured path's latest figures.
#[derive(Debug, Clone, PartialEq)]
pub struct FsReading {
    /// The path as the node names it (the `mountpoint` label).
    pub mountpoint: String,
    pub stats: FsStats,
    /// Since the figures were read.
    pub age: Duration,
}

/// What is known of one path.
#[derive(Debug, Default)]
struct Slot {
    mountpoint: String,
    /// The last good reading and when it was taken; `None` while none or the path failed.
    last: Option<(FsStats, Instant)>,
    /// The last error, to say it once.
    error: Option<String>,
    /// The earlier path on the same file system, if any (this one is then not reported).
    same_as: Option<usize>,
}

/// For each path, the first earlier path with a reading on the same device.
fn duplicates(devices: &[Option<u64>]) -> Vec<Option<usize>> {
    devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let d = (*d)?;
            devices[..i].iter().position(|e| *e == Some(d))
        })
        .collect()
}

/// The reader threads' shared figures.
#[derive(Debug, Clone, Default)]
pub struct FilesystemReader {
    slots: Arc<Mutex<Vec<Slot>>>,
}

/// Which paths, where and how often.
pub struct ReaderOptions {
    /// `(the node's path, where it is read from)`.
    pub paths: Vec<(PathBuf, PathBuf)>,
    pub interval: Duration,
    /// A path that does not exist is said at info level (the defaults), else as a warning.
    pub quiet_missing: bool,
}

impl FilesystemReader {
    /// Starts one reader thread per path; the first readings come at once.
    pub fn start(options: ReaderOptions) -> std::io::Result<FilesystemReader> {
        Self::start_with(options, read)
    }

    /// [`Self::start`] with another way to read a path (the unit tests' hung mount).
    fn start_with(
        options: ReaderOptions,
        read: impl Fn(&Path) -> std::io::Result<FsStats> + Clone + Send + 'static,
    ) -> std::io::Result<FilesystemReader> {
        let reader = FilesystemReader {
            slots: Arc::new(Mutex::new(
                options
                    .paths
                    .iter()
                    .map(|(node, _)| Slot {
                        mountpoint: node.display().to_string(),
                        ..Default::default()
                    })
                    .collect(),
            )),
        };
        for (i, (node, at)) in options.paths.into_iter().enumerate() {
            let (reader, read) = (reader.clone(), read.clone());
            let (interval, quiet) = (options.interval, options.quiet_missing);
            std::thread::Builder::new()
                .name(format!("fs{i}"))
                .stack_size(256 * 1024)
                .spawn(move || {
                    loop {
                        let result = read(&at);
                        reader.publish(i, &node, result, quiet);
                        std::thread::sleep(interval);
                    }
                })?;
        }
        Ok(reader)
    }

    /// Records one reading; says (once) when a path fails, comes back, or turns out to be
    /// on the file system of an earlier one.
    fn publish(&self, i: usize, node: &Path, result: std::io::Result<FsStats>, quiet: bool) {
        let mut slots = self.slots.lock().unwrap();
        match result {
            Ok(stats) => {
                if slots[i].error.take().is_some() {
                    tracing::info!(
                        "filesystems: {} is readable again; reported",
                        node.display()
                    );
                }
                slots[i].last = Some((stats, Instant::now()));
            }
            Err(e) => {
                let message = e.to_string();
                if slots[i].error.as_deref() != Some(message.as_str()) {
                    let missing = e.kind() == std::io::ErrorKind::NotFound;
                    if missing && quiet {
                        tracing::info!(
                            "filesystems: {} does not exist on this node; not reported",
                            node.display()
                        );
                    } else {
                        tracing::warn!(
                            "filesystems.mountpoints: {}: {message}; not reported until it can be read",
                            node.display()
                        );
                    }
                }
                slots[i].error = Some(message);
                slots[i].last = None;
            }
        }
        let devices: Vec<Option<u64>> = slots
            .iter()
            .map(|s| s.last.map(|(st, _)| st.device))
            .collect();
        for (j, same_as) in duplicates(&devices).into_iter().enumerate() {
            if same_as != slots[j].same_as
                && let Some(k) = same_as
            {
                tracing::info!(
                    "filesystems: {} is on the file system of {}; reported once, as {}",
                    slots[j].mountpoint,
                    slots[k].mountpoint,
                    slots[k].mountpoint
                );
            }
            slots[j].same_as = same_as;
        }
    }

    /// The latest figures of every path that has them, in the configured order, each file
    /// system once.
    pub fn latest(&self) -> Vec<FsReading> {
        let slots = self.slots.lock().unwrap();
        slots
            .iter()
            .filter(|s| s.same_as.is_none())
            .filter_map(|s| {
                let (stats, at) = s.last?;
                Some(FsReading {
                    mountpoint: s.mountpoint.clone(),
                    stats,
                    age: at.elapsed(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    #[test]
    fn the_used_ratio_is_dfs_use_percent() {
        // df: 1K-blocks 1000, Used 600 (1000 - 350 free), Avail 300 (50 reserved for
        // root), Use% = 600 / (600 + 300) = 67%.
        let s = FsStats::from_blocks(250, 87, 75, 4 * KIB, 1);
        assert_eq!(s.size_bytes, 1000 * KIB);
        assert_eq!(s.free_bytes, 348 * KIB);
        assert_eq!(s.avail_bytes, 300 * KIB);
        assert_eq!(s.used_bytes(), 652 * KIB);
        assert!((s.used_ratio() - 652.0 / 952.0).abs() < 1e-12);
        // Full for users while root's reserve is left: 100%.
        assert_eq!(FsStats::from_blocks(100, 5, 0, 4096, 1).used_ratio(), 1.0);
        // Empty and blockless file systems.
        assert_eq!(
            FsStats::from_blocks(100, 100, 100, 4096, 1).used_ratio(),
            0.0
        );
        assert_eq!(FsStats::from_blocks(0, 0, 0, 4096, 1).used_ratio(), 0.0);
        // Absurd counts saturate instead of wrapping.
        assert_eq!(
            FsStats::from_blocks(u64::MAX, 0, 0, 4096, 1).size_bytes,
            u64::MAX
        );
    }

    #[test]
    fn a_file_system_is_reported_under_its_first_path() {
        assert_eq!(
            duplicates(&[Some(1), Some(2), Some(1), None, Some(2), Some(3)]),
            [None, None, Some(0), None, Some(1), None]
        );
        // A path without a reading hides nothing.
        assert_eq!(duplicates(&[None, Some(1), Some(1)]), [None, None, Some(1)]);
    }

    #[test]
    fn publish_keeps_the_last_reading_and_drops_a_failed_path() {
        let reader = FilesystemReader {
            slots: Arc::new(Mutex::new(
                ["/", "/var/lib/kubelet", "/data"]
                    .iter()
                    .map(|m| Slot {
                        mountpoint: m.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            )),
        };
        let fs = |device| Ok(FsStats::from_blocks(100, 50, 40, 4096, device));
        reader.publish(0, Path::new("/"), fs(1), false);
        reader.publish(1, Path::new("/var/lib/kubelet"), fs(1), false);
        reader.publish(2, Path::new("/data"), fs(2), false);
        let names = |r: &FilesystemReader| {
            r.latest()
                .into_iter()
                .map(|f| f.mountpoint)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&reader), ["/", "/data"]);
        let missing = || Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        reader.publish(2, Path::new("/data"), missing(), false);
        assert_eq!(names(&reader), ["/"]);
        // When the first path fails, the second one on its file system is reported.
        reader.publish(0, Path::new("/"), missing(), false);
        assert_eq!(names(&reader), ["/var/lib/kubelet"]);
        reader.publish(2, Path::new("/data"), fs(2), false);
        let latest = reader.latest();
        assert_eq!(latest[1].mountpoint, "/data");
        assert!(latest[1].age < Duration::from_secs(1));
        assert_eq!(latest[1].stats.avail_bytes, 40 * 4096);
    }

    #[test]
    fn a_hung_mount_stalls_only_its_own_figures() {
        // `/hung` answers once, then blocks as a statvfs on a dead NFS server does.
        let (release, hang) = std::sync::mpsc::channel::<()>();
        let hang = Arc::new(Mutex::new(hang));
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let read = {
            let calls = calls.clone();
            move |path: &Path| {
                if path == Path::new("/hung") {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0 {
                        let _ = hang.lock().unwrap().recv();
                    }
                    return Ok(FsStats::from_blocks(100, 10, 5, 4096, 1));
                }
                Ok(FsStats::from_blocks(100, 50, 40, 4096, 2))
            }
        };
        let interval = Duration::from_millis(50);
        let reader = FilesystemReader::start_with(
            ReaderOptions {
                paths: ["/hung", "/local"]
                    .iter()
                    .map(|p| (PathBuf::from(p), PathBuf::from(p)))
                    .collect(),
                interval,
                quiet_missing: false,
            },
            read,
        )
        .unwrap();
        let started = Instant::now();
        while reader.latest().len() < 2 {
            assert!(started.elapsed() < Duration::from_secs(5), "no readings");
            std::thread::sleep(interval);
        }
        std::thread::sleep(interval * 20);
        let latest = reader.latest();
        let (hung, local) = (&latest[0], &latest[1]);
        assert_eq!(
            (hung.mountpoint.as_str(), local.mountpoint.as_str()),
            ("/hung", "/local")
        );
        // The hung path keeps its last figures, ageing; the other one is read on time.
        assert!(hung.age >= interval * 18, "{:?}", hung.age);
        assert!(local.age < interval * 10, "{:?}", local.age);
        assert_eq!(hung.stats.avail_bytes, 5 * 4096);
        drop(release);
    }

    #[test]
    fn node_paths_are_read_under_the_root() {
        let init = Path::new(INIT_ROOT);
        assert_eq!(
            under(init, Path::new("/var/lib/kubelet")),
            Path::new("/proc/1/root/var/lib/kubelet")
        );
        assert_eq!(under(init, Path::new("/")), init);
        assert_eq!(
            under(Path::new("/"), Path::new("/data1")),
            Path::new("/data1")
        );
    }

    #[test]
    fn read_gives_what_statvfs_gives() {
        let s = read(Path::new("/")).expect("statvfs /");
        let v = nix::sys::statvfs::statvfs("/").unwrap();
        assert_eq!(s.size_bytes, v.blocks() * v.fragment_size());
        assert!(s.used_ratio() > 0.0 && s.used_ratio() <= 1.0);
        let e = read(Path::new("/nonexistent/enforcer-test")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}

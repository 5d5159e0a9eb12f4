//! The configuration file watched with inotify, so that a ConfigMap update (kubelet's atomic
//! swap of the `..data` symlink) or an edit reloads it as SIGHUP does, without a signal.
//!
//! Watched: the directory the path names (where kubelet swaps `..data` and an editor renames
//! its temporary file over the file) and the directory the path resolves into (an edit of a
//! symlink's target elsewhere). Both can be replaced (kubelet deletes the old `..<timestamp>`
//! directory at every swap), so the watches are re-armed after every burst of events; while
//! the named directory does not exist, its nearest existing ancestor is watched until it
//! comes back. No polling: the task sleeps in the reactor until the kernel has an event.
//!
//! Events are not trusted to say what changed. Once a burst has been quiet for [`QUIET`]
//! (a swap is five events, an editor's save several), the file is read, and only content
//! that differs from what was last seen asks for a reload: one reload per change, none for
//! the other files of the directory. Content that is read half-written is not a risk: a
//! file is looked at after its writer closed it (`IN_CLOSE_WRITE`) or after it was renamed
//! or linked into place, never on `IN_MODIFY`.

use std::{
    collections::HashMap,
    os::fd::{AsFd, AsRawFd, RawFd},
    path::{Path, PathBuf},
    time::Duration,
};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use thiserror::Error;
use tokio::{
    io::{Interest, unix::AsyncFd},
    time::Instant,
};

/// A burst ends when no event came for this long…
const QUIET: Duration = Duration::from_millis(200);
/// …or at the latest this long after its first event (a directory that never rests).
const LONGEST_BURST: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
pub enum WatchError {
    #[error("watching {path} for changes: {source}")]
    Init {
        path: String,
        source: std::io::Error,
    },
}

/// The events that may mean the file changed. No `IN_MODIFY`: the file is read when its
/// writer is done.
fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub(super) struct ConfigWatcher {
    fd: AsyncFd<Fd>,
    path: PathBuf,
    /// The directories watched, by their (canonical) path.
    watches: HashMap<WatchDescriptor, PathBuf>,
    /// The file's content when last read (`None`: it could not be read).
    seen: Option<Vec<u8>>,
    /// The first and the last event of the burst in progress.
    burst: Option<(Instant, Instant)>,
    /// Reading events failed: the watcher is given up (said once).
    broken: bool,
}

impl ConfigWatcher {
    /// Within the runtime's context. Fails when no inotify instance can be had (the
    /// per-user limit, `fs.inotify.max_user_instances`).
    pub(super) fn new(path: &Path) -> Result<ConfigWatcher, WatchError> {
        let init = |source: std::io::Error| WatchError::Init {
            path: path.display().to_string(),
            source,
        };
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| init(e.into()))?;
        // SAFETY: `Fd` owns the inotify descriptor, which stays open, and is the one
        // `as_raw_fd` returns, for as long as the `AsyncFd` holds it.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(inotify), Interest::READABLE) }
            .map_err(|e| init(e.into()))?;
        let mut watcher = ConfigWatcher {
            fd,
            path: path.to_path_buf(),
            watches: HashMap::new(),
            seen: std::fs::read(path).ok(),
            burst: None,
            broken: false,
        };
        watcher.arm();
        Ok(watcher)
    }

    /// Whether a directory is watched (a missing one's ancestor counts).
    pub(super) fn armed(&self) -> bool {
        !self.watches.is_empty()
    }

    /// Returns when the file's content has changed since it was last seen. Cancel-safe:
    /// a burst in progress survives the future being dropped.
    pub(super) async fn changed(&mut self) {
        while !self.broken {
            let due = self
                .burst
                .map(|(first, last)| (last + QUIET).min(first + LONGEST_BURST));
            let events = tokio::select! {
                events = read_events(&self.fd) => events,
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    self.burst = None;
                    self.arm();
                    if self.content_changed() {
                        return;
                    }
                    continue;
                }
            };
            match events {
                Ok(events) => {
                    if self.note(events) {
                        let now = Instant::now();
                        let first = self.burst.map_or(now, |(first, _)| first);
                        self.burst = Some((first, now));
                    }
                }
                Err(e) => {
                    // Not expected of an inotify descriptor; SIGHUP still reloads.
                    tracing::error!(
                        "watching {}: {e}; the configuration reloads on SIGHUP only",
                        self.path.display()
                    );
                    self.broken = true;
                }
            }
        }
        std::future::pending::<()>().await
    }

    /// Takes in a batch of events; returns whether any may have changed the file.
    fn note(&mut self, events: Vec<InotifyEvent>) -> bool {
        let mut relevant = false;
        for e in events {
            if e.mask.contains(AddWatchFlags::IN_IGNORED) {
                // The directory is gone (or its watch was removed): re-armed after the burst.
                self.watches.remove(&e.wd);
            }
            if e.mask.contains(AddWatchFlags::IN_MOVE_SELF) {
                // The watch follows the directory to its new name; the path wants the one
                // now there.
                let _ = self.fd.get_ref().0.rm_watch(e.wd);
                self.watches.remove(&e.wd);
            }
            let dir = self.watches.get(&e.wd);
            if e.mask.contains(AddWatchFlags::IN_CREATE)
                && !e.mask.contains(AddWatchFlags::IN_ISDIR)
                && let (Some(dir), Some(name)) = (dir, &e.name)
                && std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.is_file())
            {
                // A regular file being created: looked at once its writer closes it.
                continue;
            }
            relevant = true;
        }
        relevant
    }

    /// Watches the directories [`wanted`] names, and only those.
    fn arm(&mut self) {
        let wanted = wanted(&self.path);
        let inotify = &self.fd.get_ref().0;
        self.watches.retain(|wd, dir| {
            let keep = wanted.contains(dir);
            if !keep {
                // Fails harmlessly when the directory is gone already.
                let _ = inotify.rm_watch(*wd);
            }
            keep
        });
        for dir in wanted {
            if self.watches.values().any(|d| *d == dir) {
                continue;
            }
            match inotify.add_watch(&dir, mask()) {
                Ok(wd) => {
                    self.watches.insert(wd, dir);
                }
                Err(e) => tracing::warn!(
                    "watching {} for changes of {}: {e}; SIGHUP still reloads",
                    dir.display(),
                    self.path.display()
                ),
            }
        }
    }

    /// Reads the file; whether its content differs from what was last seen.
    fn content_changed(&mut self) -> bool {
        let now = std::fs::read(&self.path).ok();
        if now == self.seen {
            return false;
        }
        self.seen = now;
        true
    }
}

/// Waits for and reads the next events.
async fn read_events(fd: &AsyncFd<Fd>) -> std::io::Result<Vec<InotifyEvent>> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|fd| fd.get_ref().0.read_events().map_err(std::io::Error::from)) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

/// The directories to watch for `path`: the one it is named in (or, while that is missing,
/// its nearest existing ancestor), and the one it resolves into; canonical, without
/// duplicates.
fn wanted(path: &Path) -> Vec<PathBuf> {
    let named = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut dirs = Vec::new();
    if let Some(dir) = named
        .ancestors()
        .find_map(|d| std::fs::canonicalize(d).ok())
    {
        dirs.push(dir);
    }
    if let Some(dir) = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        && !dirs.contains(&dir)
    {
        dirs.push(dir);
    }
    dirs
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A directory laid out like a kubelet ConfigMap volume.
    struct Volume {
        dir: tempfile::TempDir,
        generation: u32,
    }

    impl Volume {
        fn new(content: &str) -> Volume {
            let dir = tempfile::tempdir().unwrap();
            let ts = dir.path().join("..2026_12_01_00_00_00.0");
            std::fs::create_dir(&ts).unwrap();
            std::fs::write(ts.join("enforcer.toml"), content).unwrap();
            symlink("..2026_12_01_00_00_00.0", dir.path().join("..data")).unwrap();
            symlink("..data/enforcer.toml", dir.path().join("enforcer.toml")).unwrap();
            Volume { dir, generation: 0 }
        }

        fn path(&self) -> PathBuf {
            self.dir.path().join("enforcer.toml")
        }

        /// What kubelet's AtomicWriter does: a new timestamped directory, a `..data_tmp`
        /// symlink to it renamed over `..data`, the old directory removed.
        fn swap(&mut self, content: &str) {
            let old = std::fs::read_link(self.dir.path().join("..data")).unwrap();
            self.generation += 1;
            let name = format!("..2026_12_01_00_00_00.{}", self.generation);
            let ts = self.dir.path().join(&name);
            std::fs::create_dir(&ts).unwrap();
            std::fs::write(ts.join("enforcer.toml"), content).unwrap();
            symlink(&name, self.dir.path().join("..data_tmp")).unwrap();
            std::fs::rename(
                self.dir.path().join("..data_tmp"),
                self.dir.path().join("..data"),
            )
            .unwrap();
            std::fs::remove_dir_all(self.dir.path().join(old)).unwrap();
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Whether `changed` returns within `within`.
    async fn changes(w: &mut ConfigWatcher, within: Duration) -> bool {
        tokio::time::timeout(within, w.changed()).await.is_ok()
    }

    #[test]
    fn a_configmap_swap_is_one_change_and_an_unchanged_swap_none() {
        runtime().block_on(async {
            let mut volume = Volume::new("a = 1\n");
            let mut w = ConfigWatcher::new(&volume.path()).unwrap();
            assert!(w.armed());
            assert_eq!(
                w.watches.len(),
                2,
                "the volume and the timestamped directory"
            );
            volume.swap("a = 2\n");
            assert!(changes(&mut w, Duration::from_secs(3)).await);
            // The burst was one change: nothing more is pending.
            assert!(!changes(&mut w, Duration::from_millis(600)).await);
            // The same content again (kubelet re-projecting), and an unrelated file.
            volume.swap("a = 2\n");
            std::fs::write(volume.dir.path().join("other"), "x").unwrap();
            assert!(!changes(&mut w, Duration::from_millis(600)).await);
            // The next swap is still seen: the watch on the new target was re-armed.
            volume.swap("a = 3\n");
            assert!(changes(&mut w, Duration::from_secs(3)).await);
            assert_eq!(w.seen.as_deref(), Some(&b"a = 3\n"[..]));
        });
    }

    #[test]
    fn edits_renames_and_a_replaced_directory_are_seen() {
        runtime().block_on(async {
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("etc");
            std::fs::create_dir(&dir).unwrap();
            let path = dir.join("enforcer.toml");
            std::fs::write(&path, "a = 1\n").unwrap();
            let mut w = ConfigWatcher::new(&path).unwrap();
            // In place (truncate, write, close).
            std::fs::write(&path, "a = 2\n").unwrap();
            assert!(changes(&mut w, Duration::from_secs(3)).await);
            // An editor's save: a temporary file renamed over it.
            std::fs::write(dir.join(".enforcer.toml.swp"), "a = 3\n").unwrap();
            std::fs::rename(dir.join(".enforcer.toml.swp"), &path).unwrap();
            assert!(changes(&mut w, Duration::from_secs(3)).await);
            // The whole directory removed, then made again with a new file.
            std::fs::remove_dir_all(&dir).unwrap();
            assert!(
                changes(&mut w, Duration::from_secs(3)).await,
                "gone is a change"
            );
            assert_eq!(
                w.watches.len(),
                1,
                "the ancestor, while the directory is gone"
            );
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(&path, "a = 4\n").unwrap();
            assert!(changes(&mut w, Duration::from_secs(3)).await);
            std::fs::write(&path, "a = 5\n").unwrap();
            assert!(changes(&mut w, Duration::from_secs(3)).await, "re-armed");
            assert_eq!(w.seen.as_deref(), Some(&b"a = 5\n"[..]));
        });
    }

    #[test]
    fn the_watched_directories_are_the_named_and_the_resolved_one() {
        let volume = Volume::new("");
        let base = std::fs::canonicalize(volume.dir.path()).unwrap();
        assert_eq!(
            wanted(&volume.path()),
            [base.clone(), base.join("..2026_12_01_00_00_00.0")]
        );
        assert_eq!(wanted(&base.join("missing/deeper/enforcer.toml")), [base]);
    }
}

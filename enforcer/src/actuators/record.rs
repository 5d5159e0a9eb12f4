//! What enforcer changed on cgroups, written ahead: before a freeze or a limit is applied,
//! the record says so (tmp + fsync + rename of `<state_dir>/effects.json`), so that a
//! daemon killed at any point (an OOM kill, a crash, a rolling update past its grace
//! period) leaves its successor the knowledge of what it owns. The successor adopts the
//! record: it thaws what the node no longer needs frozen, and brings the limits back to what
//! the capacity rule says — instead of starting at Normal with offline work frozen forever.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{Operation, cgroupfs::LimitKind};

/// What enforcer set on one cgroup, and which part of it did (`capacity` or a ladder stage).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupEffects {
    /// Frozen by this stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Limit<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Limit<u64>>,
    /// The capacity rule's last values (cores, bytes), kept while the ladder overrides
    /// them: what a successor restores to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_memory: Option<u64>,
    /// The limit files as they were before enforcer first wrote them (file name → text,
    /// e.g. `cpu.max` → `max 100000`): what giving a limit back writes again, so that a
    /// limit kubelet or the operator set outlives enforcer's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub before: BTreeMap<String, String>,
}

/// A limit enforcer set (cores or bytes), and by whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limit<T> {
    pub value: T,
    pub by: String,
}

impl CgroupEffects {
    fn is_empty(&self) -> bool {
        self.frozen.is_none()
            && self.cpu.is_none()
            && self.memory.is_none()
            && self.capacity_cpu.is_none()
            && self.capacity_memory.is_none()
            && self.before.is_empty()
    }
}

/// A process enforcer isolated, with what it had before (what putting it back restores).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolatedProcess {
    /// The offline cgroup it was isolated in.
    pub cgroup: String,
    /// `/proc/PID/stat` start time: the pid names this process, not a later one.
    pub start_time: u64,
    pub oom_score_adj: i32,
    pub nice: i32,
}

/// The record, keyed by cgroup path relative to the hierarchy roots, and by pid.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectsRecord {
    #[serde(skip)]
    path: Option<PathBuf>,
    pub cgroups: BTreeMap<String, CgroupEffects>,
    /// Processes isolated (SPEC §3), with their values from before.
    #[serde(default)]
    pub isolated: BTreeMap<i32, IsolatedProcess>,
}

impl EffectsRecord {
    /// The record at `path` (empty when there is none or it cannot be read: a damaged
    /// record must not stop the daemon, which then starts as if it owned nothing).
    pub fn load(path: &Path) -> EffectsRecord {
        let mut record: EffectsRecord = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::error!(
                    "{}: unreadable effects record ({e}); starting from nothing",
                    path.display()
                );
                EffectsRecord::default()
            }),
            Err(_) => EffectsRecord::default(),
        };
        record.path = Some(path.to_path_buf());
        record
    }

    /// In memory only (tests, dry runs).
    pub fn in_memory() -> EffectsRecord {
        EffectsRecord::default()
    }

    /// Cgroups enforcer froze.
    pub fn frozen(&self) -> Vec<&str> {
        self.cgroups
            .iter()
            .filter(|(_, e)| e.frozen.is_some())
            .map(|(p, _)| p.as_str())
            .collect()
    }

    /// Whether a ladder stage (not the capacity rule) set a limit still in force.
    pub fn squeezed(&self) -> bool {
        self.cgroups.values().any(|e| {
            e.cpu.as_ref().is_some_and(|l| l.by != "capacity")
                || e.memory.as_ref().is_some_and(|l| l.by != "capacity")
        })
    }

    /// The capacity rule's values in force: per cgroup, (cores, bytes).
    pub fn capacity_values(&self) -> Vec<(&str, Option<f64>, Option<u64>)> {
        self.cgroups
            .iter()
            .map(|(p, e)| (p.as_str(), e.capacity_cpu, e.capacity_memory))
            .filter(|(_, c, b)| c.is_some() || b.is_some())
            .collect()
    }

    /// Whether `op` gives back something enforcer holds on `target`: a thaw of a cgroup it
    /// froze, a limit lifted that it set.
    pub fn holds(&self, target: &str, op: &Operation) -> bool {
        let Some(e) = self.cgroups.get(target) else {
            return false;
        };
        match op {
            Operation::Thaw => e.frozen.is_some(),
            Operation::CpuLimit { cores: None } => e.cpu.is_some(),
            Operation::MemoryLimit { bytes: None } => e.memory.is_some(),
            _ => false,
        }
    }

    /// What the files of `kind` held on `target` before enforcer wrote them, if known.
    pub fn before(&self, target: &str, kind: LimitKind) -> Option<BTreeMap<String, String>> {
        let files: BTreeMap<String, String> = self
            .cgroups
            .get(target)?
            .before
            .iter()
            .filter(|(f, _)| kind.holds(f))
            .map(|(f, v)| (f.clone(), v.clone()))
            .collect();
        (!files.is_empty()).then_some(files)
    }

    /// Keeps what the limit files of `target` hold before enforcer's first write (persisted
    /// with the next [`note`](Self::note), which comes before the write). What is already
    /// known is kept: the first value is the one from before enforcer.
    pub fn remember_before(&mut self, target: &str, files: BTreeMap<String, String>) {
        let entry = self.cgroups.entry(target.to_string()).or_default();
        for (file, value) in files {
            entry.before.entry(file).or_insert(value);
        }
    }

    /// Notes what `op` by `stage` is about to do to `target`, and persists the record
    /// before it is done. A kill forgets the cgroup (nothing is left to own). A limit given
    /// back forgets the value from before it, which is in force again.
    pub fn note(&mut self, target: &str, op: &Operation, stage: &str) -> std::io::Result<()> {
        let entry = self.cgroups.entry(target.to_string()).or_default();
        match op {
            Operation::CpuLimit { cores: None } => {
                entry.before.retain(|f, _| !LimitKind::Cpu.holds(f))
            }
            Operation::MemoryLimit { bytes: None } => {
                entry.before.retain(|f, _| !LimitKind::Memory.holds(f))
            }
            _ => {}
        }
        let by = stage.to_string();
        let capacity = stage == "capacity";
        match op {
            Operation::CpuLimit { cores } => {
                if capacity {
                    entry.capacity_cpu = *cores;
                }
                entry.cpu = cores.map(|value| Limit { value, by });
            }
            Operation::MemoryLimit { bytes } => {
                if capacity {
                    entry.capacity_memory = *bytes;
                }
                entry.memory = bytes.map(|value| Limit { value, by });
            }
            Operation::Freeze => entry.frozen = Some(by),
            Operation::Thaw => entry.frozen = None,
            Operation::Kill => entry.frozen = None,
        }
        if entry.is_empty() {
            self.cgroups.remove(target);
        }
        self.save()
    }

    /// Notes processes about to be isolated, with what they have now, and persists.
    pub fn note_isolated(
        &mut self,
        processes: impl IntoIterator<Item = (i32, IsolatedProcess)>,
    ) -> std::io::Result<()> {
        let before = self.isolated.len();
        for (pid, p) in processes {
            self.isolated.entry(pid).or_insert(p);
        }
        if self.isolated.len() != before {
            return self.save();
        }
        Ok(())
    }

    /// Forgets processes put back (or gone), and persists.
    pub fn forget_isolated(&mut self, pids: impl IntoIterator<Item = i32>) -> std::io::Result<()> {
        let before = self.isolated.len();
        for pid in pids {
            self.isolated.remove(&pid);
        }
        if self.isolated.len() != before {
            return self.save();
        }
        Ok(())
    }

    /// Forgets processes that are gone (or whose pid now names another process).
    pub fn retain_isolated(&mut self, alive: impl Fn(i32, u64) -> bool) -> std::io::Result<()> {
        let before = self.isolated.len();
        self.isolated.retain(|pid, p| alive(*pid, p.start_time));
        if self.isolated.len() != before {
            return self.save();
        }
        Ok(())
    }

    /// Forgets cgroups that no longer exist.
    pub fn retain(&mut self, exists: impl Fn(&str) -> bool) -> std::io::Result<()> {
        let before = self.cgroups.len();
        self.cgroups.retain(|p, _| exists(p));
        if self.cgroups.len() != before {
            return self.save();
        }
        Ok(())
    }

    fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(".effects.json.tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself must survive a crash too.
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_written_ahead_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("effects.json");
        let mut r = EffectsRecord::load(&path);
        r.note("be", &Operation::Freeze, "throttle").unwrap();
        r.note("be", &Operation::CpuLimit { cores: Some(0.1) }, "throttle")
            .unwrap();
        r.note(
            "yarn",
            &Operation::CpuLimit { cores: Some(1.0) },
            "capacity",
        )
        .unwrap();
        r.note(
            "yarn",
            &Operation::MemoryLimit {
                bytes: Some(1 << 30),
            },
            "capacity",
        )
        .unwrap();
        // The ladder squeezes yarn too: the capacity values are kept to restore to.
        r.note(
            "yarn",
            &Operation::CpuLimit { cores: Some(0.1) },
            "throttle",
        )
        .unwrap();
        let back = EffectsRecord::load(&path);
        assert_eq!(back.frozen(), ["be"]);
        assert!(back.squeezed());
        assert_eq!(back.capacity_values(), [("yarn", Some(1.0), Some(1 << 30))]);
        // Thawed and lifted: nothing left to own.
        r.note("be", &Operation::Thaw, "stop_scheduling").unwrap();
        r.note(
            "be",
            &Operation::CpuLimit { cores: None },
            "stop_scheduling",
        )
        .unwrap();
        let back = EffectsRecord::load(&path);
        assert!(back.frozen().is_empty());
        assert!(back.squeezed(), "yarn is still squeezed");
        assert!(!back.cgroups.contains_key("be"));
    }

    /// The value from before enforcer is the first one seen, kept across later writes and
    /// restarts, and forgotten when the limit is given back (it is in force again).
    #[test]
    fn the_value_before_enforcer_is_kept_until_the_limit_is_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("effects.json");
        let mut r = EffectsRecord::load(&path);
        let files = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(f, v)| (f.to_string(), v.to_string()))
                .collect()
        };
        r.remember_before("yarn", files(&[("cpu.max", "150000 100000")]));
        r.note(
            "yarn",
            &Operation::CpuLimit { cores: Some(1.0) },
            "capacity",
        )
        .unwrap();
        r.remember_before("yarn", files(&[("cpu.max", "100000 100000")]));
        r.remember_before(
            "yarn",
            files(&[("memory.high", "max"), ("memory.max", "4294967296")]),
        );
        r.note(
            "yarn",
            &Operation::MemoryLimit {
                bytes: Some(1 << 30),
            },
            "capacity",
        )
        .unwrap();
        let mut back = EffectsRecord::load(&path);
        assert_eq!(
            back.before("yarn", LimitKind::Cpu),
            Some(files(&[("cpu.max", "150000 100000")]))
        );
        assert_eq!(
            back.before("yarn", LimitKind::Memory),
            Some(files(&[
                ("memory.high", "max"),
                ("memory.max", "4294967296")
            ]))
        );
        back.note("yarn", &Operation::CpuLimit { cores: None }, "capacity")
            .unwrap();
        let back = EffectsRecord::load(&path);
        assert_eq!(back.before("yarn", LimitKind::Cpu), None);
        assert!(back.before("yarn", LimitKind::Memory).is_some());
    }

    #[test]
    fn a_damaged_record_is_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("effects.json");
        std::fs::write(&path, "{not json").unwrap();
        assert!(EffectsRecord::load(&path).cgroups.is_empty());
    }
}

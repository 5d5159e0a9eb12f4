//! Keeps SPEC §3's isolation true as processes come and go: every tick the offline cgroups'
//! process lists are scanned and new processes isolated (so a fork is caught within a tick
//! or two); when a cgroup stops being offline, what enforcer changed is put back.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use crate::{
    actuators::journal::JournalError,
    actuators::{Actuator, isolation::Previous},
    config::IsolationConfig,
};

/// Dead processes are forgotten every this many ticks.
const PRUNE_EVERY_TICKS: u64 = 10;

pub struct Isolator {
    config: IsolationConfig,
    cpu_root: PathBuf,
    /// pid -> (offline cgroup it was isolated in, what it had before).
    isolated: HashMap<i32, (String, Previous)>,
    ticks: u64,
}

fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

impl Isolator {
    pub fn new(config: IsolationConfig, cpu_root: &Path) -> Isolator {
        Isolator {
            config,
            cpu_root: cpu_root.to_path_buf(),
            isolated: HashMap::new(),
            ticks: 0,
        }
    }

    pub fn isolated(&self) -> usize {
        self.isolated.len()
    }

    /// `offline` holds the relative paths of every offline cgroup now.
    pub fn tick(
        &mut self,
        actuator: &mut Actuator,
        offline: &[String],
    ) -> Result<(), JournalError> {
        if !self.config.enabled {
            return Ok(());
        }
        self.ticks += 1;
        if self.ticks.is_multiple_of(PRUNE_EVERY_TICKS) {
            self.isolated
                .retain(|pid, _| Path::new(&format!("/proc/{pid}")).exists());
        }
        let offline_set: HashSet<&str> = offline.iter().map(String::as_str).collect();
        let stale: Vec<(i32, String, Previous)> = self
            .isolated
            .iter()
            .filter(|(_, (rel, _))| !offline_set.contains(rel.as_str()))
            .filter(|(pid, _)| Path::new(&format!("/proc/{pid}")).exists())
            .map(|(pid, (rel, prev))| (*pid, rel.clone(), *prev))
            .collect();
        self.isolated
            .retain(|_, (rel, _)| offline_set.contains(rel.as_str()));
        actuator.restore_isolation(&stale)?;

        let batch: Vec<(String, Vec<i32>)> = offline
            .iter()
            .filter_map(|rel| {
                let new: Vec<i32> = procs(&self.cpu_root.join(rel))
                    .into_iter()
                    .filter(|pid| !self.isolated.contains_key(pid))
                    .collect();
                (!new.is_empty()).then(|| (rel.clone(), new))
            })
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        for (pid, rel, previous) in
            actuator.isolate(&batch, self.config.oom_score_adj, self.config.nice)?
        {
            self.isolated.insert(pid, (rel, previous));
        }
        Ok(())
    }
}

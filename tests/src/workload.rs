//! The ladder's and the restart's workloads: one relative path in the cpu, cpuacct and
//! cgroup2 hierarchies (what kubelet makes for a pod), with a bounded CPU hog and the
//! kernel state a test asserts on; and the journal and status readers they share.

use enforcer::actuators::journal::{Entry, Outcome};

use crate::{
    cgroup::{TestCgroup, cpu_hog, spawn_in},
    daemon::Daemon,
    process::ChildGuard,
};

/// One workload: the same relative path in the cpu, cpuacct and cgroup2 hierarchies.
pub struct Workload {
    pub cpu: TestCgroup,
    _acct: TestCgroup,
    pub unified: TestCgroup,
}

impl Workload {
    pub fn new(name: &str) -> Workload {
        Workload {
            cpu: TestCgroup::create("cpu", name),
            _acct: TestCgroup::create("cpuacct", name),
            unified: TestCgroup::create("unified", name),
        }
    }

    /// A CPU hog in all three, for at most `seconds`.
    pub fn hog(&self, seconds: f64) -> ChildGuard {
        spawn_in(&[&self.cpu, &self._acct, &self.unified], cpu_hog(seconds))
    }

    /// `n` hogs (e.g. one per CPU, to fill the node).
    pub fn hogs(&self, n: usize, seconds: f64) -> Vec<ChildGuard> {
        (0..n).map(|_| self.hog(seconds)).collect()
    }

    /// `cgroup.freeze` says frozen (the ladder freezes through cgroup2 here).
    pub fn frozen(&self) -> bool {
        self.unified.read("cgroup.freeze").trim() == "1"
    }

    /// The v1 CFS quota in cores (`None`: no quota).
    pub fn quota_cores(&self) -> Option<f64> {
        let quota: i64 = self.cpu.read("cpu.cfs_quota_us").trim().parse().unwrap();
        let period: f64 = self.cpu.read("cpu.cfs_period_us").trim().parse().unwrap();
        (quota > 0).then(|| quota as f64 / period)
    }

    /// How often the kernel throttled it.
    pub fn nr_throttled(&self) -> u64 {
        self.cpu
            .read("cpu.stat")
            .lines()
            .find_map(|l| l.strip_prefix("nr_throttled "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The files the daemon must never touch on an online cgroup.
    pub fn files(&self) -> (String, String, String) {
        (
            self.cpu.read("cpu.cfs_quota_us"),
            self.cpu.read("cpu.shares"),
            self.unified.read("cgroup.freeze"),
        )
    }
}

/// Journal entries of `action` that took effect (applied, or decided in a dry run when
/// `dry_run_counts`).
pub fn taken<'a>(journal: &'a [Entry], action: &str, dry_run_counts: bool) -> Vec<&'a Entry> {
    journal
        .iter()
        .filter(|e| {
            e.action == action
                && (e.outcome == Outcome::Applied
                    || (dry_run_counts && e.outcome == Outcome::DryRun))
        })
        .collect()
}

/// `enforcer status --output json`, freshly asked.
pub fn status(daemon: &Daemon) -> serde_json::Value {
    let out = daemon.cli(&["status", "--output", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "enforcer status --output json: {e}\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            daemon.log()
        )
    })
}

/// `[classify]` with one rule per `(suffix, class, priority)`, each matching the cgroup named
/// `{base}-{suffix}` exactly (rule `test-{suffix}`), after the default rules.
pub fn rules(base: &str, units: &[(&str, &str, Option<&str>)]) -> String {
    let mut out = String::from("[classify]\nappend_defaults = true\n");
    for (suffix, class, priority) in units {
        out.push_str(&format!(
            "[[classify.rules]]\nname = \"test-{suffix}\"\nmatch = '{base}-{suffix}$'\nclass = \"{class}\"\n"
        ));
        if let Some(p) = priority {
            out.push_str(&format!("priority = \"{p}\"\n"));
        }
    }
    out
}

/// The ladder lowered so that the 2-core test machine crosses it with a hog per offline
/// unit (trigger 45 %, recover 30 %, sustained 300 ms, throttled at once to 5 % of the
/// node), freezing and evicting after the given delays.
pub fn lowered_ladder(freeze_after: &str, evict_after: &str) -> String {
    format!(
        "[ladder]\ncpu_trigger = 0.45\ncpu_recover = 0.30\nsustain = \"300ms\"\nthrottle_after = \"0s\"\nfreeze_after = \"{freeze_after}\"\nevict_after = \"{evict_after}\"\nevict_cooldown = \"1s\"\nrecover_hold = \"1500ms\"\nthrottle_cpu_share = 0.05\n"
    )
}

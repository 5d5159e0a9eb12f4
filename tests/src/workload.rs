//! The ladder's and the restart's workloads: one relative path in every cgroup hierarchy of
//! the node, whatever its layout (what kubelet makes for a pod), with a bounded CPU hog and
//! the kernel state a test asserts on; and the journal and status readers they share.

use enforcer::actuators::journal::{Entry, Outcome};

use crate::{cgroup::cpu_hog, daemon::Daemon, layout::Unit, process::ChildGuard};

/// One workload: a [`Unit`] of a given name.
pub struct Workload {
    pub unit: Unit,
}

impl Workload {
    pub fn new(name: &str) -> Workload {
        Workload {
            unit: Unit::named(name),
        }
    }

    /// A CPU hog in it, for at most `seconds`.
    pub fn hog(&self, seconds: f64) -> ChildGuard {
        self.unit.spawn(cpu_hog(seconds))
    }

    /// `n` hogs (e.g. one per CPU, to fill the node).
    pub fn hogs(&self, n: usize, seconds: f64) -> Vec<ChildGuard> {
        (0..n).map(|_| self.hog(seconds)).collect()
    }

    /// Frozen as the daemon freezes (cgroup2's `cgroup.freeze`, else v1's freezer).
    pub fn frozen(&self) -> bool {
        self.unit.frozen()
    }

    /// The CFS quota in cores (`None`: no quota).
    pub fn quota_cores(&self) -> Option<f64> {
        self.unit.cpu_quota_cores()
    }

    /// How often the kernel throttled it.
    pub fn nr_throttled(&self) -> u64 {
        self.unit.cpu_stat("nr_throttled")
    }

    /// The files the daemon must never touch on an online cgroup: its quota, its CPU
    /// weight and whether it is frozen.
    pub fn files(&self) -> (String, String, bool) {
        let v2 = self.unit.cpu_v2();
        (
            self.unit
                .read_cpu(if v2 { "cpu.max" } else { "cpu.cfs_quota_us" }),
            self.unit
                .read_cpu(if v2 { "cpu.weight" } else { "cpu.shares" }),
            self.frozen(),
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

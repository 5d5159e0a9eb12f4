//! Effects whose outcome comes in a later tick: a freeze the kernel has not completed when
//! the tick that asked for it moves on (a v1 task mid-exec, one in uninterruptible sleep),
//! a kill whose tasks have not all exited (dying under memory pressure can take seconds).
//! Its intent stays open in the journal; each tick after it reads the state once (and
//! writes a v1 freeze again, see `cgroupfs::FREEZE_TRIES`, or runs another v1 kill round,
//! see `cgroupfs::KILL_SPIN`) until it is done or out of tries and time, and the outcome is
//! journaled under the intent's number. The tick never waits on the kernel: an unsettled
//! effect costs each tick one read.

use std::time::Instant;

use super::{
    Actuator,
    pending::{FollowUp, Settled, Unsettled},
    transaction::concluded,
};
use crate::{
    actuators::{
        Operation,
        cgroupfs::{self, CgroupDirs, FreezeState},
        journal::{JournalError, Outcome},
    },
    clock::unix_now,
};

impl Actuator {
    /// Effects requested and not settled yet.
    pub fn unsettled(&self) -> usize {
        self.unsettled.len()
    }

    /// Looks once at each effect still unsettled: journals the outcome of those the kernel
    /// completed, or that ran out of tries or time, and keeps the others for the next tick.
    pub fn settle(&mut self, now: Instant) -> Result<Vec<Settled>, JournalError> {
        let mut settled = Vec::new();
        for mut u in std::mem::take(&mut self.unsettled) {
            let dirs = self.dirs_of(&u);
            let result = match &mut u.follow {
                FollowUp::Freeze(f) => match cgroupfs::follow_up_freeze(&dirs, f, now) {
                    Ok(true) => Some(Ok(Some(format!(
                        "frozen {} ms after it was requested",
                        f.age(now).as_millis()
                    )))),
                    Ok(false) => None,
                    Err(e) => Some(Err(e.to_string())),
                },
                FollowUp::Kill(f) => match cgroupfs::follow_up_kill(&dirs, f, now) {
                    Ok(Some(n)) => Some(Ok(Some(format!(
                        "{n} processes killed; the cgroup empty {} ms after the kill was requested",
                        f.age(now).as_millis()
                    )))),
                    Ok(None) => None,
                    Err(e) => Some(Err(e.to_string())),
                },
            };
            match result {
                Some(result) => settled.push(self.conclude(u, result)?),
                None => self.unsettled.push(u),
            }
        }
        Ok(settled)
    }

    /// A new effect (`by`: a thaw, a kill, another freeze) on a cgroup whose freeze or kill
    /// is still unsettled: its outcome is journaled now, as the kernel has it, so that no
    /// follow-up writes `FROZEN` again, or kills again, over what comes after it.
    pub(super) fn supersede(&mut self, rel: &str, by: &str) -> Result<(), JournalError> {
        let now = Instant::now();
        while let Some(i) = self
            .unsettled
            .iter()
            .position(|u| u.intent.target.as_deref() == Some(rel))
        {
            let u = self.unsettled.remove(i);
            let dirs = self.dirs_of(&u);
            let result = match &u.follow {
                FollowUp::Freeze(f) => {
                    let ms = f.age(now).as_millis();
                    match cgroupfs::freeze_state(&dirs) {
                        Ok(FreezeState::Frozen) => Ok(Some(format!(
                            "frozen {ms} ms after it was requested (seen as a {by} came)"
                        ))),
                        Ok(FreezeState::Pending(state)) => Err(format!(
                            "{}: freeze not complete ({state}) when a {by} came {ms} ms after it was requested; the {by} goes ahead",
                            f.path().display()
                        )),
                        Err(e) => Err(e.to_string()),
                    }
                }
                FollowUp::Kill(f) => {
                    let ms = f.age(now).as_millis();
                    let left = cgroupfs::pids(f.path());
                    if left.is_empty() {
                        Ok(Some(format!(
                            "{} processes killed; the cgroup empty when a {by} came {ms} ms after the kill was requested",
                            f.victims()
                        )))
                    } else {
                        Err(format!(
                            "{}: {} processes left when a {by} came {ms} ms after the kill was requested; the {by} goes ahead",
                            f.path().display(),
                            left.len()
                        ))
                    }
                }
            };
            self.conclude(u, result)?;
        }
        Ok(())
    }

    fn dirs_of(&self, u: &Unsettled) -> CgroupDirs {
        CgroupDirs::resolve(&self.layout, u.intent.target.as_deref().unwrap_or(""))
    }

    fn conclude(
        &mut self,
        u: Unsettled,
        result: Result<Option<String>, String>,
    ) -> Result<Settled, JournalError> {
        let kill = matches!(u.follow, FollowUp::Kill(_));
        let mut entry = u.intent;
        let (outcome, detail) =
            concluded(&entry.action, entry.target.as_deref(), &entry.stage, result);
        entry.at = unix_now();
        entry.outcome = outcome.clone();
        entry.detail = detail.clone();
        self.journal.append(&entry)?;
        // A kill done: nothing of the cgroup is left to own (its v1 freeze was noted ahead),
        // and the usage ledger bills the unit as killed under this number.
        if kill && outcome == Outcome::Applied {
            let target = entry.target.clone().unwrap_or_default();
            if let Err(e) = self.record.note(&target, &Operation::Kill, &entry.stage) {
                tracing::error!("effects record: {e}");
            }
            self.kills.push((target, entry.seq));
        }
        Ok(Settled {
            seq: entry.seq,
            stage: entry.stage,
            action: entry.action,
            target: entry.target.unwrap_or_default(),
            outcome,
            detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::Arc, time::Duration};

    use super::*;
    use crate::{
        actuators::{
            Operation, Request,
            cgroupfs::{FREEZE_BUDGET, FREEZE_SPIN},
            journal::{self, Journal, Outcome},
        },
        model::{
            Class,
            classify::{Rule, RuleSet},
            layout::CgroupLayout,
        },
    };

    /// A choke point over a cgroup2 "mount" that is a temp dir: `batch/c1` offline, its
    /// freezer files plain files whose `cgroup.events` the test writes as the kernel would.
    fn fixture(dir: &Path) -> (Actuator, std::path::PathBuf) {
        let root = dir.join("cgroup");
        let c1 = root.join("batch/c1");
        std::fs::create_dir_all(&c1).unwrap();
        std::fs::write(c1.join("cgroup.freeze"), "0\n").unwrap();
        std::fs::write(c1.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        let rules = RuleSet::new(vec![Rule::path(
            "batch",
            regex::Regex::new("^batch/").unwrap(),
            Class::Offline,
            None,
        )]);
        let mountinfo = format!("30 25 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.display());
        let layout = CgroupLayout::from_mountinfo(&mountinfo).unwrap();
        let journal = Journal::open(&dir.join("journal.jsonl")).unwrap();
        let a = Actuator::new(layout, Arc::new(rules), journal, false);
        (a, c1)
    }

    fn request(op: Operation) -> Request {
        Request {
            stage: "freeze".into(),
            target: "batch/c1".into(),
            op,
            reason: serde_json::json!("test"),
        }
    }

    /// (seq, action, outcome, detail) of every line.
    fn lines(dir: &Path) -> Vec<(u64, String, Outcome, Option<String>)> {
        journal::read(&dir.join("journal.jsonl"))
            .unwrap()
            .into_iter()
            .map(|e| (e.seq, e.action, e.outcome, e.detail))
            .collect()
    }

    /// Asks for a freeze the fixture's kernel never completes: its outcome is still to come.
    /// Returns when it was asked for.
    fn freeze_left_unsettled(a: &mut Actuator) -> Instant {
        let t0 = Instant::now();
        assert_eq!(
            a.apply(&request(Operation::Freeze)).unwrap(),
            Outcome::Intent
        );
        t0
    }

    #[test]
    fn a_freeze_that_does_not_complete_costs_its_tick_the_spin_and_fails_after_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, c1) = fixture(dir.path());
        let t0 = freeze_left_unsettled(&mut a);
        let held = t0.elapsed();
        assert!(held < FREEZE_SPIN + Duration::from_millis(15), "{held:?}");
        assert_eq!(
            std::fs::read_to_string(c1.join("cgroup.freeze")).unwrap(),
            "1"
        );
        assert_eq!(a.unsettled(), 1);
        // The ticks after it: one read each, no outcome before the budget.
        for ms in [100, 200, 299] {
            let t = Instant::now();
            assert_eq!(a.settle(t0 + Duration::from_millis(ms)).unwrap(), vec![]);
            assert!(t.elapsed() < Duration::from_millis(15), "{:?}", t.elapsed());
        }
        // The budget runs from the request, made just after t0.
        let settled = a.settle(Instant::now() + FREEZE_BUDGET).unwrap();
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].outcome, Outcome::Failed);
        assert_eq!(a.unsettled(), 0);
        let journal = lines(dir.path());
        assert_eq!(journal.len(), 2, "{journal:?}");
        assert_eq!(journal[0].2, Outcome::Intent);
        let (seq, action, outcome, detail) = &journal[1];
        assert_eq!(
            (seq, action.as_str(), outcome),
            (&journal[0].0, "freeze", &Outcome::Failed)
        );
        assert!(
            detail.as_deref().unwrap().contains(
                "cgroup/batch/c1: freeze stalled: still frozen 0 300ms after it was requested, written once"
            ),
            "{detail:?}"
        );
        // Nothing left to follow up: a later tick writes nothing more.
        assert_eq!(a.settle(t0 + FREEZE_BUDGET * 10).unwrap(), vec![]);
        assert_eq!(lines(dir.path()).len(), 2);
    }

    #[test]
    fn a_freeze_the_kernel_completes_between_ticks_is_applied_under_its_intent() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, c1) = fixture(dir.path());
        let t0 = freeze_left_unsettled(&mut a);
        std::fs::write(c1.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        let settled = a.settle(t0 + Duration::from_millis(100)).unwrap();
        assert_eq!(settled.len(), 1);
        assert_eq!(
            (settled[0].target.as_str(), &settled[0].outcome),
            ("batch/c1", &Outcome::Applied)
        );
        let journal = lines(dir.path());
        assert_eq!(journal[1].0, journal[0].0);
        assert_eq!(journal[1].2, Outcome::Applied);
        // Frozen at once: applied in the same call, nothing to follow up.
        assert_eq!(
            a.apply(&request(Operation::Freeze)).unwrap(),
            Outcome::Applied
        );
        assert_eq!(a.unsettled(), 0);
    }

    /// A thaw that comes while the freeze settles ends the follow-up first: no later tick
    /// writes the freeze again over the thaw.
    #[test]
    fn a_thaw_while_a_freeze_settles_concludes_it_and_nothing_freezes_again() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, c1) = fixture(dir.path());
        let t0 = freeze_left_unsettled(&mut a);
        assert_eq!(
            a.apply(&request(Operation::Thaw)).unwrap(),
            Outcome::Applied
        );
        assert_eq!(a.unsettled(), 0);
        let journal = lines(dir.path());
        let outcomes: Vec<(&str, &Outcome)> =
            journal.iter().map(|(_, a, o, _)| (a.as_str(), o)).collect();
        assert_eq!(
            outcomes,
            vec![
                ("freeze", &Outcome::Intent),
                ("freeze", &Outcome::Failed),
                ("thaw", &Outcome::Intent),
                ("thaw", &Outcome::Applied)
            ]
        );
        assert!(
            journal[1]
                .3
                .as_deref()
                .unwrap()
                .contains("freeze not complete (frozen 0) when a thaw came"),
            "{:?}",
            journal[1].3
        );
        assert_eq!(a.settle(t0 + FREEZE_BUDGET).unwrap(), vec![]);
        assert_eq!(
            std::fs::read_to_string(c1.join("cgroup.freeze")).unwrap(),
            "0"
        );
    }

    #[test]
    fn a_cgroup_removed_while_its_freeze_settles_is_one_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, c1) = fixture(dir.path());
        let t0 = freeze_left_unsettled(&mut a);
        std::fs::remove_dir_all(&c1).unwrap();
        let settled = a.settle(t0 + Duration::from_millis(100)).unwrap();
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].outcome, Outcome::Failed);
        assert_eq!(a.unsettled(), 0);
    }

    #[test]
    fn a_cgroup_reclassified_online_gets_back_only_what_enforcer_holds_on_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, c1) = fixture(dir.path());
        std::fs::write(c1.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        assert_eq!(
            a.apply(&request(Operation::Freeze)).unwrap(),
            Outcome::Applied
        );
        // A reload (or the pod's labels) makes it online.
        a.set_rules(Arc::new(RuleSet::new(vec![Rule::path(
            "web",
            regex::Regex::new("^batch/c1$").unwrap(),
            Class::Online,
            None,
        )])));
        let freeze = a.apply(&request(Operation::Freeze)).unwrap();
        assert_eq!(freeze, Outcome::Refused, "nothing new is done to it");
        let quota = a
            .apply(&request(Operation::CpuLimit { cores: None }))
            .unwrap();
        assert_eq!(quota, Outcome::Refused, "enforcer set no quota on it");
        std::fs::write(c1.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert_eq!(
            a.apply(&request(Operation::Thaw)).unwrap(),
            Outcome::Applied,
            "the freeze enforcer set is given back"
        );
        assert_eq!(
            std::fs::read_to_string(c1.join("cgroup.freeze")).unwrap(),
            "0"
        );
        assert_eq!(
            a.apply(&request(Operation::Thaw)).unwrap(),
            Outcome::Refused,
            "given back: nothing held any more"
        );
    }

    /// The fixture's cgroup as the kernel has it mid-kill: `cgroup.kill` there, a task
    /// listed in `cgroup.procs` (a pid that is not this test's) until the test empties it.
    fn dying(c1: &Path) {
        std::fs::write(c1.join("cgroup.kill"), "").unwrap();
        std::fs::write(c1.join("cgroup.procs"), "4194300\n").unwrap();
    }

    fn kill() -> Request {
        Request {
            stage: "evict".into(),
            ..request(Operation::Kill)
        }
    }

    #[test]
    fn a_kill_whose_tasks_take_time_to_exit_costs_its_tick_the_spin_and_is_applied_later() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, c1) = fixture(dir.path());
        dying(&c1);
        let t0 = Instant::now();
        assert_eq!(a.apply(&kill()).unwrap(), Outcome::Intent);
        assert!(
            t0.elapsed() < Duration::from_millis(20),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(
            std::fs::read_to_string(c1.join("cgroup.kill")).unwrap(),
            "1"
        );
        assert_eq!(a.settle(Instant::now()).unwrap(), vec![]);
        assert!(
            a.take_kills().is_empty(),
            "not billed as killed before it is done"
        );
        // The task exits.
        std::fs::write(c1.join("cgroup.procs"), "").unwrap();
        let settled = a.settle(Instant::now()).unwrap();
        assert_eq!(settled.len(), 1);
        assert_eq!(
            (
                settled[0].action.as_str(),
                &settled[0].outcome,
                settled[0].stage.as_str()
            ),
            ("kill", &Outcome::Applied, "evict")
        );
        assert_eq!(
            a.take_kills(),
            vec![("batch/c1".to_string(), settled[0].seq)]
        );
        let journal = lines(dir.path());
        assert_eq!(journal.len(), 2, "{journal:?}");
        assert_eq!(
            journal[0].0, journal[1].0,
            "the outcome under the intent's number"
        );
        assert!(
            journal[1]
                .3
                .as_deref()
                .unwrap()
                .contains("1 processes killed"),
            "{journal:?}"
        );
    }

    #[test]
    fn a_kill_that_leaves_survivors_fails_after_its_budget_with_their_pids() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, c1) = fixture(dir.path());
        dying(&c1);
        let before = Instant::now();
        assert_eq!(a.apply(&kill()).unwrap(), Outcome::Intent);
        let after = Instant::now();
        assert_eq!(
            a.settle(before + cgroupfs::KILL_BUDGET - Duration::from_millis(1))
                .unwrap(),
            vec![]
        );
        let settled = a.settle(after + cgroupfs::KILL_BUDGET).unwrap();
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].outcome, Outcome::Failed);
        assert!(
            settled[0].detail.as_deref().unwrap().contains("4194300"),
            "{settled:?}"
        );
        assert_eq!(a.unsettled(), 0);
        assert!(a.take_kills().is_empty());
    }

    #[test]
    fn a_limit_written_while_a_kill_settles_leaves_it_alone_a_new_kill_concludes_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, c1) = fixture(dir.path());
        dying(&c1);
        std::fs::write(c1.join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(a.apply(&kill()).unwrap(), Outcome::Intent);
        a.apply(&request(Operation::CpuLimit { cores: Some(0.5) }))
            .unwrap();
        assert_eq!(a.unsettled(), 1, "a limit does not conclude the kill");
        assert_eq!(a.apply(&kill()).unwrap(), Outcome::Intent);
        let journal = lines(dir.path());
        let kills: Vec<&Outcome> = journal
            .iter()
            .filter(|(_, action, ..)| action == "kill")
            .map(|(_, _, o, _)| o)
            .collect();
        assert_eq!(
            kills,
            [&Outcome::Intent, &Outcome::Failed, &Outcome::Intent],
            "the first kill concluded (tasks left) before the second: {journal:?}"
        );
        assert_eq!(a.unsettled(), 1);
    }
}

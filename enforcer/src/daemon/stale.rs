//! What enforcer still holds on a cgroup that is no longer one of its offline parents or
//! units — an offline parent under which an online pod was started (its offline children
//! are the parents now), a Yarn parent a reload classified otherwise, a pod relabelled
//! online — is given back: thawed, its CPU quota and memory limit put back to what they
//! were before enforcer. Otherwise a freeze or a limit written while the cgroup was offline
//! would hold online work forever: nothing else writes to a cgroup that is not a parent.
//!
//! Pure: the effects record and the offline side as the index has it in, effects out; the
//! record says what is held, the choke point lets a give-back through whatever the class.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::effects::{Done, Effect};
use crate::actuators::{Operation, Request, journal::Outcome, record::EffectsRecord};

/// The journal's stage of these give-backs.
pub const STAGE: &str = "give_back";

/// After a failed give-back, the next try waits this long (not every tick).
const RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct StaleHolds {
    /// The offline shape's version last looked at (`None`: never).
    checked: Option<u64>,
    /// Give-backs that failed: (cgroup, operation) → not before.
    retry_at: HashMap<(String, &'static str), Instant>,
}

/// The operations that give back a hold; which of them apply to a cgroup is the record's
/// to say ([`EffectsRecord::holds`], the same test the choke point lets them through by).
const GIVE_BACKS: [Operation; 3] = [
    Operation::Thaw,
    Operation::CpuLimit { cores: None },
    Operation::MemoryLimit { bytes: None },
];

impl StaleHolds {
    /// Whether the holds are looked at this tick: the offline side changed, or a failed
    /// give-back is due again.
    pub fn due(&self, shape_version: u64, now: Instant) -> bool {
        self.checked != Some(shape_version) || self.retry_at.values().any(|&t| now >= t)
    }

    /// This tick's give-backs. `owned` says whether a path is an offline parent or unit
    /// now; `shape_version` changes whenever the offline side does; `ready` is false until
    /// the index has been walked once (before that every hold would look stale).
    pub fn effects(
        &mut self,
        record: &EffectsRecord,
        owned: &dyn Fn(&str) -> bool,
        shape_version: u64,
        ready: bool,
        now: Instant,
    ) -> Vec<Effect> {
        if !ready || !self.due(shape_version, now) {
            return Vec::new();
        }
        self.checked = Some(shape_version);
        let mut out = Vec::new();
        for path in record.cgroups.keys() {
            if owned(path) {
                continue;
            }
            for op in GIVE_BACKS.into_iter().filter(|op| record.holds(path, op)) {
                let key = (path.clone(), op.name());
                if self.retry_at.get(&key).is_some_and(|&t| now < t) {
                    continue;
                }
                self.retry_at.remove(&key);
                out.push(Effect::Cgroup(Request {
                    stage: STAGE.into(),
                    target: path.clone(),
                    op,
                    reason: serde_json::json!({
                        "trigger": STAGE,
                        "why": "no longer an offline parent or unit (reclassified, or online \
                                work below it): what enforcer set is given back",
                    }),
                }));
            }
        }
        // Due retries were made above (or their hold is gone): none stays due.
        self.retry_at.retain(|_, t| now < *t);
        out
    }

    /// What came of this tick's give-backs: a failed one is tried again after [`RETRY`].
    pub fn observe(&mut self, results: &[(Effect, Done)], now: Instant) {
        for (effect, done) in results {
            if let (Effect::Cgroup(req), Done::Outcome(outcome)) = (effect, done)
                && req.stage == STAGE
                && !matches!(outcome, Outcome::Applied | Outcome::DryRun)
            {
                self.retry_at
                    .insert((req.target.clone(), req.op.name()), now + RETRY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> EffectsRecord {
        let mut r = EffectsRecord::in_memory();
        let be = "kubepods/besteffort";
        r.note(be, &Operation::Freeze, "freeze").unwrap();
        r.note(be, &Operation::CpuLimit { cores: Some(0.1) }, "throttle")
            .unwrap();
        r.note(
            "yarn",
            &Operation::MemoryLimit {
                bytes: Some(1 << 30),
            },
            "capacity",
        )
        .unwrap();
        r
    }

    fn ops(effects: &[Effect]) -> Vec<(String, Operation)> {
        effects
            .iter()
            .map(|e| match e {
                Effect::Cgroup(r) => (r.target.clone(), r.op.clone()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn what_is_held_on_a_cgroup_no_longer_offline_is_given_back_once() {
        let r = record();
        let mut s = StaleHolds::default();
        let now = Instant::now();
        let owned = |p: &str| p == "yarn";
        assert!(
            s.effects(&r, &owned, 1, false, now).is_empty(),
            "nothing before the index was walked"
        );
        let first = s.effects(&r, &owned, 1, true, now);
        assert_eq!(
            ops(&first),
            [
                ("kubepods/besteffort".to_string(), Operation::Thaw),
                (
                    "kubepods/besteffort".to_string(),
                    Operation::CpuLimit { cores: None }
                ),
            ]
        );
        let results: Vec<(Effect, Done)> = first
            .into_iter()
            .map(|e| (e, Done::Outcome(Outcome::Applied)))
            .collect();
        s.observe(&results, now);
        assert!(
            s.effects(&r, &owned, 1, true, now).is_empty(),
            "the offline side did not change: not looked at again"
        );
        // Everything owned: nothing to give back, whatever the version.
        assert!(s.effects(&r, &|_| true, 2, true, now).is_empty());
    }

    #[test]
    fn a_failed_give_back_is_tried_again_after_the_retry_not_every_tick() {
        let r = record();
        let mut s = StaleHolds::default();
        let now = Instant::now();
        let owned = |p: &str| p == "kubepods/besteffort";
        let first = s.effects(&r, &owned, 1, true, now);
        assert_eq!(
            ops(&first),
            [("yarn".to_string(), Operation::MemoryLimit { bytes: None })]
        );
        let results: Vec<(Effect, Done)> = first
            .into_iter()
            .map(|e| (e, Done::Outcome(Outcome::Failed)))
            .collect();
        s.observe(&results, now);
        assert!(!s.due(1, now + Duration::from_secs(29)));
        assert!(
            s.effects(&r, &owned, 2, true, now + Duration::from_secs(1))
                .is_empty()
        );
        let again = s.effects(&r, &owned, 2, true, now + RETRY);
        assert_eq!(ops(&again).len(), 1, "{again:?}");
        assert!(!s.due(2, now + RETRY), "no retry left due");
    }
}

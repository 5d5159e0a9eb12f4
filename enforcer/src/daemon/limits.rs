//! The one owner of the offline parents' CPU quota and memory limit.
//!
//! Two things want a say in them: the capacity rule (SPEC §2) and the ladder's throttle
//! (SPEC §4). Rather than two writers coordinating through each other's fields, every
//! write of these two knobs is decided here: while the ladder squeezes, its values; when it
//! steps down, the capacity rule's values (or no limit with capacity off); otherwise the
//! capacity rule's, dead-banded so the journal records changes rather than ticks. What was
//! written is known from the outcomes, so nothing is written twice.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::{
    census::Parent,
    effects::{Done, Effect},
};
use crate::{
    actuators::{
        Operation, Request, cgroupfs::memory_max_above, journal::Outcome, record::EffectsRecord,
    },
    policy::ladder::Decision,
};

/// After a failed write of the capacity rule (e.g. a memory limit the kernel cannot
/// reclaim down to), leave that limit alone this long instead of failing every tick.
const FAILURE_BACKOFF: Duration = Duration::from_secs(30);

/// Journal stage of the capacity rule's writes.
pub const CAPACITY_STAGE: &str = "capacity";

/// What was last written to one parent (`None`: never; `Some(None)`: the limit lifted).
#[derive(Debug, Default)]
struct Written {
    cores: Option<Option<f64>>,
    bytes: Option<Option<u64>>,
    cpu_backoff: Option<Instant>,
    memory_backoff: Option<Instant>,
    /// The ladder's release was asked for this tick, its outcome not seen yet.
    releasing: bool,
}

/// The capacity rule's wish for this tick.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityWish {
    /// Per parent: cores and bytes.
    pub per_parent: (f64, u64),
    /// Moves smaller than these are not written.
    pub cpu_band: f64,
    pub memory_band: u64,
    /// Journaled with every write.
    pub reason: serde_json::Value,
}

#[derive(Debug, Default)]
pub struct OfflineLimits {
    /// The ladder is squeezing: the capacity rule waits.
    squeezed: bool,
    written: HashMap<String, Written>,
    /// The least memory limit the squeeze writes on a parent (the capacity rule's floor,
    /// shared among the parents).
    pub memory_floor: u64,
}

/// `bytes`, raised so that no limit written can make the kernel OOM-kill offline work for
/// using what it uses now (a kill is the ladder's decision, journaled as a kill, never a side
/// effect of a limit). On cgroup2 the limit is `memory.high` (reclaim and throttling, no
/// kill) with `memory.max` a margin above it, so `bytes` only has to reach the use. On v1
/// the one limit is hard, and a task that allocates past it is reclaimed and then killed
/// (no swap on these nodes): it keeps the same margin above the use that `memory.max` has.
fn at_least_use(p: &Parent, bytes: u64) -> u64 {
    match p.memory_bytes {
        Some(used) if p.memory_v2 => bytes.max(used),
        Some(used) => bytes.max(memory_max_above(used)),
        None => bytes,
    }
}

fn limit_request(stage: &str, target: &str, op: Operation, reason: &serde_json::Value) -> Effect {
    Effect::Cgroup(Request {
        stage: stage.to_string(),
        target: target.to_string(),
        op,
        reason: reason.clone(),
    })
}

impl OfflineLimits {
    pub fn squeezed(&self) -> bool {
        self.squeezed
    }

    /// Takes over what a previous daemon wrote, from its effects record.
    pub fn adopt(&mut self, record: &EffectsRecord) {
        self.squeezed = record.squeezed();
        for (path, effects) in &record.cgroups {
            let w = self.written.entry(path.clone()).or_default();
            w.cores = effects.cpu.as_ref().map(|l| Some(l.value));
            w.bytes = effects.memory.as_ref().map(|l| Some(l.value));
        }
    }

    /// The ladder throttles: each parent's quota to `cores_per_parent`, and its memory limit
    /// to what it uses now (memory stops growing without a reclaim storm), never below the
    /// floor.
    pub fn squeeze(
        &mut self,
        d: &Decision,
        parents: &[Parent],
        cores_per_parent: f64,
    ) -> Vec<Effect> {
        self.squeezed = true;
        let reason = serde_json::to_value(d.trigger).unwrap_or_default();
        let stage = d.stage.name();
        let mut out = Vec::new();
        for p in parents {
            out.push(limit_request(
                stage,
                &p.path,
                Operation::CpuLimit {
                    cores: Some(cores_per_parent),
                },
                &reason,
            ));
            if let Some(used) = p.memory_bytes {
                out.push(limit_request(
                    stage,
                    &p.path,
                    Operation::MemoryLimit {
                        bytes: Some(at_least_use(p, used).max(self.memory_floor)),
                    },
                    &reason,
                ));
            }
        }
        out
    }

    /// The ladder steps down past throttling: the parents get `restore_to` back (the
    /// capacity rule's values), or no limit when capacity is off.
    pub fn release(
        &mut self,
        stage: &str,
        reason: serde_json::Value,
        parents: &[Parent],
        restore_to: Option<(f64, u64)>,
    ) -> Vec<Effect> {
        self.squeezed = false;
        let (cores, bytes) = restore_to.map_or((None, None), |(c, b)| (Some(c), Some(b)));
        let mut out = Vec::new();
        for p in parents {
            self.written.entry(p.path.clone()).or_default().releasing = true;
            // Never below what the parent uses now, as in `capacity`.
            let bytes = bytes.map(|b| at_least_use(p, b));
            out.push(limit_request(
                stage,
                &p.path,
                Operation::CpuLimit { cores },
                &reason,
            ));
            if p.memory_bytes.is_some() {
                out.push(limit_request(
                    stage,
                    &p.path,
                    Operation::MemoryLimit { bytes },
                    &reason,
                ));
            }
        }
        out
    }

    /// The capacity rule's writes for this tick: none while the ladder squeezes (`held`),
    /// otherwise what moved past its dead band since it was last written.
    pub fn capacity(
        &mut self,
        parents: &[Parent],
        wish: Option<&CapacityWish>,
        held: bool,
        now: Instant,
    ) -> Vec<Effect> {
        self.written
            .retain(|path, _| parents.iter().any(|p| &p.path == path));
        if held || self.squeezed {
            return Vec::new();
        }
        let Some(wish) = wish else {
            return self.give_back(parents, now);
        };
        let (cores, bytes) = wish.per_parent;
        let mut out = Vec::new();
        for p in parents {
            let w = self.written.entry(p.path.clone()).or_default();
            let cpu_due = w
                .cores
                .is_none_or(|c| c.is_none_or(|c| (c - cores).abs() > wish.cpu_band))
                && w.cpu_backoff.is_none_or(|t| now >= t);
            if cpu_due {
                out.push(limit_request(
                    CAPACITY_STAGE,
                    &p.path,
                    Operation::CpuLimit { cores: Some(cores) },
                    &wish.reason,
                ));
            }
            // Never below what the parent uses now (`at_least_use`): the limit is stepped
            // down toward its use as reclaim frees memory, so the rule can neither OOM-kill
            // offline work nor be refused with EBUSY on v1.
            let bytes = at_least_use(p, bytes);
            let mem_due = p.memory_bytes.is_some()
                && w.bytes
                    .is_none_or(|b| b.is_none_or(|b| b.abs_diff(bytes) > wish.memory_band))
                && w.memory_backoff.is_none_or(|t| now >= t);
            if mem_due {
                out.push(limit_request(
                    CAPACITY_STAGE,
                    &p.path,
                    Operation::MemoryLimit { bytes: Some(bytes) },
                    &wish.reason,
                ));
            }
        }
        out
    }

    /// Capacity is off (disabled, or by a reload, or for a successor of a daemon that had it
    /// on): every limit still written is given back (the value from before enforcer, or
    /// none), once, and after a failure not before the back-off.
    fn give_back(&mut self, parents: &[Parent], now: Instant) -> Vec<Effect> {
        let reason = serde_json::json!({
            "trigger": "capacity",
            "why": "capacity is off: the limit enforcer set is given back",
        });
        let mut out = Vec::new();
        for p in parents {
            let Some(w) = self.written.get(&p.path).filter(|w| !w.releasing) else {
                continue;
            };
            if matches!(w.cores, Some(Some(_))) && w.cpu_backoff.is_none_or(|t| now >= t) {
                out.push(limit_request(
                    CAPACITY_STAGE,
                    &p.path,
                    Operation::CpuLimit { cores: None },
                    &reason,
                ));
            }
            if matches!(w.bytes, Some(Some(_))) && w.memory_backoff.is_none_or(|t| now >= t) {
                out.push(limit_request(
                    CAPACITY_STAGE,
                    &p.path,
                    Operation::MemoryLimit { bytes: None },
                    &reason,
                ));
            }
        }
        out
    }

    /// What came of a write: recorded when it took effect (or would have, in a dry run);
    /// a failed capacity write backs off.
    pub fn observe(&mut self, effect: &Effect, done: &Done, now: Instant) {
        let (Effect::Cgroup(req), Done::Outcome(outcome)) = (effect, done) else {
            return;
        };
        let took = matches!(outcome, Outcome::Applied | Outcome::DryRun);
        let backoff = !took && req.stage == CAPACITY_STAGE;
        let w = match &req.op {
            Operation::CpuLimit { .. } | Operation::MemoryLimit { .. } => {
                self.written.entry(req.target.clone()).or_default()
            }
            _ => return,
        };
        w.releasing = false;
        match &req.op {
            Operation::CpuLimit { cores } if took => w.cores = Some(*cores),
            Operation::CpuLimit { .. } if backoff => w.cpu_backoff = Some(now + FAILURE_BACKOFF),
            Operation::MemoryLimit { bytes } if took => w.bytes = Some(*bytes),
            Operation::MemoryLimit { .. } if backoff => {
                w.memory_backoff = Some(now + FAILURE_BACKOFF)
            }
            _ => {}
        }
    }
}

//! The controllers of one tick, as functions of (sample, state, time) → effects: the
//! protection ladder, isolation, and the offline limits with the capacity rule behind them.
//! Nothing here reads or writes the node, so their interplay is unit-tested with recorded
//! samples (`daemon/tests.rs`).

use std::time::Instant;

use super::{
    capacity::CapacityController,
    census::Census,
    effects::{Done, Effect},
    isolate::Isolator,
    limits::OfflineLimits,
    protect::Protector,
};
use crate::policy::{
    capacity::NodeUsage,
    ladder::{Signals, Stage},
};

/// The node's figures for one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct TickInput {
    /// CLOCK_MONOTONIC nanoseconds of the sample.
    pub at_ns: u64,
    /// Busy share of the node's CPUs over the window.
    pub node_cpu: f64,
    /// Node memory in use, 0..1.
    pub node_memory: f64,
    /// Cumulative direct-reclaim stall, all tasks.
    pub direct_stall_ns_total: u64,
    pub online_cpus: u32,
    /// The node and its online use, for the capacity rule.
    pub node: NodeUsage,
    pub minute_of_day: u32,
}

pub struct Controllers {
    pub protector: Protector,
    pub isolator: Isolator,
    pub capacity: CapacityController,
    pub limits: OfflineLimits,
}

impl Controllers {
    /// The ladder's signals for this tick, and whether it needs the offline units read.
    pub fn signals(&mut self, input: &TickInput) -> (Signals, bool) {
        let signals = self.protector.signals(
            input.at_ns,
            input.node_cpu,
            input.node_memory,
            input.direct_stall_ns_total,
        );
        let engaged = self.protector.engaged(&signals);
        (signals, engaged)
    }

    /// Everything the controllers want done this tick, in order: the ladder's actions
    /// first (protection before anything else), then isolation, then the capacity rule.
    pub fn decide(
        &mut self,
        signals: Signals,
        input: &TickInput,
        census: &Census,
        alive: &dyn Fn(i32) -> bool,
        now: Instant,
    ) -> Vec<Effect> {
        let parents = census.parents.len();
        // A step down restores the values the capacity rule had reached so far.
        let restore_to = self.capacity.per_parent(parents);
        let mut effects = self.protector.step(
            signals,
            census,
            input.online_cpus,
            &mut self.limits,
            restore_to,
        );
        effects.extend(self.isolator.decide(&census.procs, alive));
        let held = self.protector.stage() >= Stage::Throttle;
        let wish = self
            .capacity
            .tick(&input.node, input.minute_of_day, parents, held);
        effects.extend(
            self.limits
                .capacity(&census.parents, wish.as_ref(), held, now),
        );
        effects
    }

    /// Tells each controller what came of the effects it asked for.
    pub fn observe(&mut self, results: &[(Effect, Done)], now: Instant) {
        for (effect, done) in results {
            self.protector.observe(effect, done);
            self.limits.observe(effect, done, now);
            self.isolator.observe(done);
        }
    }
}

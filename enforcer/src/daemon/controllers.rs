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
use crate::actuators::record::EffectsRecord;
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
        self.limits.memory_floor = self
            .capacity
            .memory_floor_per_parent(input.node.memory_bytes, parents);
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
            .tick(input.at_ns, &input.node, input.minute_of_day, parents, held);
        effects.extend(self.capacity.take_event());
        effects.extend(
            self.limits
                .capacity(&census.parents, wish.as_ref(), held, now),
        );
        effects
    }

    /// Takes over what a previous daemon recorded (kill -9, crash, upgrade): the limits it
    /// wrote, the capacity it had reached, and, when it left offline work frozen or
    /// squeezed, the ladder at throttle until fresh signals decide. Returns whether the
    /// ladder adopted anything.
    pub fn adopt(
        &mut self,
        record: &EffectsRecord,
        now_ns: u64,
        settle: std::time::Duration,
    ) -> bool {
        self.limits.adopt(record);
        self.capacity.adopt(record);
        self.isolator.adopt(record);
        let frozen: Vec<String> = record.frozen().into_iter().map(String::from).collect();
        if frozen.is_empty() && !record.squeezed() {
            return false;
        }
        self.protector.adopt(now_ns, frozen, settle);
        true
    }

    /// SIGTERM: thaw, reopen the gate, and bring the ladder's squeeze back to the capacity
    /// rule's values (or no limit without it); the capacity limits stay in force, so a
    /// rolling update does not let offline work burst between two daemons.
    pub fn shutdown(&mut self, census: &Census) -> Vec<Effect> {
        let mut effects = self.protector.shutdown(census);
        if self.limits.squeezed() {
            let restore_to = self.capacity.per_parent(census.parents.len());
            effects.extend(self.limits.release(
                "shutdown",
                serde_json::json!({"trigger": "shutdown"}),
                &census.parents,
                restore_to,
            ));
        }
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

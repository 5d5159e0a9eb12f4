//! The sampler thread. One tick is a pipeline:
//!
//! 1. **sample**: CPU and reclaim read once from the kernel programs, node memory from
//!    `/proc`;
//! 2. **account**: the figures into the shared state, and the offline side captured from
//!    the index (one lock);
//! 3. **census**: the offline parents', units' and cgroups' processes and memory read from
//!    the node through [`Host`] (no lock);
//! 4. **decide**: the controllers turn (sample, state, time) into effects;
//! 5. **apply**: the effects through the choke point, in order, and what came of them back
//!    to the controllers;
//! 6. **network**: the network controller's tick (its tc passes through the same choke
//!    point);
//! 7. **publish**: the controllers' views into the shared state (one lock);
//!
//! then the map entries of removed cgroups dropped, the per-class memory read once a
//! second, and the cgroup ids no index knows handed to discovery (`discovery.rs`, its own
//! thread: the tick never walks a tree).

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::Sender,
    },
    time::{Duration, Instant},
};

use anyhow::anyhow;

use super::{
    census::{self, CgroupRoots, OfflineView},
    controllers::{Controllers, TickInput},
    effects,
    memory::MemoryAccounting,
    network::{NetworkController, TcReply},
    reload::{self, ReloadRequest, Trigger},
    state::NodeState,
};
use crate::{
    actuators::Actuator,
    config::Config,
    host::{self, Host},
    model::{Class, classify::RuleSet, layout::CgroupLayout},
    policy::capacity::NodeUsage,
    sampling::{
        cpu::{CpuReading, CpuSampler},
        poll::CgroupfsPoller,
        programs::Programs,
        reclaim::{ReclaimSampler, ReclaimWake},
    },
    surfaces::snapshot::TcRequest,
};

/// Where the tick's CPU figures come from.
pub(super) enum CpuSource {
    Ebpf(Box<CpuSampler>),
    Cgroupfs(CgroupfsPoller),
}

/// How often the per-class memory and the node's pressure are read.
const NODE_READ_INTERVAL: Duration = Duration::from_secs(1);

fn online_cpus() -> u32 {
    aya::util::online_cpus()
        .map(|c| c.len() as u32)
        .unwrap_or(1)
}

/// A journal write failure keeps `/healthz` failing this long.
const JOURNAL_FAILING_FOR: Duration = Duration::from_secs(60);

/// Map reads that fail this many times in a row stop the daemon.
const MAX_CONSECUTIVE_READ_FAILURES: u32 = 50;

/// A tick woken by direct reclaim comes at least this long after the one before (and a
/// quarter of the tick at least): a reclaim storm costs a bounded number of ticks.
const RECLAIM_WAKE_MIN_GAP: Duration = Duration::from_millis(10);

pub(super) struct SamplerLoop {
    pub(super) sampler: CpuSource,
    pub(super) reclaim: ReclaimSampler,
    /// Direct-reclaim episodes as they end: the loop's sleep ends on one (`None`: the
    /// programs' ring could not be had, ticks keep their schedule).
    pub(super) reclaim_wake: Option<ReclaimWake>,
    /// The choke point: the daemon's, lent to the apply step and the network controller.
    pub(super) actuator: Actuator,
    pub(super) controllers: Controllers,
    pub(super) host: Box<dyn Host>,
    pub(super) cgroup_roots: CgroupRoots,
    pub(super) memory: MemoryAccounting,
    /// The running configuration's classification rules (replaced on reload).
    pub(super) rules: Arc<RuleSet>,
    /// The CPU hierarchy's layout, for the per-class memory reads.
    pub(super) layout: CgroupLayout,
    /// Cgroup ids the sampler saw that no index knows, for discovery to look for.
    pub(super) unknown_ids: Sender<Vec<u64>>,
    /// When the per-class memory and the node's pressure were last read.
    pub(super) node_read_at: Option<Instant>,
    pub(super) network: Option<NetworkController>,
    /// `enforcer tc show|apply` requests from the control socket.
    pub(super) tc_inbox: std::sync::mpsc::Receiver<(TcRequest, TcReply)>,
    // Keeps the programs attached; dropped (detached) when the loop ends.
    pub(super) programs: Programs,
    pub(super) tick: Duration,
    pub(super) config_path: Option<PathBuf>,
    pub(super) state: Arc<Mutex<NodeState>>,
    /// When a journal entry last could not be written.
    pub(super) journal_failed_at: Option<Instant>,
    /// The pod list as last applied to the indexes and the choke point.
    pub(super) pods: super::pods::PodWatch,
    /// The offline cgroups' processes, read for the isolation when they ran.
    pub(super) procs: super::procs::ProcsReader,
    /// The offline parents, units and cgroups, computed again when the index changes.
    pub(super) offline_shape: census::OfflineShape,
    /// Controllers missing or not delegated to the offline parents, checked again when
    /// the parents change.
    pub(super) parent_gaps: super::gaps::ParentGaps,
    /// The offline units' usage for the ledger.
    pub(super) billing: super::billing::Billing,
    /// What enforcer holds on cgroups that stopped being offline parents or units.
    pub(super) stale: super::stale::StaleHolds,
}

impl SamplerLoop {
    pub(super) fn run(mut self, stop: &AtomicBool, reload: &ReloadRequest) -> anyhow::Result<()> {
        let mut next_tick = Instant::now();
        let mut last_tick = Instant::now();
        let mut consecutive_failures = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let woken = self.sleep_until(next_tick, last_tick);
            last_tick = Instant::now();
            // A tick woken by reclaim runs now and leaves the schedule as it was.
            let lag = if woken {
                Duration::ZERO
            } else {
                let lag = last_tick.saturating_duration_since(next_tick);
                next_tick += self.tick;
                // After a long stall (suspend, debugger), do not run a burst of catch-up
                // ticks.
                if next_tick < last_tick {
                    next_tick = last_tick + self.tick;
                }
                lag
            };
            if let Some(trigger) = reload.take() {
                self.reload(trigger);
            }
            let reading = match self.read_cpu() {
                Ok(r) => {
                    consecutive_failures = 0;
                    r
                }
                Err(e) => {
                    consecutive_failures += 1;
                    {
                        let mut st = self.state.lock().unwrap();
                        st.health.read_failures_total += 1;
                        st.health.consecutive_read_failures = consecutive_failures;
                    }
                    tracing::error!("{e}");
                    if consecutive_failures >= MAX_CONSECUTIVE_READ_FAILURES {
                        stop.store(true, Ordering::Relaxed);
                        return Err(anyhow!(
                            "giving up after {MAX_CONSECUTIVE_READ_FAILURES} failed map reads: {e}"
                        ));
                    }
                    continue;
                }
            };
            let unknown = self.tick_once(reading, lag, woken).inspect_err(|_| {
                stop.store(true, Ordering::Relaxed);
            })?;
            if !unknown.is_empty() {
                // Discovery walks for them (its events should have said; a loss did not).
                let _ = self.unknown_ids.send(unknown);
            }
            self.forget_removed();
            self.billing.tick(
                &self.state,
                self.host.as_ref(),
                &self.cgroup_roots,
                crate::clock::monotonic_ns(),
            );
            if self
                .node_read_at
                .is_none_or(|t| t.elapsed() >= NODE_READ_INTERVAL)
            {
                self.read_node();
            }
            self.apply_pods();
        }
        self.shutdown();
        self.billing.shutdown();
        if let Some(network) = &mut self.network
            && let Err(e) = network.shutdown(&mut self.actuator)
        {
            tracing::error!("removing enforcer's tc objects: {e}");
        }
        Ok(())
    }

    /// Sleeps until the tick at `deadline`, or until a direct-reclaim episode ends (then
    /// true: the tick runs at once). On a node without swap the page cache can run out
    /// within a few hundred milliseconds of the first stall; waiting up to a tick, then a
    /// tick per ladder step, lets the kernel's OOM killer act first. Never sooner than
    /// `RECLAIM_WAKE_MIN_GAP` (or a quarter of the tick) after the `last` tick.
    fn sleep_until(&mut self, deadline: Instant, last: Instant) -> bool {
        let earliest = last + RECLAIM_WAKE_MIN_GAP.max(self.tick / 4);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let Some(wake) = &mut self.reclaim_wake else {
                std::thread::sleep(deadline - now);
                return false;
            };
            if now < earliest {
                // Records that come meanwhile wait in the ring.
                std::thread::sleep(earliest.min(deadline) - now);
                continue;
            }
            if wake.wait(deadline - now) {
                wake.drain();
                return true;
            }
        }
    }

    /// SIGTERM: nothing stays frozen, the ladder's squeeze goes back to the capacity
    /// rule's values, the capacity limits stay (see `Controllers::shutdown`).
    fn shutdown(&mut self) {
        // What the kernel had not completed (a kill whose tasks are still exiting): followed
        // up for a second at most, so that the journal concludes it rather than leaving an
        // intent open.
        let until = Instant::now() + Duration::from_secs(1);
        while self.actuator.unsettled() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
            match self.actuator.settle(Instant::now()) {
                Ok(settled) => self.controllers.protector.observe_settled(&settled),
                Err(e) => {
                    tracing::error!("shutting down: {e}");
                    break;
                }
            }
        }
        let view = {
            let st = self.state.lock().unwrap();
            OfflineView::capture(&st.index, &st.usage)
        };
        let census = census::read(self.host.as_ref(), &self.cgroup_roots, &view, false, None);
        let effects = self.controllers.shutdown(&census);
        if effects.is_empty() {
            return;
        }
        tracing::info!(
            effects = effects.len(),
            "shutting down: thawing and lifting the ladder's squeeze"
        );
        match effects::apply(&mut self.actuator, effects) {
            Ok(results) => self.controllers.observe(&results, Instant::now()),
            Err(e) => tracing::error!("shutting down: {e}"),
        }
    }

    fn read_cpu(&mut self) -> Result<CpuReading, crate::sampling::error::SamplerError> {
        match &mut self.sampler {
            CpuSource::Ebpf(s) => s.read(),
            CpuSource::Cgroupfs(p) => {
                let cgroups: Vec<(u64, String)> = {
                    let st = self.state.lock().unwrap();
                    st.index
                        .iter()
                        .map(|e| (e.id, e.path.to_string()))
                        .collect()
                };
                Ok(p.read(&cgroups))
            }
        }
    }

    /// One tick after the CPU read; returns the cgroup ids the index does not know.
    fn tick_once(
        &mut self,
        reading: CpuReading,
        lag: Duration,
        woken_by_reclaim: bool,
    ) -> anyhow::Result<Vec<u64>> {
        let at_ns = reading.at_ns;
        // 1. sample
        let reclaim = self.reclaim.read().unwrap_or_else(|e| {
            tracing::error!("{e}");
            Default::default()
        });
        let meminfo = host::meminfo(self.host.as_ref());

        // 2. account, and capture what the controllers need of the index.
        let (unknown, input, view, signals, engaged, index_walked) = {
            let mut guard = self.state.lock().unwrap();
            let st = &mut *guard;
            super::state::record_tick(&mut st.health, &reading, lag, woken_by_reclaim);
            let index = &st.index;
            let unknown =
                st.usage
                    .update(reading.at_ns, reading.busy_ns, &reading.per_cgroup, |id| {
                        index.get(id).map(|e| (e.class, e.priority))
                    });
            let memory_index = st.memory_index.as_ref().unwrap_or(&st.index);
            st.reclaim_by_class = self.memory.reclaim_by_class(at_ns, &reclaim, memory_index);
            st.reclaim = reclaim.total;
            st.reclaim_kswapd_wakeups = reclaim.kswapd_wakeups;
            st.reclaim_kswapd_by_node = reclaim.kswapd_wakeups_by_node.clone();
            let cpus = st.online_cpus;
            let online_cores: f64 = st
                .usage
                .classes()
                .filter(|((class, _), _)| *class == Class::Online)
                .map(|(_, t)| t.window.rate())
                .sum();
            let input = TickInput {
                at_ns,
                node_cpu: st.usage.node_utilisation(cpus),
                node_memory: meminfo.used_ratio(),
                direct_stall_ns_total: reclaim.total.direct_stall_ns,
                online_cpus: cpus,
                node: NodeUsage {
                    cpus: f64::from(cpus),
                    memory_bytes: self.memory.total_bytes,
                    online_cpu: online_cores / f64::from(cpus.max(1)),
                    online_memory_bytes: self.memory.online_bytes,
                },
                minute_of_day: crate::clock::local_minute_of_day(),
            };
            self.offline_shape.refresh(&st.index);
            // The ladder's signals are the input's alone; whether it is engaged says whether
            // the units (and their CPU rates) are wanted at all.
            let (signals, engaged) = self.controllers.signals(&input);
            let view = OfflineView::of(&self.offline_shape, &st.usage, engaged);
            let index_walked = st.discovery.walks_total > 0;
            (unknown, input, view, signals, engaged, index_walked)
        };

        // 3. census, 4. decide, 5. apply.
        let host = self.host.as_ref();
        let now = Instant::now();
        let procs = self
            .controllers
            .isolator
            .enabled()
            .then_some((&mut self.procs, now));
        let census = census::read(host, &self.cgroup_roots, &view, engaged, procs);
        if let Some(gaps) = self
            .parent_gaps
            .update(host, census.parents.iter().map(|p| p.path.as_str()))
        {
            self.controllers.protector.view.controller_gaps = gaps.to_vec();
        }
        // Freezes and kills that earlier ticks requested and the kernel had not completed:
        // one look each, their outcome journaled when there is one (never waited for).
        let settled = self
            .actuator
            .settle(now)
            .map_err(|e| anyhow!("{e}; stopping"))?;
        self.controllers.protector.observe_settled(&settled);
        let alive = |pid| host::alive(host, pid);
        let mut decided = self
            .controllers
            .decide(signals, &input, &census, &alive, now);
        // Holds on cgroups that are no longer offline parents or units: given back. Looked
        // at when the offline side changed (the record forgets removed cgroups first).
        let shape = &self.offline_shape;
        if index_walked && self.stale.due(shape.version(), now) {
            self.actuator.forget_gone();
        }
        decided.extend(self.stale.effects(
            self.actuator.record(),
            &|path| shape.owns(path),
            shape.version(),
            index_walked,
            now,
        ));
        // The journal no longer fails on I/O (it falls back to stderr); an error here is one
        // the daemon cannot act past, so it stops.
        let results =
            effects::apply(&mut self.actuator, decided).map_err(|e| anyhow!("{e}; stopping"))?;
        self.controllers.observe(&results, Instant::now());
        self.stale.observe(&results, Instant::now());
        self.billing.killed(&self.actuator.take_kills());

        // 6. network.
        self.network_tick(at_ns)?;

        // 7. publish.
        let mut st = self.state.lock().unwrap();
        st.protection = self.controllers.protector.view.clone();
        let failures = self.actuator.journal_write_failures();
        if failures > st.protection.journal_write_failures_total {
            self.journal_failed_at = Some(Instant::now());
        }
        st.protection.journal_write_failures_total = failures;
        st.health.journal_failing = self
            .journal_failed_at
            .is_some_and(|t| t.elapsed() < JOURNAL_FAILING_FOR);
        st.capacity = self.controllers.capacity.view.clone();
        // The capacity for the Node's annotations: queued (the publisher dead-bands and
        // rate-limits it on its own thread), never waited for.
        if let Some(capacity) = self.controllers.capacity.applied() {
            self.actuator.publish_capacity(capacity);
        }
        // The parents as the kernel has them: read again when this tick acted on the node,
        // so that what the surfaces show (frozen, quota, limit) is never a belief.
        st.capacity.parents = if results.is_empty() {
            census.parents.iter().map(|p| p.state.clone()).collect()
        } else {
            census
                .parents
                .iter()
                .map(|p| census::parent_state(self.host.as_ref(), &self.cgroup_roots, &p.path))
                .collect()
        };
        if !st.capacity.parents.is_empty() {
            st.protection.frozen = st.capacity.parents.iter().any(|p| p.frozen);
        }
        Ok(unknown)
    }

    /// One tick of the network controller, and the operator's tc requests.
    fn network_tick(&mut self, at_ns: u64) -> anyhow::Result<()> {
        if let Some(network) = &mut self.network
            && let Err(e) = network.tick(
                at_ns,
                &self.state,
                &mut self.actuator,
                &self.programs,
                &self.rules,
            )
        {
            return Err(anyhow!("{e}; stopping"));
        }
        // One request a tick: each is a whole tc pass, and however many the control socket
        // queued, the tick after this one must come on time.
        if let Ok((req, reply)) = self.tc_inbox.try_recv() {
            let answer = match &mut self.network {
                Some(n) => n.request(req, &mut self.actuator, &self.programs),
                None => Err("network is off (network.enabled = false)".into()),
            };
            let _ = reply.send(answer);
        }
        Ok(())
    }

    /// A new pod list from the runtime: the indexes and the choke point classify with it.
    fn apply_pods(&mut self) {
        let mut st = self.state.lock().unwrap();
        let Some(pods) = self.pods.update(&mut st, &self.rules) else {
            return;
        };
        drop(st);
        self.actuator.set_pods(pods);
    }

    /// The map entries of cgroups discovery removed from the indexes (the network
    /// controller drops its own).
    fn forget_removed(&mut self) {
        let (cpu, reclaim) = {
            let mut st = self.state.lock().unwrap();
            if self.network.is_none() {
                st.forget.net.clear(); // no network sampler to drop them from
            }
            if st.forget.cpu.is_empty() && st.forget.reclaim.is_empty() {
                return;
            }
            (
                std::mem::take(&mut st.forget.cpu),
                std::mem::take(&mut st.forget.reclaim),
            )
        };
        if let CpuSource::Ebpf(s) = &mut self.sampler {
            // What the removed cgroups ran after the last tick still goes to their unit.
            self.billing.final_cpu(&s.totals_of(&cpu));
            s.forget(cpu);
        }
        self.reclaim.forget(reclaim);
    }

    /// Once a second: memory per class (hierarchical use of each class's top cgroups), the
    /// node's pressure, the online CPUs.
    fn read_node(&mut self) {
        self.node_read_at = Some(Instant::now());
        let node_used = host::meminfo(self.host.as_ref()).used_ratio();
        let class_roots = MemoryAccounting::class_roots(&self.state.lock().unwrap().index);
        let by_class = self
            .memory
            .class_memory(&self.layout, &class_roots, node_used);
        let pressure = crate::sampling::psi::read();
        let cpus = online_cpus();
        let mut st = self.state.lock().unwrap();
        st.memory = by_class;
        st.pressure = pressure;
        st.online_cpus = cpus;
    }

    /// SIGHUP or a change of the file: re-read it and apply its classification rules,
    /// `top_n` and the network limits. A bad file is said in one line (file, field) and
    /// counted, and the running configuration stays.
    fn reload(&mut self, trigger: Trigger) {
        let why = trigger.as_str();
        let Some(path) = &self.config_path else {
            tracing::info!("{why}: no config file to reload (running on defaults)");
            return;
        };
        match Config::load(path) {
            Ok(config) => {
                self.rules = config.rules.clone();
                self.actuator.set_rules(config.rules.clone());
                let mut st = self.state.lock().unwrap();
                let pods = st.pods.clone();
                // Discovery classifies new cgroups with the state's rules, under this lock.
                st.rules = config.rules.clone();
                st.index.reclassify(&self.rules, &pods);
                if let Some(index) = st.net.index.as_mut() {
                    index.reclassify(&self.rules, &pods);
                }
                if let Some(index) = st.memory_index.as_mut() {
                    index.reclassify(&self.rules, &pods);
                }
                st.top_n = config.daemon.top_n;
                if let Some(n) = &mut self.network {
                    n.reload(&config.network);
                }
                reload::succeeded(&mut st.config, crate::clock::unix_now());
                tracing::info!(path = %path.display(), "{why}: configuration reloaded (classification rules, top_n, network limits)");
            }
            Err(e) => {
                reload::failed(&mut self.state.lock().unwrap().config, &e.to_string());
                tracing::error!("{why}: {e}; keeping the running configuration");
            }
        }
    }
}

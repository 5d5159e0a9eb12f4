//! The sampler thread: one tick reads the CPU figures, accounts them, runs the protection
//! ladder, the isolator and the capacity controller, and rescans the cgroup tree when due.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::anyhow;

use super::{
    UNKNOWN_RESCANS_BEFORE_FORGET,
    capacity::CapacityController,
    isolate::Isolator,
    online_cpus,
    protect::{self, NodeView, Protector},
    state::NodeState,
};
use crate::{
    config::Config,
    model::{
        Class,
        classify::RuleSet,
        index::CgroupIndex,
        layout::{CgroupLayout, walk},
    },
    sampling::{
        cpu::CpuSampler, poll::CgroupfsPoller, programs::Programs, reclaim::ReclaimSampler,
    },
    surfaces::snapshot::{ClassMemory, ClassReclaim},
};

/// Where the tick's CPU figures come from.
pub(super) enum CpuSource {
    Ebpf(Box<CpuSampler>),
    Cgroupfs(CgroupfsPoller),
}

pub(super) struct SamplerLoop {
    pub(super) sampler: CpuSource,
    pub(super) reclaim: ReclaimSampler,
    pub(super) protector: Protector,
    pub(super) isolator: Isolator,
    pub(super) capacity: CapacityController,
    /// The memory hierarchy's own index when it is not the CPU one (v1 and hybrid hosts):
    /// reclaim is charged to memory cgroup ids.
    pub(super) memory_root: Option<PathBuf>,
    pub(super) memory_index: CgroupIndex,
    /// memcg reclaim stall per class, for the per-class memory-pressure signal.
    pub(super) memcg_stall: HashMap<Class, crate::policy::window::RateWindow>,
    pub(super) window_ns: u64,
    pub(super) reclaim_stall_trigger: f64,
    /// Online memory (hierarchical use of the online class roots), refreshed at rescans.
    pub(super) online_memory_bytes: u64,
    pub(super) memory_total_bytes: u64,
    pub(super) network: Option<super::network::NetworkController>,
    /// `enforcer tc show|apply` requests from the control socket.
    pub(super) tc_inbox: std::sync::mpsc::Receiver<(
        crate::surfaces::snapshot::TcRequest,
        super::network::TcReply,
    )>,
    // Keeps the programs attached; dropped (detached) when the loop ends.
    pub(super) programs: Programs,
    pub(super) root: PathBuf,
    pub(super) layout: CgroupLayout,
    pub(super) rules: Arc<RuleSet>,
    pub(super) tick: Duration,
    pub(super) rescan_interval: Duration,
    pub(super) config_path: Option<PathBuf>,
    pub(super) state: Arc<Mutex<NodeState>>,
}

impl SamplerLoop {
    pub(super) fn run(mut self, stop: &AtomicBool, reload: &AtomicBool) -> anyhow::Result<()> {
        let mut unknown_for: HashMap<u64, u32> = HashMap::new();
        let mut next_tick = Instant::now();
        let mut last_rescan: Option<Instant> = None;
        let mut consecutive_failures = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now < next_tick {
                std::thread::sleep(next_tick - now);
            }
            let lag = Instant::now().saturating_duration_since(next_tick);
            next_tick += self.tick;
            // After a long stall (suspend, debugger), do not run a burst of catch-up ticks.
            if next_tick < Instant::now() {
                next_tick = Instant::now() + self.tick;
            }
            if reload.swap(false, Ordering::Relaxed) {
                self.reload_rules();
            }

            let read = match &mut self.sampler {
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
            };
            let reading = match read {
                Ok(r) => {
                    consecutive_failures = 0;
                    r
                }
                Err(e) => {
                    consecutive_failures += 1;
                    self.state.lock().unwrap().health.read_failures_total += 1;
                    tracing::error!("{e}");
                    if consecutive_failures >= 50 {
                        stop.store(true, Ordering::Relaxed);
                        return Err(anyhow!("giving up after 50 failed map reads: {e}"));
                    }
                    continue;
                }
            };

            let unknown = {
                let mut guard = self.state.lock().unwrap();
                let st = &mut *guard;
                let h = &mut st.health;
                h.ticks_total += 1;
                h.tick_lag_seconds = lag.as_secs_f64();
                h.tick_lag_max_seconds = h.tick_lag_max_seconds.max(h.tick_lag_seconds);
                h.map_read_seconds = reading.read_duration.as_secs_f64();
                h.map_entries = reading.per_cgroup.len();
                h.program_runs_total = reading.switches;
                h.dropped_total = reading.dropped;
                h.read_errors_total = reading.read_errors;
                let index = &st.index;
                st.usage
                    .update(reading.at_ns, reading.busy_ns, &reading.per_cgroup, |id| {
                        index.get(id).map(|e| (e.class, e.priority))
                    })
            };

            self.protect(reading.at_ns, stop)?;
            self.network(reading.at_ns, stop)?;

            let due = last_rescan.is_none_or(|t| t.elapsed() >= self.rescan_interval);
            // A cgroup the index does not know yet triggers a scan at once, so new cgroups
            // are classified within a tick instead of a rescan interval.
            if due || !unknown.is_empty() {
                last_rescan = Some(Instant::now());
                self.rescan(&unknown, &mut unknown_for);
            }
        }
        if let Some(network) = &mut self.network
            && let Err(e) = network.shutdown(self.protector.actuator_mut())
        {
            tracing::error!("removing enforcer's tc objects: {e}");
        }
        Ok(())
    }

    /// One tick of the network controller, and the operator's tc requests.
    fn network(&mut self, at_ns: u64, stop: &AtomicBool) -> anyhow::Result<()> {
        let actuator = self.protector.actuator_mut();
        if let Some(network) = &mut self.network
            && let Err(e) = network.tick(at_ns, &self.state, actuator, &self.programs, &self.rules)
        {
            stop.store(true, Ordering::Relaxed);
            return Err(anyhow!("{e}; stopping: no action may be taken unjournaled"));
        }
        while let Ok((req, reply)) = self.tc_inbox.try_recv() {
            let answer = match &mut self.network {
                Some(n) => n.request(req, self.protector.actuator_mut(), &self.programs),
                None => Err("network is off (network.enabled = false)".into()),
            };
            let _ = reply.send(answer);
        }
        Ok(())
    }

    /// Reclaim per class, and the per-class memory-pressure signal: memcg reclaim stall
    /// (seconds per second over the window) above the configured stall threshold.
    fn reclaim_by_class(
        &mut self,
        at_ns: u64,
        reclaim: &crate::sampling::reclaim::ReclaimReading,
    ) -> Vec<ClassReclaim> {
        let st = self.state.lock().unwrap();
        let index = if self.memory_root.is_some() {
            &self.memory_index
        } else {
            &st.index
        };
        let mut totals: HashMap<Class, enforcer_common::ReclaimStats> = HashMap::new();
        for (id, stats) in &reclaim.per_cgroup {
            let class = index.get(*id).map_or(Class::System, |e| e.class);
            let t = totals.entry(class).or_default();
            t.direct_episodes += stats.direct_episodes;
            t.direct_stall_ns += stats.direct_stall_ns;
            t.memcg_episodes += stats.memcg_episodes;
            t.memcg_stall_ns += stats.memcg_stall_ns;
        }
        drop(st);
        Class::ALL
            .into_iter()
            .map(|class| {
                let stats = totals.get(&class).copied().unwrap_or_default();
                let window_ns = self.window_ns;
                let w = self
                    .memcg_stall
                    .entry(class)
                    .or_insert_with(|| crate::policy::window::RateWindow::new(window_ns));
                w.push(at_ns, stats.memcg_stall_ns);
                let ratio = w.rate();
                ClassReclaim {
                    class,
                    stats: stats.into(),
                    memcg_stall_ratio: ratio,
                    memory_pressure: ratio > self.reclaim_stall_trigger,
                }
            })
            .collect()
    }

    /// Memory per class from cgroupfs; system is what the node uses beyond online and
    /// offline (the OS, kubelet, HDFS, the NodeManager, page cache of no cgroup of ours).
    fn class_memory(&self, class_roots: &[(Class, Vec<String>)]) -> Vec<ClassMemory> {
        use crate::{actuators::cgroupfs::CgroupDirs, sampling::memory};
        let mut out: Vec<ClassMemory> = class_roots
            .iter()
            .map(|(class, roots)| {
                let mut usage = memory::MemoryUsage::default();
                for root in roots {
                    let dirs = CgroupDirs::resolve(&self.layout, root);
                    if let Some(dir) = &dirs.memory
                        && let Some(u) = memory::read(dir, dirs.memory_is_v2)
                    {
                        usage += u;
                    }
                }
                ClassMemory {
                    class: *class,
                    usage,
                }
            })
            .collect();
        let used = (protect::node_memory_used() * self.memory_total_bytes as f64) as u64;
        let accounted: u64 = out.iter().map(|m| m.usage.usage_bytes).sum();
        out.push(ClassMemory {
            class: Class::System,
            usage: memory::MemoryUsage {
                usage_bytes: used.saturating_sub(accounted),
                ..Default::default()
            },
        });
        out
    }

    /// Reads reclaim and runs one step of the protection ladder. The state lock is taken
    /// only to capture what the ladder needs; actions run without it.
    fn protect(&mut self, at_ns: u64, stop: &AtomicBool) -> anyhow::Result<()> {
        let reclaim = match self.reclaim.read() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                Default::default()
            }
        };
        let by_class = self.reclaim_by_class(at_ns, &reclaim);
        let (node_cpu, cpus) = {
            let mut st = self.state.lock().unwrap();
            st.reclaim_by_class = by_class;
            st.reclaim = reclaim.total;
            st.reclaim_kswapd_wakeups = reclaim.kswapd_wakeups;
            st.reclaim_kswapd_by_node = reclaim.kswapd_wakeups_by_node.clone();
            (st.usage.node_utilisation(st.online_cpus), st.online_cpus)
        };
        self.protector.restore_to = self.capacity.per_parent(self.capacity.view.offline_parents);
        let stage_before = self.protector.stage();
        let state = self.state.clone();
        let result =
            self.protector
                .tick(at_ns, node_cpu, reclaim.total.direct_stall_ns, cpus, || {
                    let st = state.lock().unwrap();
                    NodeView::capture(&st.index, &st.usage)
                });
        let (offline, parents, node) = {
            let mut st = self.state.lock().unwrap();
            st.protection = self.protector.view.clone();
            let offline: Vec<String> = st
                .index
                .iter()
                .filter(|e| e.class == Class::Offline && !e.path.is_empty())
                .map(|e| e.path.to_string())
                .collect();
            let parents: Vec<String> = protect::offline_roots(&st.index)
                .iter()
                .map(|e| e.path.to_string())
                .collect();
            let online_cores: f64 = st
                .usage
                .classes()
                .filter(|((class, _), _)| *class == Class::Online)
                .map(|(_, t)| t.window.rate())
                .sum();
            let node = crate::policy::capacity::NodeUsage {
                cpus: f64::from(cpus),
                memory_bytes: self.memory_total_bytes,
                online_cpu: online_cores / f64::from(cpus.max(1)),
                online_memory_bytes: self.online_memory_bytes,
            };
            (offline, parents, node)
        };
        if self.protector.stage() != stage_before {
            // The ladder wrote limits: capacity writes its own again once it may.
            self.capacity.invalidate();
        }
        let hold = self.protector.stage() >= crate::policy::ladder::Stage::Throttle;
        let result = result
            .and_then(|()| self.isolator.tick(self.protector.actuator_mut(), &offline))
            .and_then(|()| {
                self.capacity
                    .tick(self.protector.actuator_mut(), &parents, &node, hold)
            });
        self.state.lock().unwrap().capacity = self.capacity.view.clone();
        if let Err(e) = result {
            // Without a journal no action may be taken: stop rather than act unrecorded.
            stop.store(true, Ordering::Relaxed);
            return Err(anyhow!("{e}; stopping: no action may be taken unjournaled"));
        }
        Ok(())
    }

    fn rescan(&mut self, unknown: &[u64], unknown_for: &mut HashMap<u64, u32>) {
        let started = Instant::now();
        let dirs = match walk(&self.root) {
            Ok(dirs) => dirs,
            Err(e) => {
                tracing::error!("{}: cannot scan the cgroup tree: {e}", self.root.display());
                return;
            }
        };
        let cpus = online_cpus();
        let mut st = self.state.lock().unwrap();
        let diff = st.index.refresh(dirs, &self.rules);
        // Memory per class: hierarchical use of each class's top cgroups.
        let class_roots: Vec<(Class, Vec<String>)> = [Class::Online, Class::Offline]
            .into_iter()
            .map(|class| {
                let roots = protect::class_roots(&st.index, class);
                (class, roots.iter().map(|e| e.path.to_string()).collect())
            })
            .collect();
        st.online_cpus = cpus;
        for &id in &diff.removed {
            st.usage.forget(id, (Class::System, None));
        }
        // Ids the sampler saw that no scan finds: cgroups that came and went between scans.
        let mut gone = Vec::new();
        for &id in unknown {
            if st.index.get(id).is_some() {
                unknown_for.remove(&id);
                continue;
            }
            let seen = unknown_for.entry(id).or_default();
            *seen += 1;
            if *seen >= UNKNOWN_RESCANS_BEFORE_FORGET {
                unknown_for.remove(&id);
                st.usage.forget(id, (Class::System, None));
                gone.push(id);
            }
        }
        st.health.rescans_total += 1;
        st.health.rescan_seconds = started.elapsed().as_secs_f64();
        drop(st);
        if let Some(root) = &self.memory_root {
            match walk(root) {
                Ok(dirs) => {
                    let gone = self.memory_index.refresh(dirs, &self.rules).removed;
                    self.reclaim.forget(gone);
                }
                Err(e) => {
                    tracing::error!("{}: cannot scan the memory hierarchy: {e}", root.display())
                }
            }
        }
        let memory = self.class_memory(&class_roots);
        self.online_memory_bytes = memory
            .iter()
            .find(|m| m.class == Class::Online)
            .map_or(0, |m| m.usage.usage_bytes);
        let pressure = crate::sampling::psi::read();
        let mut st = self.state.lock().unwrap();
        st.memory = memory;
        st.pressure = pressure;
        drop(st);
        if !diff.added.is_empty() || !diff.removed.is_empty() {
            tracing::debug!(
                added = diff.added.len(),
                removed = diff.removed.len(),
                "cgroup index changed"
            );
        }
        if let CpuSource::Ebpf(s) = &mut self.sampler {
            s.forget(diff.removed.into_iter().chain(gone));
        }
    }

    /// SIGHUP: re-read the config file and apply its classification rules. A bad file is
    /// reported and the running rules stay.
    fn reload_rules(&mut self) {
        let Some(path) = &self.config_path else {
            tracing::info!("SIGHUP: no config file to reload (running on defaults)");
            return;
        };
        match Config::load(path) {
            Ok(config) => {
                self.rules = config.rules.clone();
                self.protector
                    .actuator_mut()
                    .set_rules(config.rules.clone());
                let mut st = self.state.lock().unwrap();
                st.index.reclassify(&self.rules);
                self.memory_index.reclassify(&self.rules);
                st.top_n = config.daemon.top_n;
                if let Some(n) = &mut self.network {
                    n.reload(&config.network);
                }
                tracing::info!(path = %path.display(), "SIGHUP: configuration reloaded (classification rules, top_n)");
            }
            Err(e) => tracing::error!("SIGHUP: {e}; keeping the running configuration"),
        }
    }
}

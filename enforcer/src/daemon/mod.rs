//! `enforcer run`: discovers the node, loads the kernel programs, samples on the tick and
//! serves the surfaces until SIGTERM/SIGINT.
//!
//! The sampler runs on its own thread so that a slow scrape or CLI call can never delay a
//! tick; the surfaces run on a small tokio runtime and read the shared state under a mutex
//! held only to copy figures out.

pub mod capacity;
pub mod isolate;
pub mod protect;
pub mod state;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use enforcer_common::CgroupMode;

use crate::{
    actuators::Actuator,
    config::{Config, HierarchyChoice, SamplerChoice},
    model::{
        Class,
        classify::RuleSet,
        index::CgroupIndex,
        layout::{CgroupLayout, CpuHierarchy, KubeletDriver, detect_driver, walk},
    },
    policy::usage::UsageTracker,
    sampling::{
        cpu::CpuSampler,
        poll::{CgroupfsPoller, UsageFiles},
        programs::{ProgramOptions, Programs},
        reclaim::ReclaimSampler,
    },
    surfaces::journal::Journal,
    surfaces::{control, http},
};
use capacity::CapacityController;
use isolate::Isolator;
use protect::{NodeView, Protector};
use state::{NodeState, unix_now};

use crate::surfaces::snapshot::{ClassMemory, ClassReclaim};

/// Unknown cgroup ids still unknown after this many rescans are gone for good (created and
/// removed between two scans); their time is counted as system.
const UNKNOWN_RESCANS_BEFORE_FORGET: u32 = 2;

/// Where the daemon takes its configuration from, so SIGHUP can re-read it.
pub struct RunOptions {
    pub config: Config,
    pub config_path: Option<PathBuf>,
    /// `--dry-run`: decide and journal, apply nothing (also `daemon.dry_run`).
    pub dry_run: bool,
}

/// Which hierarchy the CPU sampler charges, from the config and the discovered layout.
fn choose_hierarchy(
    layout: &CgroupLayout,
    choice: HierarchyChoice,
) -> anyhow::Result<(CgroupMode, PathBuf, String)> {
    let unified = || {
        layout.unified_mount().map(|p| {
            (
                CgroupMode::Unified,
                p.to_path_buf(),
                format!("cgroup2 at {}", p.display()),
            )
        })
    };
    let v1 = || {
        layout.v1_mount("cpu").map(|p| {
            (
                CgroupMode::V1Cpu,
                p.to_path_buf(),
                format!("v1 cpu at {}", p.display()),
            )
        })
    };
    match choice {
        HierarchyChoice::Unified => unified().ok_or_else(|| {
            anyhow!("daemon.hierarchy = \"unified\": no cgroup2 filesystem is mounted")
        }),
        HierarchyChoice::V1 => v1().ok_or_else(|| {
            anyhow!("daemon.hierarchy = \"v1\": no v1 hierarchy holds the cpu controller")
        }),
        HierarchyChoice::Auto => match layout.cpu_hierarchy() {
            Some(CpuHierarchy::Unified(_)) => unified(),
            Some(CpuHierarchy::V1 { .. }) => v1(),
            None => unified(),
        }
        .ok_or_else(|| anyhow!("no cgroup hierarchy with the cpu controller and no cgroup2 mount")),
    }
}

fn memory_total_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn online_cpus() -> u32 {
    aya::util::online_cpus()
        .map(|c| c.len() as u32)
        .unwrap_or(1)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(options: RunOptions) -> anyhow::Result<()> {
    let config = options.config;
    let d = &config.daemon;
    let layout = CgroupLayout::discover().context("discovering the cgroup layout")?;
    let (mode, root, hierarchy_label) = choose_hierarchy(&layout, d.hierarchy)?;
    tracing::info!(layout = layout.mode.as_str(), hierarchy = %hierarchy_label, "cgroup layout");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Bind the surfaces before loading programs: a port in use or a daemon already running
    // must fail before anything is attached.
    let control = {
        let _guard = runtime.enter();
        control::bind(&d.socket)?
    };
    let metrics = runtime
        .block_on(tokio::net::TcpListener::bind(d.metrics_listen))
        .with_context(|| {
            format!(
                "daemon.metrics_listen: cannot listen on {}",
                d.metrics_listen
            )
        })?;

    let memory_mode = if layout.unified_controllers.iter().any(|c| c == "memory") {
        CgroupMode::Unified
    } else if layout.v1_mount("memory").is_some() {
        CgroupMode::V1Cpu
    } else {
        CgroupMode::Unified
    };
    let dry_run = options.dry_run || d.dry_run;
    // The journal must be writable before anything can be decided.
    let journal = Journal::open(&d.journal).context("daemon.journal")?;
    let mut programs = Programs::load(&ProgramOptions {
        cpu_mode: mode,
        memory_mode,
        cgroup_map_entries: d.cgroup_map_entries,
    })?;
    let sampler = match d.sampler {
        SamplerChoice::Ebpf => CpuSource::Ebpf(Box::new(programs.cpu_sampler()?)),
        SamplerChoice::Cgroupfs => {
            let files = match mode {
                CgroupMode::Unified => UsageFiles::CpuStat(root.clone()),
                CgroupMode::V1Cpu => UsageFiles::Cpuacct(
                    layout
                        .v1_mount("cpuacct")
                        .map(Path::to_path_buf)
                        .ok_or_else(|| {
                            anyhow!("daemon.sampler = \"cgroupfs\": no cpuacct hierarchy")
                        })?,
                ),
            };
            tracing::warn!(tick = ?d.tick, "CPU sampled by polling cgroupfs (daemon.sampler = \"cgroupfs\")");
            CpuSource::Cgroupfs(CgroupfsPoller::new(files))
        }
    };
    let reclaim = programs.reclaim_sampler()?;
    tracing::info!(mode = ?mode, ?memory_mode, "eBPF programs attached (sched_switch, cgroup_attach_task, vmscan)");
    let actuator = Actuator::new(layout.clone(), config.rules.clone(), journal, dry_run);
    let mut protector = Protector::new(
        &config.protection,
        actuator,
        layout.clone(),
        &root,
        &d.state_dir,
        d.window.as_nanos() as u64,
    );
    protector.view.journal = d.journal.display().to_string();
    if dry_run {
        tracing::warn!(journal = %d.journal.display(), "dry run: every action is journaled, none applied");
    }

    let state = Arc::new(Mutex::new(NodeState {
        node: d.node_name.clone(),
        layout: layout.mode.as_str().to_string(),
        kubelet_driver: match detect_driver(&root) {
            KubeletDriver::Systemd => "systemd",
            KubeletDriver::Cgroupfs => "cgroupfs",
            KubeletDriver::None => "none",
        }
        .to_string(),
        cpu_hierarchy: hierarchy_label,
        started_at: unix_now(),
        tick_seconds: d.tick.as_secs_f64(),
        window_seconds: d.window.as_secs_f64(),
        online_cpus: online_cpus(),
        top_n: d.top_n,
        index: CgroupIndex::new(),
        usage: UsageTracker::new(d.window.as_nanos() as u64),
        health: Default::default(),
        protection: protector.view.clone(),
        capacity: Default::default(),
        memory: Vec::new(),
        pressure: Default::default(),
        reclaim_by_class: Vec::new(),
        reclaim: Default::default(),
        reclaim_kswapd_wakeups: 0,
        reclaim_kswapd_by_node: Vec::new(),
    }));
    state.lock().unwrap().health.map_capacity = d.cgroup_map_entries;

    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    let sampler_thread = {
        let (state, stop, reload) = (state.clone(), stop.clone(), reload.clone());
        let loop_ = SamplerLoop {
            sampler,
            reclaim,
            isolator: Isolator::new(config.protection.isolation, &root),
            capacity: CapacityController::new(config.capacity.clone(), layout.clone()),
            memory_root: match memory_mode {
                CgroupMode::V1Cpu => layout.v1_mount("memory").map(Path::to_path_buf),
                CgroupMode::Unified if mode == CgroupMode::Unified => None,
                CgroupMode::Unified => layout.unified_mount().map(Path::to_path_buf),
            },
            memory_index: CgroupIndex::new(),
            memcg_stall: HashMap::new(),
            window_ns: d.window.as_nanos() as u64,
            reclaim_stall_trigger: config.protection.ladder.reclaim_stall_trigger,
            online_memory_bytes: 0,
            memory_total_bytes: memory_total_bytes(),
            protector,
            _programs: programs,
            root,
            layout: layout.clone(),
            rules: config.rules.clone(),
            tick: d.tick,
            rescan_interval: d.rescan_interval,
            config_path: options.config_path.clone(),
            state,
        };
        std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || loop_.run(&stop, &reload))
            .context("starting the sampler thread")?
    };

    let snapshot_source: http::SnapshotSource = {
        let state = state.clone();
        Arc::new(move || {
            let state = state.lock().unwrap();
            state.snapshot(Some(state.top_n))
        })
    };
    let full_source: http::SnapshotSource = {
        let state = state.clone();
        Arc::new(move || state.lock().unwrap().snapshot(None))
    };
    tracing::info!(metrics = %d.metrics_listen, socket = %d.socket.display(), "serving");
    let socket_path = d.socket.clone();
    let signal_result = runtime.block_on(async {
        let metrics_task = tokio::spawn(http::serve(metrics, snapshot_source));
        let control_task = tokio::spawn(control::serve(control, full_source));
        let result = wait_for_shutdown(&reload, &stop).await;
        metrics_task.abort();
        control_task.abort();
        result
    });
    stop.store(true, Ordering::Relaxed);
    let sampler_result = sampler_thread
        .join()
        .map_err(|_| anyhow!("the sampler thread panicked"))?;
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("stopped; eBPF programs detached");
    signal_result?;
    sampler_result
}

async fn wait_for_shutdown(reload: &AtomicBool, stop: &AtomicBool) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut check = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(()) }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(()) }
            _ = hup.recv() => reload.store(true, Ordering::Relaxed),
            // The sampler thread stops on a fatal error; follow it.
            _ = check.tick() => if stop.load(Ordering::Relaxed) { return Ok(()) },
        }
    }
}

/// Where the tick's CPU figures come from.
enum CpuSource {
    Ebpf(Box<CpuSampler>),
    Cgroupfs(CgroupfsPoller),
}

struct SamplerLoop {
    sampler: CpuSource,
    reclaim: ReclaimSampler,
    protector: Protector,
    isolator: Isolator,
    capacity: CapacityController,
    /// The memory hierarchy's own index when it is not the CPU one (v1 and hybrid hosts):
    /// reclaim is charged to memory cgroup ids.
    memory_root: Option<PathBuf>,
    memory_index: CgroupIndex,
    /// memcg reclaim stall per class, for the per-class memory-pressure signal.
    memcg_stall: HashMap<Class, crate::policy::window::RateWindow>,
    window_ns: u64,
    reclaim_stall_trigger: f64,
    /// Online memory (hierarchical use of the online class roots), refreshed at rescans.
    online_memory_bytes: u64,
    memory_total_bytes: u64,
    // Keeps the programs attached; dropped (detached) when the loop ends.
    _programs: Programs,
    root: PathBuf,
    layout: CgroupLayout,
    rules: Arc<RuleSet>,
    tick: Duration,
    rescan_interval: Duration,
    config_path: Option<PathBuf>,
    state: Arc<Mutex<NodeState>>,
}

impl SamplerLoop {
    fn run(mut self, stop: &AtomicBool, reload: &AtomicBool) -> anyhow::Result<()> {
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

            let due = last_rescan.is_none_or(|t| t.elapsed() >= self.rescan_interval);
            // A cgroup the index does not know yet triggers a scan at once, so new cgroups
            // are classified within a tick instead of a rescan interval.
            if due || !unknown.is_empty() {
                last_rescan = Some(Instant::now());
                self.rescan(&unknown, &mut unknown_for);
            }
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
                tracing::info!(path = %path.display(), "SIGHUP: configuration reloaded (classification rules, top_n)");
            }
            Err(e) => tracing::error!("SIGHUP: {e}; keeping the running configuration"),
        }
    }
}

/// Used by `enforcer config check`: validates without running anything.
pub fn check_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

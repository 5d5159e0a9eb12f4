//! `enforcer run`: discovers the node, loads the kernel programs, samples on the tick and
//! serves the surfaces until SIGTERM/SIGINT.
//!
//! The sampler runs on its own thread so that a slow scrape or CLI call can never delay a
//! tick; the surfaces run on a small tokio runtime and read the shared state under a mutex
//! held only to copy figures out.

mod billing;
pub mod capacity;
pub mod census;
pub mod controllers;
mod discovery;
pub mod effects;
mod gaps;
pub mod isolate;
pub mod limits;
mod memory;
pub mod network;
mod pods;
mod procs;
pub mod protect;
mod reload;
mod resident;
mod signals;
mod stale;
pub mod state;
#[cfg(test)]
mod tests;
mod tick;
mod watch;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, anyhow};
use enforcer_common::CgroupMode;

use crate::model::{
    controllers::Controllers as ControllerSites,
    hierarchies::{self, HierarchyIds},
    layout::MemoryHierarchy,
};
use crate::{
    actuators::Actuator,
    actuators::journal::Journal,
    actuators::kube::{Publisher, PublisherOptions},
    config::{Config, HierarchyChoice, KubernetesSwitch, SamplerChoice},
    model::{
        layout::{CgroupLayout, CpuHierarchy, KubeletDriver, detect_driver},
        netns::CgroupLine,
    },
    policy::usage::UsageTracker,
    sampling::{
        filesystem::{self, FilesystemReader, ReaderOptions},
        poll::{CgroupfsPoller, UsageFiles},
        programs::{ProgramOptions, Programs},
    },
    surfaces::{
        control, http,
        snapshot::{ConfigView, KubeView},
    },
};
use crate::{host::RealHost, model::index::CgroupIndex, surfaces::snapshot::TcRequest};
use capacity::CapacityController;
use census::CgroupRoots;
use controllers::Controllers;
use discovery::{Discovery, Hierarchy, Which};
use isolate::Isolator;
use limits::OfflineLimits;
use memory::MemoryAccounting;
use protect::Protector;
use reload::ReloadRequest;
use signals::{Signals, wait_for_shutdown};
use state::NodeState;
use tick::{CpuSource, SamplerLoop};
use watch::ConfigWatcher;

/// Where the daemon takes its configuration from, so SIGHUP and a change of the file can
/// re-read it.
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

fn online_cpus() -> u32 {
    aya::util::online_cpus()
        .map(|c| c.len() as u32)
        .unwrap_or(1)
}

/// The Node object's publisher, when `[kubernetes]` wants it and the daemon can have it;
/// otherwise one line saying why not. Either way the view the surfaces show of it.
fn start_kube(config: &Config, dry_run: bool) -> (Option<Publisher>, KubeView) {
    let k = &config.kubernetes;
    // Set in every pod's environment by kubelet: the one sign of running in a cluster.
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let env_node = std::env::var("NODE_NAME").ok();
    let node = k.node_name(env_node.as_deref(), &config.daemon.node_name);
    let off = |why: String| {
        let view = KubeView {
            off_reason: Some(why),
            node: node.clone(),
            ..Default::default()
        };
        (None, view)
    };
    let why = match k.enabled {
        KubernetesSwitch::Off => Some("kubernetes.enabled = false"),
        _ if !k.wanted(in_cluster) => Some("not in a cluster (no KUBERNETES_SERVICE_HOST)"),
        _ if dry_run => Some("dry run"),
        _ => None,
    };
    if let Some(why) = why {
        tracing::info!(
            "kubernetes: {why}: the Node object is not patched (the scheduling gate is its state file alone)"
        );
        return off(why.into());
    }
    match Publisher::in_cluster(PublisherOptions::new(node.clone(), k)) {
        Ok(publisher) => {
            tracing::info!(node = %node, taint = %k.taint, "kubernetes: the Node object follows the scheduling gate (taint, condition) and publishes the offline capacity");
            let view = KubeView {
                enabled: true,
                node,
                ..Default::default()
            };
            (Some(publisher), view)
        }
        Err(e) => {
            tracing::warn!(node = %node, "kubernetes: {e}: the Node object is not patched (the scheduling gate is its state file alone)");
            off(crate::text::one_line(&e.to_string()))
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(options: RunOptions) -> anyhow::Result<()> {
    // glibc gives every thread that allocates its own arena; the surfaces' worker threads
    // building large snapshots (10,000 cgroups) then keep megabytes each. Two arenas bound
    // the daemon's RSS without slowing a daemon that allocates little.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only tunes the allocator, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let config = options.config;
    let d = &config.daemon;
    let layout = CgroupLayout::discover().context("discovering the cgroup layout")?;
    let (mode, root, hierarchy_label) = choose_hierarchy(&layout, d.hierarchy)?;
    tracing::info!(layout = layout.mode.as_str(), hierarchy = %hierarchy_label, "cgroup layout");
    // Missing or undelegated controllers: one line each, naming the controller, the cgroup
    // and the feature that is off (and in the status and `enforcer_feature_enabled`).
    let sites = ControllerSites::of(&layout);
    tracing::info!(controllers = %sites.summary(), "cgroup controllers");
    let controller_gaps = sites.missing();
    for gap in &controller_gaps {
        tracing::warn!("{}", gap.explain);
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Bind the surfaces before loading programs: a port in use or a daemon already running
    // must fail before anything is attached.
    let (signals, control) = {
        let _guard = runtime.enter();
        (Signals::install()?, control::bind(&d.socket)?)
    };
    // A ConfigMap update (or an edit) reloads the file as SIGHUP does.
    let watcher = options.config_path.as_deref().and_then(|path| {
        let _guard = runtime.enter();
        ConfigWatcher::new(path)
            .inspect_err(|e| tracing::warn!("{e}; the configuration reloads on SIGHUP only"))
            .ok()
    });
    let metrics = runtime
        .block_on(tokio::net::TcpListener::bind(d.metrics_listen))
        .with_context(|| {
            format!(
                "daemon.metrics_listen: cannot listen on {}",
                d.metrics_listen
            )
        })?;

    let memory = layout.memory_hierarchy();
    let memory_mode = match &memory {
        Some(MemoryHierarchy::V1(_)) => CgroupMode::V1Cpu,
        // Without a memory controller anywhere the programs still need a choice; cgroup2's
        // default hierarchy always exists in the kernel.
        Some(MemoryHierarchy::Unified(_)) | None => CgroupMode::Unified,
    };
    let dry_run = options.dry_run || d.dry_run;
    // The journal must be writable before anything can be decided.
    let journal = Journal::open(&d.journal).context("daemon.journal")?;
    let mut programs = Programs::load(&ProgramOptions {
        cpu_mode: mode,
        memory_mode,
        cgroup_map_entries: d.cgroup_map_entries,
        network: layout.unified_mount().map(Path::to_path_buf),
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
    let reclaim_wake = programs
        .reclaim_wake()
        .inspect_err(|e| {
            tracing::warn!("{e}: direct reclaim is seen at the next tick, not when it happens")
        })
        .ok();
    let network = if config.network.enabled && layout.unified_mount().is_none() {
        // Found by the VM matrix on a pure v1 node: the cgroup_skb programs attach to
        // cgroup2 only, so without it the network side is off, said once, and the rest of
        // the daemon runs.
        tracing::warn!(
            "network.enabled: no cgroup2 mounted on this node: per-cgroup network counting and tc shaping are off (mount cgroup2, e.g. at /sys/fs/cgroup/unified, to have them)"
        );
        None
    } else if config.network.enabled {
        let line = match mode {
            CgroupMode::Unified => CgroupLine::Unified,
            CgroupMode::V1Cpu => CgroupLine::V1("cpu".into()),
        };
        Some(network::NetworkController::new(
            config.network.clone(),
            &mut programs,
            &d.state_dir,
            line,
            d.window.as_nanos() as u64,
            dry_run,
        )?)
    } else {
        None
    };
    // After the programs are loaded (their maps are the kernel's, not locked pages) and
    // before the tick starts.
    if d.lock_memory {
        resident::lock_in_memory();
    }
    let (tc_requests, tc_inbox) = std::sync::mpsc::channel::<(TcRequest, network::TcReply)>();
    tracing::info!(mode = ?mode, ?memory, "eBPF programs attached (sched_switch, cgroup_attach_task, vmscan)");
    let mut actuator = Actuator::new(layout.clone(), config.rules.clone(), journal, dry_run)
        .with_gate_file(&d.state_dir);
    // Before the gate is first written, so that the Node object hears of it too.
    let (kube, kube_view) = start_kube(&config, dry_run);
    let kube_stats = kube.as_ref().map(Publisher::stats);
    if let Some(publisher) = kube {
        actuator = actuator.with_kube(publisher);
    }
    if !dry_run {
        // A dry run owns nothing: it neither reads nor writes the record.
        actuator = actuator.with_effects_record(&d.state_dir);
        actuator.forget_gone();
    }
    let mut protector = Protector::new(&config.protection, d.window.as_nanos() as u64, dry_run);
    protector.view.journal = d.journal.display().to_string();
    protector.view.controller_gaps = controller_gaps;
    let mut controllers = Controllers {
        protector,
        isolator: Isolator::new(config.protection.isolation),
        capacity: CapacityController::new(config.capacity.clone()),
        limits: OfflineLimits::default(),
    };
    // What a previous daemon left (kill -9, crash, upgrade) is decided on fresh signals
    // once the window has filled; until then the gate stays as it was left.
    let settle = d.window + config.protection.ladder.sustain;
    let adopted = controllers.adopt(actuator.record(), crate::clock::monotonic_ns(), settle);
    if adopted {
        tracing::warn!(
            frozen = ?actuator.record().frozen(),
            "adopting what the previous daemon left frozen or squeezed; deciding within {settle:?}"
        );
    } else {
        // A (re)started daemon starts from Normal: say so to the schedulers' readers.
        actuator
            .scheduling_gate_at_start()
            .context("daemon.journal")?;
    }
    if dry_run {
        tracing::warn!(journal = %d.journal.display(), "dry run: every action is journaled, none applied");
    }

    // Each configured path on its own thread: a hung mount never stalls the tick.
    let fs = &config.filesystems;
    let fs_root = match &fs.root {
        Some(root) => root.clone(),
        None if fs.mountpoints.is_empty() => PathBuf::from("/"),
        None => filesystem::default_root(),
    };
    let filesystems = FilesystemReader::start(ReaderOptions {
        paths: fs
            .mountpoints
            .iter()
            .map(|m| (m.clone(), filesystem::under(&fs_root, m)))
            .collect(),
        interval: fs.interval,
        quiet_missing: fs.defaulted,
    })
    .context("starting the file system readers")?;
    let started_at = crate::clock::unix_now();
    // The memory hierarchy keeps its own index when it is not the CPU one.
    let memory_root = match &memory {
        Some(MemoryHierarchy::V1(p)) => Some(p.clone()),
        Some(MemoryHierarchy::Unified(p)) if mode != CgroupMode::Unified => Some(p.clone()),
        _ => None,
    };
    // So does cgroup2, for the network, when CPU is charged to a v1 hierarchy.
    let net_root = network
        .as_ref()
        .and_then(|_| layout.unified_mount())
        .filter(|_| mode != CgroupMode::Unified)
        .map(Path::to_path_buf);
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
        started_at,
        tick_seconds: d.tick.as_secs_f64(),
        window_seconds: d.window.as_secs_f64(),
        online_cpus: online_cpus(),
        top_n: d.top_n,
        rules: config.rules.clone(),
        index: CgroupIndex::new(),
        memory_index: memory_root.as_ref().map(|_| CgroupIndex::new()),
        index_generation: 0,
        forget: Default::default(),
        discovery: Default::default(),
        usage: UsageTracker::new(d.window.as_nanos() as u64),
        health: Default::default(),
        protection: controllers.protector.view.clone(),
        capacity: Default::default(),
        memory: Vec::new(),
        pressure: Default::default(),
        reclaim_by_class: Vec::new(),
        reclaim: Default::default(),
        reclaim_kswapd_wakeups: 0,
        reclaim_kswapd_by_node: Vec::new(),
        net: state::NetAccounting::new(d.window.as_nanos() as u64, mode != CgroupMode::Unified),
        network: Default::default(),
        filesystems,
        config: ConfigView {
            path: options
                .config_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            watched: watcher.as_ref().is_some_and(ConfigWatcher::armed),
            loaded_at: started_at,
            ..Default::default()
        },
        pods: Arc::new(crate::model::pod::PodTable::new()),
        runtime: Default::default(),
        kube: kube_view,
        kube_stats,
        usage_view: Default::default(),
    }));
    state.lock().unwrap().health.map_capacity = d.cgroup_map_entries;

    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(ReloadRequest::default());
    let pod_nudge = pods::spawn(&config.runtime, state.clone(), stop.clone());
    // The indexes are filled before the first tick; from then on discovery's thread keeps
    // them, from the kernel's cgroup events.
    let (unknown_ids, unknown_inbox) = std::sync::mpsc::channel();
    let discovery_thread = {
        let ids = HierarchyIds::read(&RealHost);
        let mut hierarchies = vec![Hierarchy::new(
            Which::Cpu,
            root.clone(),
            match mode {
                CgroupMode::Unified => Some(hierarchies::UNIFIED),
                CgroupMode::V1Cpu => ids.v1("cpu"),
            },
        )];
        if let Some(memory_root) = &memory_root {
            let id = match &memory {
                Some(MemoryHierarchy::V1(_)) => ids.v1("memory"),
                _ => Some(hierarchies::UNIFIED),
            };
            hierarchies.push(Hierarchy::new(Which::Memory, memory_root.clone(), id));
        }
        if let Some(unified) = net_root {
            hierarchies.push(Hierarchy::new(
                Which::Net,
                unified,
                Some(hierarchies::UNIFIED),
            ));
        }
        let events = programs
            .cgroup_events()
            .inspect_err(|e| {
                tracing::warn!("{e}: cgroups are found by walking the hierarchies every second")
            })
            .ok();
        let mut discovery = Discovery::new(hierarchies, events, d.rescan_interval);
        discovery.walk_all(&state);
        discovery::spawn(discovery, state.clone(), unknown_inbox, stop.clone())
            .context("starting the cgroup discovery thread")?
    };
    let sampler_thread = {
        let (state, stop, reload) = (state.clone(), stop.clone(), reload.clone());
        let loop_ = SamplerLoop {
            sampler,
            reclaim,
            reclaim_wake,
            actuator,
            controllers,
            host: Box::new(RealHost),
            cgroup_roots: CgroupRoots::new(&layout, &root),
            memory: MemoryAccounting::new(
                d.window.as_nanos() as u64,
                config.protection.ladder.reclaim_stall_trigger,
                crate::host::meminfo(&RealHost).total_bytes,
            ),
            rules: config.rules.clone(),
            layout: layout.clone(),
            unknown_ids,
            node_read_at: None,
            network,
            tc_inbox,
            programs,
            tick: d.tick,
            config_path: options.config_path.clone(),
            state,
            journal_failed_at: None,
            pods: pods::PodWatch::new(pod_nudge),
            procs: Default::default(),
            offline_shape: Default::default(),
            parent_gaps: gaps::ParentGaps::new(sites),
            billing: billing::Billing::open(&d.node_name, &d.usage_ledger, d.usage_flush_interval),
            stale: Default::default(),
        };
        std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || loop_.run(&stop, &reload))
            .context("starting the sampler thread")?
    };

    let snapshot_source: http::SnapshotSource = {
        let (state, roots) = (state.clone(), CgroupRoots::new(&layout, &root));
        Arc::new(move || {
            let snapshot = {
                let state = state.lock().unwrap();
                state.snapshot(Some(state.top_n))
            };
            with_pod_memory(snapshot, &roots, &RealHost)
        })
    };
    let full_source: http::SnapshotSource = {
        let (state, roots) = (state.clone(), CgroupRoots::new(&layout, &root));
        Arc::new(move || {
            let snapshot = state.lock().unwrap().snapshot(None);
            with_pod_memory(snapshot, &roots, &RealHost)
        })
    };
    let tc_source: control::TcSource = {
        let requests = std::sync::Mutex::new(tc_requests);
        Arc::new(move |req| {
            let (reply, answer) = std::sync::mpsc::channel();
            requests
                .lock()
                .unwrap()
                .send((req, reply))
                .map_err(|_| "the sampler thread has stopped".to_string())?;
            answer
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| "no answer from the sampler thread within 10 s".to_string())?
        })
    };
    tracing::info!(metrics = %d.metrics_listen, socket = %d.socket.display(), "serving");
    let socket_path = d.socket.clone();
    let signal_result = runtime.block_on(async {
        let metrics_task = tokio::spawn(http::serve(metrics, snapshot_source));
        let control_task = tokio::spawn(control::serve(control, full_source, tc_source));
        let result = wait_for_shutdown(signals, watcher, &reload, &stop).await;
        metrics_task.abort();
        control_task.abort();
        result
    });
    stop.store(true, Ordering::Relaxed);
    let sampler_result = sampler_thread
        .join()
        .map_err(|_| anyhow!("the sampler thread panicked"))?;
    if discovery_thread.join().is_err() {
        tracing::error!("the cgroup discovery thread panicked");
    }
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("stopped; eBPF programs detached");
    signal_result?;
    sampler_result
}

/// Used by `enforcer config check`: validates without running anything.
pub fn check_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

/// The pods' memory, read from their cgroups when a view is asked for (a scrape reads the
/// top N, `enforcer pods` all of them), outside the state lock and never at a tick.
fn with_pod_memory(
    mut snapshot: crate::surfaces::snapshot::Snapshot,
    roots: &CgroupRoots,
    host: &dyn crate::host::Host,
) -> crate::surfaces::snapshot::Snapshot {
    for pod in &mut snapshot.pods {
        // kubelet gives a pod the same relative path in every hierarchy.
        pod.memory_bytes = pod
            .cgroup
            .as_deref()
            .and_then(|rel| roots.memory_usage(host, rel));
    }
    snapshot
}

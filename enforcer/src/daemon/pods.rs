//! The pod source's thread: the runtime's pod list read every `runtime.refresh_interval`
//! (and at once when the tick sees a pod cgroup of no known pod), published whole into the
//! shared state. The tick never waits for the runtime: a slow or absent one only makes the
//! pod list older. Failure keeps the last list, says so once, and retries with backoff.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError, Sender},
    },
    time::{Duration, Instant},
};

use super::state::NodeState;
use crate::{
    config::RuntimeConfig,
    model::{classify::RuleSet, pod::PodTable},
    runtime::{CriClient, PodSource, RuntimeError},
};

/// The longest wait between two tries while the runtime fails.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A nudge is honoured at most this often (a burst of new pods is one refresh).
const MIN_NUDGE_GAP: Duration = Duration::from_millis(200);

/// The tick's side: applies a new pod list to the indexes it owns and asks for a refresh
/// when pod cgroups of unknown pods appear.
pub struct PodWatch {
    generation: u64,
    nudge: Option<Sender<()>>,
    unknown_seen: usize,
    /// The index generation the unknown pods were last counted at.
    index_seen: u64,
}

impl PodWatch {
    pub fn new(nudge: Option<Sender<()>>) -> PodWatch {
        PodWatch {
            generation: 0,
            nudge,
            unknown_seen: 0,
            index_seen: 0,
        }
    }

    /// When the pod list changed since the last call, reclassifies the pod cgroups of the
    /// shared indexes and returns the new list for the choke point. Asks the source for a
    /// refresh when more pod cgroups of unknown pods are seen than last time (counted only
    /// when discovery added cgroups: a look at every entry at every tick costs a node of
    /// 500 pods percents of a core).
    pub fn update(&mut self, st: &mut NodeState, rules: &RuleSet) -> Option<Arc<PodTable>> {
        if st.index_generation != self.index_seen
            && let Some(n) = &self.nudge
        {
            self.index_seen = st.index_generation;
            let unknown = st.index.pods_unknown();
            if unknown > self.unknown_seen {
                let _ = n.send(());
            }
            self.unknown_seen = unknown;
        }
        if st.pods.generation() == self.generation {
            return None;
        }
        self.generation = st.pods.generation();
        let pods = st.pods.clone();
        let changed = st.index.apply_pods(rules, &pods);
        if let Some(index) = st.net.index.as_mut() {
            index.apply_pods(rules, &pods);
        }
        if let Some(index) = st.memory_index.as_mut() {
            index.apply_pods(rules, &pods);
        }
        if !changed.is_empty() {
            tracing::info!(
                cgroups = changed.len(),
                pods = pods.len(),
                "pod list changed the classification"
            );
        }
        Some(pods)
    }
}

/// Starts the thread (when enabled); returns the nudge sender for the tick.
pub fn spawn(
    config: &RuntimeConfig,
    state: Arc<Mutex<NodeState>>,
    stop: Arc<AtomicBool>,
) -> Option<Sender<()>> {
    {
        let mut st = state.lock().unwrap();
        st.runtime.enabled = config.enabled;
        st.runtime.socket = config.socket.display().to_string();
    }
    if !config.enabled {
        tracing::info!(
            "runtime.enabled = false: pods are not read, cgroups are classified by path"
        );
        return None;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let events = {
        let (config, state, stop, nudge) =
            (config.clone(), state.clone(), stop.clone(), tx.clone());
        std::thread::Builder::new()
            .name("enforcer-pod-events".into())
            .spawn(move || follow(&config, &state, &stop, &nudge))
    };
    if let Err(e) = events {
        tracing::warn!("cannot start the runtime event thread: {e}; the pod list is polled");
    }
    let config = config.clone();
    let spawned = std::thread::Builder::new()
        .name("enforcer-pods".into())
        .spawn(move || run(&config, &state, &stop, &rx));
    if let Err(e) = spawned {
        tracing::error!("cannot start the pod source thread: {e}; cgroups are classified by path");
        return None;
    }
    Some(tx)
}

/// The runtime's event stream, where it has one (containerd ≥ 1.7): each event asks for a
/// list at once, so a pod is known within a fraction of a second of starting. Where it has
/// none (containerd 1.6: `Unimplemented`) the thread says so once and ends; the list is
/// polled every `refresh_interval` all the same, events or not.
fn follow(config: &RuntimeConfig, state: &Mutex<NodeState>, stop: &AtomicBool, nudge: &Sender<()>) {
    let mut backoff = config.refresh_interval;
    while !stop.load(Ordering::Relaxed) {
        if !config.socket.exists() {
            std::thread::sleep(config.refresh_interval);
            continue;
        }
        let result = CriClient::follow_events(&config.socket, config.timeout, || {
            state.lock().unwrap().runtime.events = true;
            let _ = nudge.send(());
        });
        match result {
            Err(RuntimeError::Rpc { code, .. }) if code == "Unimplemented" => {
                tracing::info!(
                    socket = %config.socket.display(),
                    "the runtime has no container event stream (containerd before 1.7): pods are polled every {:?}",
                    config.refresh_interval
                );
                state.lock().unwrap().runtime.events = false;
                return;
            }
            Ok(()) => backoff = config.refresh_interval,
            Err(e) => {
                tracing::debug!("runtime event stream: {e}");
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        state.lock().unwrap().runtime.events = false;
        std::thread::sleep(backoff);
    }
}

fn run(config: &RuntimeConfig, state: &Mutex<NodeState>, stop: &AtomicBool, nudges: &Receiver<()>) {
    let socket = &config.socket;
    let mut source: Option<PodSource> = None;
    let mut said_absent = false;
    let mut failing = false;
    let mut backoff = config.refresh_interval;
    // When the next list is due: the interval (or the backoff) after the last one, sooner
    // when the tick or the runtime's event stream asks — but never within MIN_NUDGE_GAP
    // of the last, so a burst of events or new pods is one list.
    let mut due = Instant::now();
    let mut last = Instant::now() - config.refresh_interval;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        match nudges.recv_timeout(
            due.saturating_duration_since(now)
                .min(Duration::from_millis(500)),
        ) {
            Ok(()) => {
                due = due.min(last + MIN_NUDGE_GAP);
                continue;
            }
            Err(RecvTimeoutError::Timeout) if Instant::now() < due => continue,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        last = Instant::now();
        due = last + config.refresh_interval;
        if !socket.exists() && (failing || state.lock().unwrap().runtime.up) {
            // It answered before: the runtime is gone (stopped, restarting), not absent.
            let e = RuntimeError::Gone(socket.clone());
            backoff = fail(state, socket, &e, failing, backoff);
            due = last + backoff;
            failing = true;
            continue;
        }
        if !socket.exists() {
            if !said_absent {
                tracing::info!(
                    socket = %socket.display(),
                    "no container runtime socket: pods are classified by path rules (runtime.socket names another; it is looked for again every {:?})",
                    config.refresh_interval
                );
                said_absent = true;
            }
            continue;
        }
        if source.is_none() {
            match PodSource::new(socket, config.timeout) {
                Ok(s) => source = Some(s),
                Err(e) => {
                    tracing::error!("{}: {e}", socket.display());
                    continue;
                }
            }
        }
        let Some(src) = source.as_mut() else { continue };
        let started = Instant::now();
        match src.list() {
            Ok(pods) => {
                let took = started.elapsed().as_secs_f64();
                let version = (failing || said_absent || !state.lock().unwrap().runtime.up)
                    .then(|| src.version().ok())
                    .flatten();
                let n = pods.len();
                let mut st = state.lock().unwrap();
                if !st.pods.holds(&pods) {
                    let mut table = (*st.pods).clone();
                    table.replace(pods);
                    st.pods = Arc::new(table);
                }
                let v = &mut st.runtime;
                if !v.up {
                    tracing::info!(socket = %socket.display(), pods = n, runtime = version.as_deref().unwrap_or("?"), "container runtime answering: pods classified by their labels");
                }
                v.up = true;
                if version.is_some() {
                    v.version = version;
                }
                v.pods = n;
                v.refreshes_total += 1;
                v.refresh_seconds = took;
                v.refresh_rpcs = src.last_rpcs;
                v.refreshed_at = crate::clock::unix_now();
                v.last_error = None;
                failing = false;
                said_absent = false;
                backoff = config.refresh_interval;
            }
            Err(e) => {
                backoff = fail(state, socket, &e, failing, backoff);
                due = last + backoff;
                failing = true;
            }
        }
    }
}

/// A failed list: the last pods are kept, the failure counted, said once (when it starts
/// failing); returns the next wait, doubled while it keeps failing.
fn fail(
    state: &Mutex<NodeState>,
    socket: &std::path::Path,
    e: &RuntimeError,
    failing: bool,
    backoff: Duration,
) -> Duration {
    let mut st = state.lock().unwrap();
    let kept = st.pods.len();
    let v = &mut st.runtime;
    v.up = false;
    v.errors_total += 1;
    v.last_error = Some(e.to_string());
    drop(st);
    if failing {
        (backoff * 2).min(MAX_BACKOFF)
    } else {
        tracing::warn!(
            socket = %socket.display(),
            "container runtime: {e}; keeping the last {kept} pods, retrying with backoff"
        );
        backoff
    }
}

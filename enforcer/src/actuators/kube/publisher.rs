//! The worker that keeps the Node object saying what the choke point decided: a thread of
//! its own with a current-thread tokio runtime, fed over a `watch` channel (the latest
//! desired state wins; the tick only stores a value and never waits for the API server).
//!
//! One patch per change, never per tick: a pass builds the patches from the Node as last
//! read (or as the last patch returned it) and sends only those that are not `None`, so an
//! unchanged desired state costs no request. The gate (taint and condition) goes at once;
//! the capacity annotations at most once per `min_patch_interval` and only beyond the dead
//! band. A failed pass is retried with exponential backoff; every request is bounded by
//! `timeout`.

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use ::kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use k8s_openapi::api::core::v1::Node;
use thiserror::Error;
use tokio::sync::watch;

use super::patch::{self, Desired, GateState};
use crate::{
    config::{KubernetesConfig, is_dns_subdomain},
    policy::capacity::OfflineCapacity,
};

/// The Node is read again this often even when nothing changed, so that a taint someone
/// removed (or a Node object registered anew) is put right: a GET, and a patch only when the
/// Node disagrees.
const RESYNC: Duration = Duration::from_secs(300);

/// A taint patch refused with 409 Conflict (the Node changed since it was read) is built
/// again from a fresh read, up to this many attempts in one pass.
const CONFLICT_ATTEMPTS: u32 = 3;

/// The field manager the API server records for our fields (`managedFields`).
const FIELD_MANAGER: &str = "enforcer";

#[derive(Debug, Error)]
pub enum KubeError {
    #[error("no in-cluster credentials: {0}")]
    InCluster(#[source] ::kube::config::InClusterError),
    #[error("{0:?} is not a Kubernetes node name (set kubernetes.node_name or NODE_NAME)")]
    NodeName(String),
    #[error("cannot build the API client: {0}")]
    Client(#[source] ::kube::Error),
    #[error("cannot start the kube thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the kube thread ended before it started")]
    Ended,
    #[error("{what}: no answer within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("{what}: 409 Conflict (the Node changed since it was read)")]
    Conflict { what: &'static str },
    #[error("{what}: {message}")]
    Request { what: &'static str, message: String },
}

/// What the publisher is told at start.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    pub node_name: String,
    pub taint_key: String,
    pub min_patch_interval: Duration,
    pub timeout: Duration,
    /// A share: capacity changes within it are not published.
    pub dead_band: f64,
    /// The wait after a first failure, doubled after each further one up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl PublisherOptions {
    pub fn new(node_name: String, c: &KubernetesConfig) -> PublisherOptions {
        PublisherOptions {
            node_name,
            taint_key: c.taint.clone(),
            min_patch_interval: c.min_patch_interval,
            timeout: c.timeout,
            dead_band: c.dead_band,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// The publisher's counters, shared with the daemon (which shows them); written by the
/// worker only.
#[derive(Debug)]
pub struct PublisherStats {
    node: String,
    taint_patches: AtomicU64,
    condition_patches: AtomicU64,
    capacity_patches: AtomicU64,
    failures: AtomicU64,
    conflicts: AtomicU64,
    requests: AtomicU64,
    passes: AtomicU64,
    up: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublisherStatus {
    pub node: String,
    /// The last request succeeded (or met a 409 Conflict, which is retried).
    pub up: bool,
    pub taint_patches: u64,
    pub condition_patches: u64,
    pub capacity_patches: u64,
    /// Passes that failed (each retried after a backoff).
    pub failures: u64,
    /// 409 Conflicts answered to a taint patch (each re-read and tried again).
    pub conflicts: u64,
    /// Every request sent (reads and patches).
    pub requests: u64,
    /// Passes over the desired state (done or failed): how far the worker has got.
    pub passes: u64,
    /// Why the last pass failed, until one succeeds.
    pub last_error: Option<String>,
}

impl PublisherStats {
    fn new(node: &str) -> PublisherStats {
        PublisherStats {
            node: node.to_string(),
            taint_patches: AtomicU64::new(0),
            condition_patches: AtomicU64::new(0),
            capacity_patches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            passes: AtomicU64::new(0),
            up: AtomicBool::new(false),
            last_error: Mutex::new(None),
        }
    }

    pub fn status(&self) -> PublisherStatus {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PublisherStatus {
            node: self.node.clone(),
            up: self.up.load(Ordering::Relaxed),
            taint_patches: n(&self.taint_patches),
            condition_patches: n(&self.condition_patches),
            capacity_patches: n(&self.capacity_patches),
            failures: n(&self.failures),
            conflicts: n(&self.conflicts),
            requests: n(&self.requests),
            passes: n(&self.passes),
            last_error: self.last_error.lock().map(|e| e.clone()).unwrap_or(None),
        }
    }

    fn count(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The handle the choke point holds. Dropping it closes the channel: the worker sends the
/// last desired state once more (the gate reopened on SIGTERM) and ends; the drop waits for
/// that at most a few request timeouts.
pub struct Publisher {
    desired: Option<watch::Sender<Desired>>,
    stats: Arc<PublisherStats>,
    worker: Option<JoinHandle<()>>,
    /// Disconnected when the worker's thread has ended.
    done: mpsc::Receiver<()>,
    grace: Duration,
}

impl Publisher {
    /// With the DaemonSet's service account: the API server from `KUBERNETES_SERVICE_HOST`
    /// and `_PORT`, the token and CA from `/var/run/secrets/kubernetes.io/serviceaccount/`.
    pub fn in_cluster(options: PublisherOptions) -> Result<Publisher, KubeError> {
        let config = ::kube::Config::incluster().map_err(KubeError::InCluster)?;
        Publisher::start(config, options)
    }

    /// With any client configuration (the tests point it at a local server). The
    /// configuration's timeouts are set from `options`, and the client's own retries are
    /// off: the worker retries, with its backoff, and counts what it sent.
    pub fn start(
        mut config: ::kube::Config,
        options: PublisherOptions,
    ) -> Result<Publisher, KubeError> {
        if !is_dns_subdomain(&options.node_name) {
            return Err(KubeError::NodeName(options.node_name));
        }
        config.connect_timeout = Some(options.timeout);
        config.read_timeout = Some(options.timeout);
        config.write_timeout = Some(options.timeout);
        // A pooled connection's idle time must not count against the next answer.
        config.reset_reader_on_write = true;
        config.default_retry = false;
        let (desired, rx) = watch::channel(Desired::default());
        let stats = Arc::new(PublisherStats::new(&options.node_name));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), KubeError>>();
        let (done_tx, done) = mpsc::channel::<()>();
        let grace = options.timeout * 3;
        let worker = {
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("kube".into())
                .spawn(move || {
                    let _done = done_tx;
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = ready_tx.send(Err(KubeError::Thread(e)));
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        // The client's connection pool spawns its tasks on this runtime.
                        let client = match Client::try_from(config) {
                            Ok(c) => c,
                            Err(e) => {
                                let _ = ready_tx.send(Err(KubeError::Client(e)));
                                return;
                            }
                        };
                        let _ = ready_tx.send(Ok(()));
                        Worker::new(Api::all(client), options, stats, rx)
                            .run()
                            .await;
                    });
                })
                .map_err(KubeError::Thread)?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = worker.join();
                return Err(e);
            }
            Err(_) => {
                let _ = worker.join();
                return Err(KubeError::Ended);
            }
        }
        Ok(Publisher {
            desired: Some(desired),
            stats,
            worker: Some(worker),
            done,
            grace,
        })
    }

    /// The gate as decided; nothing is woken when it is what was handed over last.
    pub fn set_gate(&self, gate: GateState) {
        if let Some(tx) = &self.desired {
            tx.send_if_modified(|d| {
                let changed = d.gate.as_ref() != Some(&gate);
                d.gate = Some(gate);
                changed
            });
        }
    }

    /// The offline capacity in force; handed over every tick, it wakes the worker only when
    /// it moved (the dead band is the worker's: it compares with what the Node says).
    pub fn set_capacity(&self, capacity: OfflineCapacity) {
        if let Some(tx) = &self.desired {
            tx.send_if_modified(|d| {
                let changed = d.capacity != Some(capacity);
                d.capacity = Some(capacity);
                changed
            });
        }
    }

    pub fn stats(&self) -> Arc<PublisherStats> {
        self.stats.clone()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        drop(self.desired.take());
        match self.done.recv_timeout(self.grace) {
            Err(mpsc::RecvTimeoutError::Timeout) => tracing::warn!(
                node = %self.stats.node,
                "kubernetes: the last update of the Node did not finish within {:?}; leaving it",
                self.grace
            ),
            _ => {
                if let Some(w) = self.worker.take()
                    && w.join().is_err()
                {
                    tracing::error!("kubernetes: the kube thread panicked");
                }
            }
        }
    }
}

struct Worker {
    nodes: Api<Node>,
    o: PublisherOptions,
    stats: Arc<PublisherStats>,
    desired: watch::Receiver<Desired>,
    /// The Node as last read, or as the last patch returned it: what patches are built from.
    node: Option<Node>,
    read_at: Option<Instant>,
    capacity_sent_at: Option<Instant>,
    /// After a failure: when the next try is due, how many failed in a row, and the gate
    /// the failed pass had (a gate opened or closed since does not wait for the backoff).
    retry_at: Option<Instant>,
    failures_in_row: u32,
    failed_gate: Option<Option<GateState>>,
    params: PatchParams,
}

impl Worker {
    fn new(
        nodes: Api<Node>,
        o: PublisherOptions,
        stats: Arc<PublisherStats>,
        desired: watch::Receiver<Desired>,
    ) -> Worker {
        Worker {
            nodes,
            o,
            stats,
            desired,
            node: None,
            read_at: None,
            capacity_sent_at: None,
            retry_at: None,
            failures_in_row: 0,
            failed_gate: None,
            params: PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
        }
    }

    async fn run(mut self) {
        loop {
            let desired = self.desired.borrow_and_update().clone();
            let wait = self.pass(&desired).await;
            let closed = match wait {
                None => self.desired.changed().await.is_err(),
                Some(wait) => tokio::time::timeout(wait, self.desired.changed())
                    .await
                    .is_ok_and(|r| r.is_err()),
            };
            if closed {
                // The daemon is stopping: what it decided last is sent once more if it is
                // not on the Node yet (no backoff wait), within the time the drop waits.
                let last = self.desired.borrow().clone();
                self.retry_at = None;
                let _ = tokio::time::timeout(self.o.timeout * 2, self.pass(&last)).await;
                return;
            }
        }
    }

    /// One pass over the desired state; returns when the next one is due without a change
    /// (a backoff, the capacity's rate limit, the resync), `None` for "on a change only".
    async fn pass(&mut self, desired: &Desired) -> Option<Duration> {
        // Nothing handed over yet: not a pass (the Node is not even read).
        if desired.gate.is_none() && desired.capacity.is_none() {
            return None;
        }
        let now = Instant::now();
        if let Some(at) = self.retry_at {
            // A gate that opened or closed since the failure is tried at once; anything else
            // (the capacity, a new reason for the same gate) waits for the backoff, so a
            // failing API server is never asked more often than the gate flips.
            let flipped = self.failed_gate.as_ref().is_some_and(|g| {
                g.as_ref().map(|g| g.closed) != desired.gate.as_ref().map(|g| g.closed)
            });
            if now < at && !flipped {
                return Some(at - now);
            }
        }
        let result = self.sync(desired).await;
        PublisherStats::count(&self.stats.passes);
        match result {
            Ok(wait) => {
                if self.failures_in_row > 0 {
                    tracing::info!(node = %self.o.node_name, "kubernetes: the Node is up to date again");
                }
                self.failures_in_row = 0;
                self.retry_at = None;
                self.failed_gate = None;
                if let Ok(mut e) = self.stats.last_error.lock() {
                    *e = None;
                }
                wait
            }
            Err(e) => {
                self.failures_in_row += 1;
                PublisherStats::count(&self.stats.failures);
                let text = crate::text::one_line(&e.to_string());
                if let Ok(mut last) = self.stats.last_error.lock() {
                    *last = Some(text.clone());
                }
                let backoff = self
                    .o
                    .backoff
                    .saturating_mul(1 << (self.failures_in_row - 1).min(16))
                    .min(self.o.max_backoff);
                // One line per failed pass, and passes are at least a backoff apart.
                tracing::warn!(node = %self.o.node_name, retry_in = ?backoff, "kubernetes: {text}");
                self.retry_at = Some(now + backoff);
                self.failed_gate = Some(desired.gate.clone());
                // A patch that timed out may have been applied: read before the next one.
                self.node = None;
                Some(backoff)
            }
        }
    }

    async fn sync(&mut self, desired: &Desired) -> Result<Option<Duration>, KubeError> {
        let stale = self.read_at.is_none_or(|t| t.elapsed() >= RESYNC);
        if let Some(gate) = &desired.gate {
            let differs = self.node.as_ref().is_none_or(|n| {
                patch::taint_patch(&self.o.taint_key, gate.closed, n).is_some()
                    || patch::condition_patch(gate, n, "").is_some()
            });
            if differs || stale {
                // The taints sent back must be the Node's as of now (another controller
                // may have changed them since the last read), with their resourceVersion.
                self.read().await?;
                self.put_taint(gate.closed).await?;
                self.put_condition(gate).await?;
            }
        }
        if let Some(capacity) = desired.capacity {
            if self.node.is_none() || self.read_at.is_none_or(|t| t.elapsed() >= RESYNC) {
                self.read().await?;
            }
            let node = self.node.as_ref().expect("read above");
            if let Some(p) = patch::capacity_patch(capacity, node, self.o.dead_band) {
                let now = Instant::now();
                if let Some(next) = self.capacity_sent_at.map(|t| t + self.o.min_patch_interval)
                    && now < next
                {
                    return Ok(Some(next - now));
                }
                let n = self
                    .call(
                        "patching the Node's capacity annotations",
                        self.nodes
                            .patch(&self.o.node_name, &self.params, &Patch::Merge(&p)),
                    )
                    .await?;
                self.node = Some(n);
                self.capacity_sent_at = Some(Instant::now());
                PublisherStats::count(&self.stats.capacity_patches);
                tracing::debug!(node = %self.o.node_name, cores = capacity.cpu_cores, bytes = capacity.memory_bytes, "kubernetes: offline capacity published");
            }
        }
        Ok(self.read_at.map(|t| RESYNC.saturating_sub(t.elapsed())))
    }

    async fn read(&mut self) -> Result<(), KubeError> {
        let n = self
            .call("reading the Node", self.nodes.get(&self.o.node_name))
            .await?;
        self.node = Some(n);
        self.read_at = Some(Instant::now());
        Ok(())
    }

    async fn put_taint(&mut self, closed: bool) -> Result<(), KubeError> {
        let mut attempt = 1;
        loop {
            let node = self.node.as_ref().expect("read before");
            let Some(p) = patch::taint_patch(&self.o.taint_key, closed, node) else {
                return Ok(());
            };
            let sent = self
                .call(
                    "patching the Node's taints",
                    self.nodes
                        .patch(&self.o.node_name, &self.params, &Patch::Merge(&p)),
                )
                .await;
            match sent {
                Ok(n) => {
                    self.node = Some(n);
                    PublisherStats::count(&self.stats.taint_patches);
                    tracing::info!(node = %self.o.node_name, taint = %self.o.taint_key, closed, "kubernetes: the Node's taint set");
                    return Ok(());
                }
                Err(KubeError::Conflict { .. }) if attempt < CONFLICT_ATTEMPTS => {
                    PublisherStats::count(&self.stats.conflicts);
                    tracing::debug!(node = %self.o.node_name, attempt, "kubernetes: the Node changed since it was read; reading it again");
                    attempt += 1;
                    self.read().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn put_condition(&mut self, gate: &GateState) -> Result<(), KubeError> {
        let now = crate::clock::rfc3339(crate::clock::unix_now().floor()).replace(".000Z", "Z");
        let node = self.node.as_ref().expect("read before");
        let Some(p) = patch::condition_patch(gate, node, &now) else {
            return Ok(());
        };
        let n = self
            .call(
                "patching the Node's condition",
                self.nodes
                    .patch_status(&self.o.node_name, &self.params, &Patch::Strategic(&p)),
            )
            .await?;
        self.node = Some(n);
        PublisherStats::count(&self.stats.condition_patches);
        Ok(())
    }

    /// One request, bounded by the timeout; its outcome says whether the publisher is up.
    async fn call<T>(
        &self,
        what: &'static str,
        request: impl Future<Output = Result<T, ::kube::Error>>,
    ) -> Result<T, KubeError> {
        PublisherStats::count(&self.stats.requests);
        let result = match tokio::time::timeout(self.o.timeout, request).await {
            Err(_) => Err(KubeError::Timeout {
                what,
                after: self.o.timeout,
            }),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(::kube::Error::Api(s))) if s.code == 409 => Err(KubeError::Conflict { what }),
            Ok(Err(::kube::Error::Api(s))) => Err(KubeError::Request {
                what,
                message: format!("{} {}: {}", s.code, s.reason, s.message),
            }),
            Ok(Err(e)) => Err(KubeError::Request {
                what,
                message: e.to_string(),
            }),
        };
        // Up: the request did what it was sent for, or met a 409, which is the optimistic
        // concurrency working (read again, send again), not the API server failing.
        let up = matches!(result, Ok(_) | Err(KubeError::Conflict { .. }));
        self.stats.up.store(up, Ordering::Relaxed);
        result
    }
}

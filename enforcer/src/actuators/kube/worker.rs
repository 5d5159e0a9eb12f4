//! The publisher's worker: one pass per change of the desired state (or resync), each
//! building the patches from the Node as last read and sending only the needed ones.

use std::{
    future::Future,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use ::kube::{
    Api,
    api::{Patch, PatchParams},
};
use k8s_openapi::api::core::v1::Node;
use tokio::sync::watch;

use super::{
    options::{KubeError, PublisherOptions},
    patch::{self, Desired, GateState},
    stats::PublisherStats,
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

pub(super) struct Worker {
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
    pub(super) fn new(
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

    pub(super) async fn run(mut self) {
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
                let text = crate::text::one_line(&e.to_string());
                // The error before the count: a status that shows the failure shows why.
                if let Ok(mut last) = self.stats.last_error.lock() {
                    *last = Some(text.clone());
                }
                PublisherStats::count(&self.stats.failures);
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

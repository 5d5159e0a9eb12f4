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
    sync::{Arc, mpsc},
    thread::JoinHandle,
    time::Duration,
};

use ::kube::{Api, Client};
use tokio::sync::watch;

use super::{
    options::{KubeError, PublisherOptions},
    patch::{Desired, GateState},
    stats::PublisherStats,
    worker::Worker,
};
use crate::{config::is_dns_subdomain, policy::capacity::OfflineCapacity};

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

//! What the publisher is told at start, and how it fails.

use std::time::Duration;

use thiserror::Error;

use crate::config::KubernetesConfig;

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

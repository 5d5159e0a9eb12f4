//! What the surfaces show of the Kubernetes Node object's publisher (the gate's taint and
//! condition, the capacity annotations).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KubeView {
    /// The Node object is patched (`[kubernetes]` on and the daemon in a cluster).
    pub enabled: bool,
    /// Why it is not, while it is not ("not in a cluster", "kubernetes.enabled = false",
    /// no service account token, a dry run).
    pub off_reason: Option<String>,
    /// The Node patched.
    pub node: String,
    /// The last request to the API server succeeded.
    pub up: bool,
    pub taint_patches_total: u64,
    pub condition_patches_total: u64,
    pub annotation_patches_total: u64,
    /// Passes that failed (each retried after a backoff).
    pub failures_total: u64,
    /// 409 Conflicts on the taint (re-read and sent again).
    pub conflicts_total: u64,
    /// Why the last pass failed, until one succeeds.
    pub last_error: Option<String>,
}

//! The Kubernetes Node object's publisher: patches sent by kind, failures, and whether the
//! last request succeeded.

use prometheus_client::encoding::DescriptorEncoder;

use super::encode::{Fmt, counter, flag, gauge, one};
use crate::surfaces::snapshot::KubeView;

pub(super) fn encode(enc: &mut DescriptorEncoder, k: &KubeView) -> Fmt {
    gauge(
        enc,
        "enforcer_kube_up",
        "1 while the Node object is published and the last request to the API server succeeded (0: off, or failing; the gate's state file is written all the same).",
        &one(flag(k.enabled && k.up)),
    )?;
    let rows: Vec<_> = [
        ("taint", k.taint_patches_total),
        ("condition", k.condition_patches_total),
        ("annotations", k.annotation_patches_total),
    ]
    .into_iter()
    .map(|(kind, n)| (vec![("kind", kind.to_string())], n as f64))
    .collect();
    counter(
        enc,
        "enforcer_kube_patches",
        "Patches of the Node object applied, by kind (the gate's taint, its condition, the offline capacity annotations): one per change, never per tick.",
        &rows,
    )?;
    counter(
        enc,
        "enforcer_kube_patch_failures",
        "Updates of the Node object that failed (a refusal, a timeout, an unreachable API server), each retried after a backoff.",
        &one(k.failures_total as f64),
    )
}

//! The exact patches to the Node object, built from (what enforcer wants published, the
//! Node as last read). Pure: no I/O and no clock (the time is passed in), so every patch the
//! publisher can send is unit-tested here byte for byte. `None` means the Node already says
//! what is wanted: nothing is sent.

use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use serde_json::{Value, json};

use crate::policy::{capacity::OfflineCapacity, ladder::Trigger};

/// The node condition's type while enforcer publishes the gate.
pub const CONDITION_TYPE: &str = "EnforcerOfflineClosed";
/// The offline capacity's cores (decimal, e.g. `"12.5"`).
pub const CPU_ANNOTATION: &str = "enforcer.io/offline-cpu";
/// The offline capacity's memory (bytes, e.g. `"107374182400"`).
pub const MEMORY_ANNOTATION: &str = "enforcer.io/offline-memory";
/// Our taint's effect: new offline pods are not scheduled; running ones are left alone
/// (evicting is the ladder's business, through the choke point, not the scheduler's).
pub const NO_SCHEDULE: &str = "NoSchedule";

/// The scheduling gate as Kubernetes is told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateState {
    pub closed: bool,
    /// The condition's reason: the trigger, CamelCase as Kubernetes reasons are
    /// (`NodeCpu`, `DirectReclaim`, `Recovered`, ...).
    pub reason: String,
    /// The condition's message: what happened, with the measured value.
    pub message: String,
}

impl GateState {
    /// The gate as the choke point decided it: open or closed, and why.
    pub fn new(open: bool, trigger: Trigger) -> GateState {
        let reason = match trigger {
            Trigger::NodeCpu { .. } => "NodeCpu",
            Trigger::NodeMemory { .. } => "NodeMemory",
            Trigger::DirectReclaim { .. } => "DirectReclaim",
            Trigger::Recovered => "Recovered",
            Trigger::Adopted => "Adopted",
            Trigger::Shutdown => "Shutdown",
            Trigger::Startup => "Startup",
        };
        let why = match trigger {
            Trigger::NodeCpu { value, threshold } => format!(
                "node CPU utilisation {:.1}% above the {:.1}% trigger",
                value * 100.0,
                threshold * 100.0
            ),
            Trigger::NodeMemory { value, threshold } => format!(
                "node memory use {:.1}% above the {:.1}% cap",
                value * 100.0,
                threshold * 100.0
            ),
            Trigger::DirectReclaim {
                stall_per_second,
                threshold,
            } => format!(
                "direct reclaim stalls {:.3} s/s above the {:.3} s/s trigger",
                stall_per_second, threshold
            ),
            Trigger::Recovered => "the node has recovered".into(),
            Trigger::Adopted => "nothing holds the gate a previous daemon left closed".into(),
            Trigger::Shutdown => "enforcer is stopping".into(),
            Trigger::Startup => "enforcer started with nothing to adopt".into(),
        };
        let message = if open {
            format!("enforcer takes offline work on this node again: {why}")
        } else {
            format!("enforcer stopped offline scheduling on this node: {why}")
        };
        GateState {
            closed: !open,
            reason: reason.into(),
            message,
        }
    }
}

/// What enforcer wants the Node to say. `None` fields are not published (the gate before
/// the ladder decided anything, the capacity when the capacity rule is off).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub gate: Option<GateState>,
    pub capacity: Option<OfflineCapacity>,
}

fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

fn is_ours(key: &str, t: &Taint) -> bool {
    t.key == key && t.effect == NO_SCHEDULE
}

/// Whether the Node carries our taint.
pub fn has_taint(key: &str, node: &Node) -> bool {
    taints(node).iter().any(|t| is_ours(key, t))
}

/// The merge patch (`application/merge-patch+json`) that adds or removes our taint, or
/// `None` when the Node already has it as wanted. A merge patch replaces a list whole, so
/// the list sent is the Node's as read with only our taint added or removed — every other
/// taint is sent back exactly as read — and the read's `resourceVersion` goes with it, which
/// makes the write conditional: the API server answers 409 Conflict when the Node changed
/// since (another controller's taint), and the publisher reads it again.
pub fn taint_patch(key: &str, closed: bool, node: &Node) -> Option<Value> {
    if has_taint(key, node) == closed {
        return None;
    }
    let mut list: Vec<Value> = taints(node)
        .iter()
        .filter(|t| !is_ours(key, t))
        .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
        .collect();
    if closed {
        list.push(json!({ "key": key, "effect": NO_SCHEDULE }));
    }
    let mut patch = json!({ "spec": { "taints": list } });
    if let Some(rv) = &node.metadata.resource_version {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    Some(patch)
}

fn condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
        .iter()
        .find(|c| c.type_ == CONDITION_TYPE)
}

/// The strategic merge patch (`application/strategic-merge-patch+json`, on the
/// `nodes/{name}/status` subresource) that sets our condition, or `None` when the Node
/// already says it. `conditions` merges by its key `type`, so kubelet's conditions are never
/// touched. An open gate on a Node that never had our condition sends nothing: the
/// condition appears with the first closing and stays, False, after it. `now` is the
/// RFC 3339 time of the patch; the transition time is kept while the status does not change.
pub fn condition_patch(gate: &GateState, node: &Node, now: &str) -> Option<Value> {
    let status = if gate.closed { "True" } else { "False" };
    let current = condition(node);
    match current {
        None if !gate.closed => return None,
        Some(c)
            if c.status == status
                && c.reason.as_deref() == Some(gate.reason.as_str())
                && c.message.as_deref() == Some(gate.message.as_str()) =>
        {
            return None;
        }
        _ => {}
    }
    let transition = current
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.as_ref())
        .and_then(|t| serde_json::to_value(t).ok())
        .unwrap_or_else(|| Value::String(now.to_string()));
    Some(json!({
        "status": {
            "conditions": [{
                "type": CONDITION_TYPE,
                "status": status,
                "reason": gate.reason,
                "message": gate.message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": transition,
            }]
        }
    }))
}

/// Cores as the annotation has them: millicores precision, no trailing zeros (`"12.5"`,
/// `"4"`).
pub fn format_cores(cores: f64) -> String {
    let text = format!("{:.3}", cores.max(0.0));
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Whether `new` is more than `band` (a share) away from the value published.
fn beyond(published: Option<f64>, new: f64, band: f64) -> bool {
    published.is_none_or(|old| (new - old).abs() > band * old.abs())
}

/// The merge patch on the Node's metadata that publishes the offline capacity, or `None`
/// when the annotations on the Node are within the dead band `band` (a share) of it, both
/// cores and bytes: a capacity that moves every tick must not become a write every tick.
/// The other annotations are not named, so a merge patch leaves them as they are.
pub fn capacity_patch(capacity: OfflineCapacity, node: &Node, band: f64) -> Option<Value> {
    let annotations = node.metadata.annotations.as_ref();
    let published = |key: &str| {
        annotations
            .and_then(|a| a.get(key))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let cores = format_cores(capacity.cpu_cores);
    let cores_sent: f64 = cores.parse().unwrap_or(0.0);
    let changed = beyond(published(CPU_ANNOTATION), cores_sent, band)
        || beyond(
            published(MEMORY_ANNOTATION),
            capacity.memory_bytes as f64,
            band,
        );
    changed.then(|| {
        json!({
            "metadata": {
                "annotations": {
                    CPU_ANNOTATION: cores,
                    MEMORY_ANNOTATION: capacity.memory_bytes.to_string(),
                }
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "enforcer.io/offline-closed";
    const NOW: &str = "2026-05-01T10:00:00Z";

    fn node(v: Value) -> Node {
        serde_json::from_value(v).expect("a Node")
    }

    fn foreign() -> Node {
        node(json!({
            "metadata": { "name": "n1", "resourceVersion": "41" },
            "spec": { "taints": [
                { "key": "dedicated", "value": "gpu", "effect": "NoSchedule" },
                { "key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
                  "timeAdded": "2026-05-01T09:00:00Z" },
            ]},
            "status": { "conditions": [
                { "type": "Ready", "status": "True", "reason": "KubeletReady" },
            ]},
        }))
    }

    fn closed() -> GateState {
        GateState::new(
            false,
            Trigger::NodeCpu {
                value: 0.934,
                threshold: 0.9,
            },
        )
    }

    #[test]
    fn closing_adds_our_taint_and_sends_every_other_back_with_the_resource_version() {
        let patch = taint_patch(KEY, true, &foreign()).expect("a patch");
        assert_eq!(
            patch,
            json!({
                "metadata": { "resourceVersion": "41" },
                "spec": { "taints": [
                    { "key": "dedicated", "value": "gpu", "effect": "NoSchedule" },
                    { "key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
                      "timeAdded": "2026-05-01T09:00:00Z" },
                    { "key": KEY, "effect": "NoSchedule" },
                ]},
            })
        );
    }

    #[test]
    fn opening_removes_only_our_taint() {
        let mut n = foreign();
        let spec = n.spec.as_mut().unwrap();
        spec.taints.as_mut().unwrap().insert(
            1,
            Taint {
                key: KEY.into(),
                effect: NO_SCHEDULE.into(),
                ..Default::default()
            },
        );
        // Our key with another effect is not ours: someone else's, kept.
        spec.taints.as_mut().unwrap().push(Taint {
            key: KEY.into(),
            effect: "NoExecute".into(),
            ..Default::default()
        });
        assert!(has_taint(KEY, &n));
        let patch = taint_patch(KEY, false, &n).expect("a patch");
        let keys: Vec<(&str, &str)> = patch["spec"]["taints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["key"].as_str().unwrap(), t["effect"].as_str().unwrap()))
            .collect();
        assert_eq!(
            keys,
            [
                ("dedicated", "NoSchedule"),
                ("node.kubernetes.io/unreachable", "NoExecute"),
                (KEY, "NoExecute"),
            ]
        );
        assert_eq!(patch["metadata"]["resourceVersion"], "41");
    }

    #[test]
    fn a_node_that_says_it_already_gets_no_taint_patch() {
        assert_eq!(taint_patch(KEY, false, &foreign()), None);
        let tainted = node(json!({
            "metadata": { "name": "n1", "resourceVersion": "42" },
            "spec": { "taints": [ { "key": KEY, "effect": "NoSchedule" } ] },
        }));
        assert_eq!(taint_patch(KEY, true, &tainted), None);
        // The last taint removed: an empty list, not a missing field (which a merge patch
        // would take as "leave as is").
        assert_eq!(
            taint_patch(KEY, false, &tainted).unwrap()["spec"]["taints"],
            json!([])
        );
        // A Node with no spec at all.
        let bare = node(json!({ "metadata": { "name": "n1" } }));
        assert_eq!(
            taint_patch(KEY, true, &bare).unwrap(),
            json!({ "spec": { "taints": [ { "key": KEY, "effect": "NoSchedule" } ] } })
        );
    }

    #[test]
    fn the_condition_names_the_trigger() {
        let patch = condition_patch(&closed(), &foreign(), NOW).expect("a patch");
        assert_eq!(
            patch,
            json!({ "status": { "conditions": [{
                "type": "EnforcerOfflineClosed",
                "status": "True",
                "reason": "NodeCpu",
                "message": "enforcer stopped offline scheduling on this node: node CPU utilisation 93.4% above the 90.0% trigger",
                "lastHeartbeatTime": NOW,
                "lastTransitionTime": NOW,
            }]}})
        );
    }

    #[test]
    fn the_condition_flips_to_false_and_is_not_sent_twice() {
        let open = GateState::new(true, Trigger::Recovered);
        // Never closed: nothing to flip.
        assert_eq!(condition_patch(&open, &foreign(), NOW), None);
        let mut n = foreign();
        let c: NodeCondition = serde_json::from_value(
            condition_patch(&closed(), &n, "2026-05-01T09:30:00Z").unwrap()["status"]["conditions"]
                [0]
            .clone(),
        )
        .unwrap();
        n.status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(c);
        assert_eq!(condition_patch(&closed(), &n, NOW), None, "already True");
        let patch = condition_patch(&open, &n, NOW).expect("a patch");
        let c = &patch["status"]["conditions"][0];
        assert_eq!(c["status"], "False");
        assert_eq!(c["reason"], "Recovered");
        assert_eq!(c["lastTransitionTime"], NOW);
        // Closed again by another trigger while closed: the reason changes, the transition
        // time stays.
        let other = GateState::new(false, Trigger::Adopted);
        let patch = condition_patch(&other, &n, NOW).expect("a patch");
        assert_eq!(
            patch["status"]["conditions"][0]["lastTransitionTime"],
            "2026-05-01T09:30:00Z"
        );
    }

    #[test]
    fn capacity_is_published_beyond_the_dead_band_only() {
        let cap = |cpu_cores, memory_bytes| OfflineCapacity {
            cpu_cores,
            memory_bytes,
        };
        let first = capacity_patch(cap(12.5, 100 << 30), &foreign(), 0.05).expect("first");
        assert_eq!(
            first,
            json!({ "metadata": { "annotations": {
                "enforcer.io/offline-cpu": "12.5",
                "enforcer.io/offline-memory": "107374182400",
            }}})
        );
        let published = node(json!({
            "metadata": { "name": "n1", "annotations": {
                "other": "x",
                "enforcer.io/offline-cpu": "12.5",
                "enforcer.io/offline-memory": "107374182400",
            }},
        }));
        assert_eq!(capacity_patch(cap(12.5, 100 << 30), &published, 0.05), None);
        assert_eq!(capacity_patch(cap(13.0, 103 << 30), &published, 0.05), None);
        assert!(capacity_patch(cap(13.2, 100 << 30), &published, 0.05).is_some());
        assert!(capacity_patch(cap(12.5, 94 << 30), &published, 0.05).is_some());
        // A value someone else wrote that is not a number is replaced.
        let garbled = node(json!({
            "metadata": { "name": "n1", "annotations": {
                "enforcer.io/offline-cpu": "lots",
                "enforcer.io/offline-memory": "107374182400",
            }},
        }));
        assert!(capacity_patch(cap(12.5, 100 << 30), &garbled, 0.05).is_some());
    }

    #[test]
    fn cores_are_decimal() {
        assert_eq!(format_cores(4.0), "4");
        assert_eq!(format_cores(12.5), "12.5");
        assert_eq!(format_cores(0.3333), "0.333");
        assert_eq!(format_cores(0.0), "0");
        assert_eq!(format_cores(-1.0), "0");
    }
}

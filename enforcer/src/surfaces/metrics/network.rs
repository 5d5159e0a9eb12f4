//! The network's metrics: bytes per class (eBPF), the top cgroups, per-interface traffic
//! (netlink), the offline limits and the anomaly alert of SPEC §5, tc pass health.

use prometheus_client::encoding::DescriptorEncoder;

use super::encode::{Fmt, Labels, counter, flag, gauge, one, priority_label};
use crate::surfaces::snapshot::{CgroupNet, ClassNet, InterfaceTraffic, NetworkSnapshot};

fn directions(egress: f64, ingress: f64) -> Vec<(Labels, f64)> {
    vec![
        (vec![("direction", "egress".into())], egress),
        (vec![("direction", "ingress".into())], ingress),
    ]
}

pub(super) fn encode(enc: &mut DescriptorEncoder, n: &NetworkSnapshot) -> Fmt {
    let v = &n.view;
    if !v.enabled {
        return Ok(());
    }
    let class_rows = |rx: &dyn Fn(&ClassNet) -> f64, tx: &dyn Fn(&ClassNet) -> f64| {
        n.classes
            .iter()
            .flat_map(|c| {
                let labels = |d: &str| -> Labels {
                    vec![
                        ("class", c.class.to_string()),
                        ("priority", priority_label(c.priority)),
                        ("direction", d.into()),
                    ]
                };
                [(labels("ingress"), rx(c)), (labels("egress"), tx(c))]
            })
            .collect::<Vec<_>>()
    };
    counter(
        enc,
        "enforcer_network_bytes",
        "Bytes sent (egress) and received (ingress) by the sockets of a class, from eBPF cgroup_skb (loopback excluded).",
        &class_rows(&|c| c.rx_bytes_total as f64, &|c| c.tx_bytes_total as f64),
    )?;
    gauge(
        enc,
        "enforcer_network_bytes_per_second",
        "Network bytes per second of a class over the sliding window.",
        &class_rows(&|c| c.rx_bytes_per_second, &|c| c.tx_bytes_per_second),
    )?;
    let cgroup_rows = |f: &dyn Fn(&CgroupNet) -> (f64, f64)| {
        n.cgroups
            .iter()
            .flat_map(|c| {
                let labels = |d: &str| -> Labels {
                    vec![
                        ("cgroup", c.path.clone()),
                        ("class", c.class.to_string()),
                        ("priority", priority_label(c.priority)),
                        ("direction", d.into()),
                    ]
                };
                let (rx, tx) = f(c);
                [(labels("ingress"), rx), (labels("egress"), tx)]
            })
            .collect::<Vec<_>>()
    };
    counter(
        enc,
        "enforcer_cgroup_network_bytes",
        "Network bytes of a cgroup (top N by rate only).",
        &cgroup_rows(&|c| (c.rx_bytes_total as f64, c.tx_bytes_total as f64)),
    )?;
    gauge(
        enc,
        "enforcer_cgroup_network_bytes_per_second",
        "Network bytes per second of a cgroup over the window (top N by rate only).",
        &cgroup_rows(&|c| (c.rx_bytes_per_second, c.tx_bytes_per_second)),
    )?;
    let iface_rows = |f: &dyn Fn(&InterfaceTraffic) -> (f64, f64)| {
        v.interfaces
            .iter()
            .flat_map(|i| {
                let labels = |d: &str| -> Labels {
                    vec![
                        ("interface", i.name.clone()),
                        ("namespace", i.namespace.clone()),
                        ("class", i.class.clone()),
                        ("direction", d.into()),
                    ]
                };
                let (rx, tx) = f(i);
                [(labels("ingress"), rx), (labels("egress"), tx)]
            })
            .collect::<Vec<_>>()
    };
    counter(
        enc,
        "enforcer_interface_bytes",
        "Bytes through the bond and its macvlan subinterfaces (netlink link statistics); a pod's macvlan is attributed to the class of the cgroup owning its namespace.",
        &iface_rows(&|i| (i.rx_bytes_total as f64, i.tx_bytes_total as f64)),
    )?;
    gauge(
        enc,
        "enforcer_interface_bytes_per_second",
        "Bytes per second through the bond and its macvlan subinterfaces.",
        &iface_rows(&|i| (i.rx_bytes_per_second, i.tx_bytes_per_second)),
    )?;
    gauge(
        enc,
        "enforcer_network_offline_limit_bytes_per_second",
        "Offline bandwidth limit in force in the kernel (0 before the first pass).",
        &directions(v.offline_limit.egress, v.offline_limit.ingress),
    )?;
    gauge(
        enc,
        "enforcer_network_offline_limit_target_bytes_per_second",
        "Offline bandwidth limit the policy wants now (capacity x watermark - online rate, smoothed).",
        &directions(
            v.offline_limit_target.egress,
            v.offline_limit_target.ingress,
        ),
    )?;
    gauge(
        enc,
        "enforcer_network_capacity_bytes_per_second",
        "Link capacity the offline limit is computed from.",
        &one(v.capacity_bytes_per_second as f64),
    )?;
    gauge(
        enc,
        "enforcer_network_offline_over_share",
        "1 while offline traffic exceeds its share (alert: network traffic anomaly).",
        &one(flag(v.offline_over_share)),
    )?;
    counter(
        enc,
        "enforcer_network_offline_over_share_seconds",
        "Seconds offline traffic spent above its share.",
        &one(v.offline_over_share_seconds_total),
    )?;
    gauge(
        enc,
        "enforcer_network_interface_present",
        "1 when the configured interface (bond0) exists.",
        &one(flag(v.interface_present)),
    )?;
    let tc = &v.tc;
    counter(
        enc,
        "enforcer_tc_passes",
        "tc reconcile passes.",
        &one(tc.passes_total as f64),
    )?;
    counter(
        enc,
        "enforcer_tc_changes",
        "tc and link changes applied (0 per pass when everything already matches).",
        &one(tc.changes_total as f64),
    )?;
    counter(
        enc,
        "enforcer_tc_failures",
        "tc changes the kernel refused.",
        &one(tc.failures_total as f64),
    )?;
    gauge(
        enc,
        "enforcer_tc_managed_interfaces",
        "Interfaces enforcer shapes (bond, offline subinterfaces, their IFBs).",
        &one(tc.managed as f64),
    )?;
    gauge(
        enc,
        "enforcer_tc_conflicts",
        "Interfaces (or parts) left alone because another agent's qdisc or filters are there.",
        &one(tc.conflicts.len() as f64),
    )?;
    gauge(
        enc,
        "enforcer_tc_pass_seconds",
        "Duration of the last tc pass.",
        &one(tc.last_pass_seconds),
    )
}

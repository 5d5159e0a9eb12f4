//! The two series the operators' dashboards use today (SPEC §5), so that replacing the Java
//! agent breaks none of them: cumulative CPU seconds of online (k8s) and offline (yarn)
//! cgroups, labelled by node.

use prometheus_client::encoding::DescriptorEncoder;

use super::encode::{Fmt, Labels, counter};
use crate::{model::Class, surfaces::snapshot::Snapshot};

pub(super) fn encode(enc: &mut DescriptorEncoder, s: &Snapshot) -> Fmt {
    let node: Labels = vec![("node", s.node.clone())];
    counter(
        enc,
        "k8s_cpu_cgroup_use",
        "Cumulative CPU seconds of the online cgroups (compatibility series).",
        &[(node.clone(), s.class_seconds(Class::Online))],
    )?;
    counter(
        enc,
        "yarn_cpu_cgroup_use",
        "Cumulative CPU seconds of the offline cgroups (compatibility series).",
        &[(node, s.class_seconds(Class::Offline))],
    )
}

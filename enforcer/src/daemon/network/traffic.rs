//! Bytes per class and per cgroup from the cgroup_skb counters.

use std::{collections::HashMap, sync::Mutex};

use super::NetworkController;
use crate::{
    daemon::state::NodeState, model::Class, policy::usage::UsageTracker,
    surfaces::snapshot::Directions,
};

impl NetworkController {
    /// Reads the counters and accounts them per class.
    pub(super) fn account(&mut self, state: &Mutex<NodeState>) {
        let reading = match self.sampler.read() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                return;
            }
        };
        let mut rx = HashMap::with_capacity(reading.per_cgroup.len());
        let mut tx = HashMap::with_capacity(reading.per_cgroup.len());
        for (&id, c) in &reading.per_cgroup {
            rx.insert(id, c.rx_bytes);
            tx.insert(id, c.tx_bytes);
        }
        let mut guard = state.lock().unwrap();
        let st = &mut *guard;
        let index = st.net.index.as_ref().unwrap_or(&st.index);
        let class_of = |id| index.get(id).map(|e| (e.class, e.priority));
        st.net.rx.update(reading.at_ns, 0, &rx, class_of);
        st.net.tx.update(reading.at_ns, 0, &tx, class_of);
        let rate = |t: &UsageTracker, class: Class| -> f64 {
            t.classes()
                .filter(|((c, _), _)| *c == class)
                .map(|(_, totals)| totals.window.per_second())
                .sum()
        };
        self.view.online_rate = Directions {
            egress: rate(&st.net.tx, Class::Online),
            ingress: rate(&st.net.rx, Class::Online),
        };
        self.view.offline_rate = Directions {
            egress: rate(&st.net.tx, Class::Offline),
            ingress: rate(&st.net.rx, Class::Offline),
        };
    }
}

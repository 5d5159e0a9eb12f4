//! tc passes through the choke point: every interface checked, the pass journaled before
//! anything is sent to the kernel and after.

use super::Actuator;
use crate::{
    actuators::{
        journal::{Entry, JournalError, Outcome},
        tc,
    },
    clock::unix_now,
    policy::shaping::offline_interface,
};

impl Actuator {
    /// The choke point for tc: every interface with pending changes is checked again, and
    /// the pass is journaled (fsynced) before anything is sent to the kernel. An offline
    /// subinterface is let through only if the cgroup owning its namespace still classifies
    /// as offline under the rules in force (a name-pattern match is the operator's own
    /// declaration); the bond is shaped as a whole (its online and host classes are only
    /// ever guaranteed or capped per SPEC §3, never squeezed); releasing enforcer's own
    /// objects is always allowed. Returns the `(netns, interface)` pairs that may be
    /// applied, or `None` in dry-run mode (journaled, nothing applied).
    pub fn authorize_network(
        &mut self,
        survey: &tc::reconcile::Survey,
        reason: serde_json::Value,
    ) -> Result<Option<std::collections::BTreeSet<(u64, String)>>, JournalError> {
        use tc::reconcile::Role;
        let pending: Vec<_> = survey
            .interfaces
            .iter()
            .filter(|i| !i.changes.is_empty())
            .collect();
        let mut allowed = std::collections::BTreeSet::new();
        let mut refused = Vec::new();
        // An offline subinterface: its namespace's owner is offline; or the operator's name
        // pattern says so and the interface is on the host or in a namespace of no online
        // owner. A pattern never makes an online pod's interface offline.
        let offline_sub = |role: &Role| match role {
            Role::Offline { owner, by_pattern } => offline_interface(
                (!owner.is_empty()).then(|| self.rules.classify(owner).class),
                *by_pattern,
            ),
            _ => false,
        };
        for i in &pending {
            let ok = match &i.role {
                role @ Role::Offline { .. } => offline_sub(role),
                Role::Ifb { of } => survey
                    .interfaces
                    .iter()
                    .any(|s| s.netns == i.netns && &s.name == of && offline_sub(&s.role)),
                Role::Bond | Role::Released => true,
            };
            if ok {
                allowed.insert((i.netns, i.name.clone()));
            } else {
                refused.push(i);
            }
        }
        for i in &refused {
            let seq = self.journal.next_seq();
            let owner = match &i.role {
                Role::Offline { owner, .. } => owner.clone(),
                Role::Ifb { of } => of.clone(),
                _ => String::new(),
            };
            let class = self.rules.classify(&owner);
            self.journal.append(&Entry {
                at: unix_now(),
                seq,
                stage: "network".into(),
                action: "tc_reconcile".into(),
                target: Some(i.name.clone()),
                class: Some(class.class.to_string()),
                priority: None,
                reason: reason.clone(),
                outcome: Outcome::Refused,
                detail: Some(format!(
                    "refused: interface {} belongs to {owner}, which is {} (rule {})",
                    i.name, class.class, class.rule
                )),
            })?;
        }
        let changes: Vec<serde_json::Value> = pending
            .iter()
            .filter(|i| allowed.contains(&(i.netns, i.name.clone())))
            .map(|i| serde_json::json!({"interface": i.name, "namespace": i.namespace, "changes": i.changes}))
            .collect();
        if changes.is_empty() {
            return Ok(Some(allowed));
        }
        let reason = serde_json::json!({"trigger": reason, "interfaces": changes});
        let detail = format!("{} interfaces", changes.len());
        if self.dry_run {
            self.node_entry(
                "network",
                "tc_reconcile",
                Outcome::DryRun,
                reason,
                detail,
                None,
            )?;
            return Ok(None);
        }
        let seq = self.node_entry(
            "network",
            "tc_reconcile",
            Outcome::Intent,
            reason,
            detail,
            None,
        )?;
        self.network_seq = Some(seq);
        Ok(Some(allowed))
    }

    /// The outcome of a tc pass authorised by [`Actuator::authorize_network`].
    pub fn network_outcome(
        &mut self,
        applied: &tc::reconcile::Applied,
    ) -> Result<(), JournalError> {
        let outcome = if applied.failures.is_empty() {
            Outcome::Applied
        } else {
            Outcome::Failed
        };
        let detail = if applied.failures.is_empty() {
            format!("{} changes", applied.changes.len())
        } else {
            format!(
                "{} changes; failed: {}",
                applied.changes.len(),
                applied.failures.join("; ")
            )
        };
        let seq = self.network_seq.take();
        self.node_entry(
            "network",
            "tc_reconcile",
            outcome,
            serde_json::json!({"changes": applied.changes}),
            detail,
            seq,
        )
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::model::classify::Rule;
    use crate::{
        actuators::{Operation, journal::Journal},
        model::{Class, classify::RuleSet, layout::CgroupLayout},
    };

    #[test]
    fn operation_names_are_their_serde_tags() {
        for op in [
            Operation::CpuLimit { cores: None },
            Operation::MemoryLimit { bytes: None },
            Operation::Freeze,
            Operation::Thaw,
            Operation::Kill,
        ] {
            assert_eq!(serde_json::to_value(&op).unwrap()["op"], op.name());
        }
    }

    fn actuator(dir: &std::path::Path, dry_run: bool) -> Actuator {
        let rules = RuleSet::new(vec![
            Rule {
                name: "batch".into(),
                pattern: regex::Regex::new("^batch/").unwrap(),
                class: Class::Offline,
                priority: None,
            },
            Rule {
                name: "web".into(),
                pattern: regex::Regex::new("^web/").unwrap(),
                class: Class::Online,
                priority: None,
            },
        ]);
        let layout =
            CgroupLayout::from_mountinfo("30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
                .unwrap();
        let journal = Journal::open(&dir.join("journal.jsonl")).unwrap();
        Actuator::new(layout, Arc::new(rules), journal, dry_run)
    }

    /// A survey with the bond, an offline pod's macvlan and IFB, and a macvlan whose
    /// namespace's owner the rules now call online.
    fn survey() -> tc::reconcile::Survey {
        let iface = |name: &str, role: serde_json::Value| {
            let mut v = serde_json::json!({
                "netns": 7, "namespace": "x", "ifindex": 3, "name": name,
                "installed": {"root": {"kind": "default", "qdisc": "noqueue"}, "ingress": false, "classes": [], "filters": []},
                "wanted": null, "changes": [format!("tc qdisc replace dev {name} root handle ef00: htb default 1 r2q 10")], "conflicts": []
            });
            v.as_object_mut()
                .unwrap()
                .extend(role.as_object().unwrap().clone());
            v
        };
        serde_json::from_value(serde_json::json!({
            "bond_present": true,
            "interfaces": [
                iface("bond0", serde_json::json!({"role": "bond"})),
                iface("mvoff0", serde_json::json!({"role": "offline", "owner": "batch/pod1", "by_pattern": false})),
                iface("eifb3", serde_json::json!({"role": "ifb", "of": "mvoff0"})),
                iface("mvweb0", serde_json::json!({"role": "offline", "owner": "web/pod2", "by_pattern": false})),
                iface("eifb4", serde_json::json!({"role": "ifb", "of": "mvweb0"})),
                iface("mvoffweb", serde_json::json!({"role": "offline", "owner": "web/pod3", "by_pattern": true})),
                iface("mvhost0", serde_json::json!({"role": "offline", "owner": "", "by_pattern": true})),
            ],
            "links": [], "errors": [], "seconds": 0.0
        }))
        .unwrap()
    }

    #[test]
    fn interfaces_of_a_namespace_that_is_not_offline_are_refused_and_journaled() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = actuator(dir.path(), false);
        let allowed = a
            .authorize_network(&survey(), serde_json::json!({"why": "test"}))
            .unwrap()
            .expect("not a dry run");
        let names: Vec<&str> = allowed.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, vec!["bond0", "eifb3", "mvhost0", "mvoff0"]);
        let journal = crate::actuators::journal::read(&dir.path().join("journal.jsonl")).unwrap();
        let refused: Vec<&str> = journal
            .iter()
            .filter(|e| e.outcome == Outcome::Refused)
            .filter_map(|e| e.target.as_deref())
            .collect();
        // A name pattern does not make an online pod's interface offline.
        assert_eq!(refused, vec!["mvweb0", "eifb4", "mvoffweb"]);
        let intent = journal
            .iter()
            .find(|e| e.outcome == Outcome::Intent)
            .unwrap();
        assert!(
            !intent.reason.to_string().contains("mvweb0"),
            "{:?}",
            intent.reason
        );
        // The outcome is journaled under the intent's number.
        a.network_outcome(&tc::reconcile::Applied::default())
            .unwrap();
        let journal = crate::actuators::journal::read(&dir.path().join("journal.jsonl")).unwrap();
        let applied = journal
            .iter()
            .find(|e| e.outcome == Outcome::Applied)
            .unwrap();
        assert_eq!(applied.seq, intent.seq);
    }

    #[test]
    fn a_dry_run_journals_the_pass_and_allows_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = actuator(dir.path(), true);
        let allowed = a
            .authorize_network(&survey(), serde_json::json!({"why": "test"}))
            .unwrap();
        assert!(allowed.is_none());
        let journal = crate::actuators::journal::read(&dir.path().join("journal.jsonl")).unwrap();
        assert!(
            journal
                .iter()
                .any(|e| e.outcome == Outcome::DryRun && e.action == "tc_reconcile")
        );
        assert!(!journal.iter().any(|e| e.outcome == Outcome::Intent));
    }
}

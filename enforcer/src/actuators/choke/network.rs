//! tc passes through the choke point: every interface checked, the pass journaled before
//! anything is sent to the kernel and after.

use super::{
    Actuator,
    transaction::{Head, Settle},
};
use crate::{
    actuators::{journal::JournalError, tc},
    model::Class,
    policy::shaping::offline_interface,
};

/// The interfaces a pass may change: `(netns inode, name)`.
pub type Allowed = std::collections::BTreeSet<(u64, String)>;

impl Actuator {
    /// The choke point for tc: every interface with pending changes is checked again, the
    /// refused ones journaled, and the pass run through the one protocol — intent (with
    /// every change as the `tc` command it amounts to) before anything is sent to the
    /// kernel, `apply` with the allowed interfaces, the outcome under the intent's number.
    /// An offline subinterface is let through only if the cgroup owning its namespace still
    /// classifies as offline under the rules in force (a name-pattern match is the
    /// operator's own declaration); the bond is shaped as a whole (its online and host
    /// classes are only ever guaranteed or capped per SPEC §3, never squeezed); releasing
    /// enforcer's own objects is always allowed. Returns what was applied (`None`: nothing
    /// allowed was pending, or a dry run).
    pub fn tc_pass(
        &mut self,
        survey: &tc::reconcile::Survey,
        reason: serde_json::Value,
        apply: impl FnOnce(&Allowed) -> tc::reconcile::Applied,
    ) -> Result<Option<tc::reconcile::Applied>, JournalError> {
        use tc::reconcile::Role;
        let pending: Vec<_> = survey
            .interfaces
            .iter()
            .filter(|i| !i.changes.is_empty())
            .collect();
        let mut allowed = Allowed::new();
        let mut refused = Vec::new();
        let offline_sub = |role: &Role| match role {
            Role::Offline { owner, by_pattern } => offline_interface(
                (!owner.is_empty()).then(|| self.classify(owner).class),
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
            let owner = match &i.role {
                Role::Offline { owner, .. } => owner.clone(),
                Role::Ifb { of } => of.clone(),
                _ => String::new(),
            };
            let class = self.classify(&owner);
            let head = Head {
                stage: "network".into(),
                action: "tc_reconcile".into(),
                target: Some(i.name.clone()),
                class: Some(class.class.to_string()),
                priority: None,
                reason: reason.clone(),
                detail: None,
            };
            let why = format!(
                "refused: interface {} belongs to {owner}, which is {} (rule {})",
                i.name, class.class, class.rule
            );
            self.transact::<(), Settle>(head, Some(why), |_| unreachable!("refused"))?;
        }
        let changes: Vec<serde_json::Value> = pending
            .iter()
            .filter(|i| allowed.contains(&(i.netns, i.name.clone())))
            .map(|i| serde_json::json!({"interface": i.name, "namespace": i.namespace, "changes": i.changes}))
            .collect();
        if changes.is_empty() {
            return Ok(None);
        }
        let head = Head {
            stage: "network".into(),
            action: "tc_reconcile".into(),
            target: None,
            class: Some(Class::Offline.to_string()),
            priority: None,
            detail: Some(format!("{} interfaces", changes.len())),
            reason: serde_json::json!({"trigger": reason, "interfaces": changes}),
        };
        let (_, applied) = self.transact(head, None, |_| {
            let applied = apply(&allowed);
            let result = if applied.failures.is_empty() {
                Ok(Some(format!(
                    "{} changes: {}",
                    applied.changes.len(),
                    applied.changes.join("; ")
                )))
            } else {
                Err(format!(
                    "{} changes; failed: {}",
                    applied.changes.len(),
                    applied.failures.join("; ")
                ))
            };
            (Some(applied), result)
        })?;
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::model::classify::Rule;
    use crate::{
        actuators::{
            Operation,
            journal::{Journal, Outcome},
        },
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
            Rule::path(
                "batch",
                regex::Regex::new("^batch/").unwrap(),
                Class::Offline,
                None,
            ),
            Rule::path(
                "web",
                regex::Regex::new("^web/").unwrap(),
                Class::Online,
                None,
            ),
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
        let mut seen = Vec::new();
        let applied = a
            .tc_pass(&survey(), serde_json::json!({"why": "test"}), |allowed| {
                seen = allowed.iter().map(|(_, n)| n.clone()).collect();
                tc::reconcile::Applied::default()
            })
            .unwrap();
        assert!(applied.is_some(), "not a dry run");
        assert_eq!(seen, vec!["bond0", "eifb3", "mvhost0", "mvoff0"]);
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
        let applied = a
            .tc_pass(&survey(), serde_json::json!({"why": "test"}), |_| {
                panic!("a dry run applies nothing")
            })
            .unwrap();
        assert!(applied.is_none());
        let journal = crate::actuators::journal::read(&dir.path().join("journal.jsonl")).unwrap();
        assert!(
            journal
                .iter()
                .any(|e| e.outcome == Outcome::DryRun && e.action == "tc_reconcile")
        );
        assert!(!journal.iter().any(|e| e.outcome == Outcome::Intent));
    }
}

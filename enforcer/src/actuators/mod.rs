//! Acting on the node. Every action on a cgroup goes through [`Actuator::apply`], the one
//! choke point: it classifies the target again with the rules in force (it does not trust
//! its caller's idea of the class), refuses anything that is not offline, writes the
//! intent and its reason to the journal (fsynced) before touching anything, then the
//! outcome. In dry-run mode the decision is journaled and nothing is applied.

pub mod cgroupfs;
pub mod isolation;
pub mod journal;
pub mod tc;

use std::{sync::Arc, time::Duration};

use serde::Serialize;

use crate::{
    actuators::journal::{Entry, Journal, JournalError, Outcome},
    clock::unix_now,
    model::{Class, classify::RuleSet, layout::CgroupLayout},
};
use cgroupfs::CgroupDirs;

/// What to do to one offline cgroup.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// CPU quota in cores; `None` lifts it.
    CpuLimit {
        cores: Option<f64>,
    },
    /// Memory limit in bytes; `None` lifts it.
    MemoryLimit {
        bytes: Option<u64>,
    },
    Freeze,
    Thaw,
    /// Kill every process of the cgroup and its descendants.
    Kill,
}

impl Operation {
    pub fn name(&self) -> &'static str {
        match self {
            Operation::CpuLimit { .. } => "cpu_limit",
            Operation::MemoryLimit { .. } => "memory_limit",
            Operation::Freeze => "freeze",
            Operation::Thaw => "thaw",
            Operation::Kill => "kill",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Ladder stage (or "capacity", "isolation") asking for it.
    pub stage: String,
    /// Cgroup path relative to the hierarchy roots.
    pub target: String,
    pub op: Operation,
    /// Why: the trigger and its measured value, journaled as is.
    pub reason: serde_json::Value,
}

pub struct Actuator {
    layout: CgroupLayout,
    rules: Arc<RuleSet>,
    journal: Journal,
    dry_run: bool,
    kill_timeout: Duration,
    /// Sequence number of the tc pass authorised and not yet concluded: its outcome is
    /// journaled under the same number as its intent.
    network_seq: Option<u64>,
}

impl Actuator {
    pub fn new(
        layout: CgroupLayout,
        rules: Arc<RuleSet>,
        journal: Journal,
        dry_run: bool,
    ) -> Actuator {
        Actuator {
            layout,
            rules,
            journal,
            dry_run,
            kill_timeout: Duration::from_secs(5),
            network_seq: None,
        }
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// For node-wide entries (scheduling gate, node sick), which have no cgroup target.
    pub fn journal_mut(&mut self) -> &mut Journal {
        &mut self.journal
    }

    /// After a configuration reload.
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.rules = rules;
    }

    /// A node-wide journal entry (no cgroup target): isolation batches and tc passes.
    /// `seq` ties an outcome to its intent; `None` takes the next number. Returns the number.
    fn node_entry(
        &mut self,
        stage: &str,
        action: &str,
        outcome: Outcome,
        reason: serde_json::Value,
        detail: String,
        seq: Option<u64>,
    ) -> Result<u64, JournalError> {
        let seq = seq.unwrap_or_else(|| self.journal.next_seq());
        self.journal.append(&Entry {
            at: unix_now(),
            seq,
            stage: stage.into(),
            action: action.into(),
            target: None,
            class: Some("offline".into()),
            priority: None,
            reason,
            outcome,
            detail: Some(detail),
        })?;
        Ok(seq)
    }

    /// Isolates new processes of offline cgroups (SPEC §3): one journaled batch per call.
    /// Each cgroup is classified again here; a cgroup that is not offline is refused and
    /// journaled, its processes untouched. Returns what each isolated process had before.
    pub fn isolate(
        &mut self,
        batch: &[(String, Vec<i32>)],
        oom_score_adj: i32,
        nice: i32,
    ) -> Result<Vec<(i32, String, isolation::Previous)>, JournalError> {
        let mut accepted = Vec::new();
        for (rel, pids) in batch {
            let class = self.rules.classify(rel);
            if class.class != Class::Offline || rel.is_empty() {
                let seq = self.journal.next_seq();
                self.journal.append(&Entry {
                    at: unix_now(),
                    seq,
                    stage: "isolation".into(),
                    action: "isolate".into(),
                    target: Some(rel.clone()),
                    class: Some(class.class.to_string()),
                    priority: None,
                    reason: serde_json::json!({"new_processes": pids.len()}),
                    outcome: Outcome::Refused,
                    detail: Some(format!(
                        "refused: {rel} is {} (rule {})",
                        class.class, class.rule
                    )),
                })?;
                continue;
            }
            accepted.push((rel.clone(), pids.clone()));
        }
        if accepted.is_empty() {
            return Ok(Vec::new());
        }
        let processes: usize = accepted.iter().map(|(_, p)| p.len()).sum();
        let reason = serde_json::json!({
            "why": "offline processes are the OOM killer's first choice and run at a higher nice than online work",
            "oom_score_adj": oom_score_adj,
            "nice": nice,
            "cgroups": accepted.iter().map(|(r, p)| serde_json::json!({"cgroup": r, "pids": p})).collect::<Vec<_>>(),
        });
        let detail = format!("{processes} processes in {} cgroups", accepted.len());
        if self.dry_run {
            self.node_entry(
                "isolation",
                "isolate",
                Outcome::DryRun,
                reason,
                detail,
                None,
            )?;
            return Ok(Vec::new());
        }
        self.node_entry(
            "isolation",
            "isolate",
            Outcome::Intent,
            reason.clone(),
            detail.clone(),
            None,
        )?;
        let mut done = Vec::new();
        let mut failures = Vec::new();
        for (rel, pids) in &accepted {
            for &pid in pids {
                match isolation::isolate(pid, oom_score_adj, nice) {
                    Ok(previous) => done.push((pid, rel.clone(), previous)),
                    Err(e) if isolation::is_gone(&e) => {}
                    Err(e) => failures.push(format!("{pid}: {e}")),
                }
            }
        }
        let outcome = if failures.is_empty() {
            Outcome::Applied
        } else {
            Outcome::Failed
        };
        let detail = if failures.is_empty() {
            detail
        } else {
            format!("{detail}; failed: {}", failures.join(", "))
        };
        self.node_entry("isolation", "isolate", outcome, reason, detail, None)?;
        Ok(done)
    }

    /// Puts back what [`Actuator::isolate`] changed, for processes whose cgroup is no longer
    /// offline. The one write that may reach a process that is not offline: it only undoes
    /// enforcer's own change, and is journaled like any other.
    pub fn restore_isolation(
        &mut self,
        items: &[(i32, String, isolation::Previous)],
    ) -> Result<(), JournalError> {
        if items.is_empty() {
            return Ok(());
        }
        let reason = serde_json::json!({
            "why": "cgroup no longer offline: restoring what enforcer changed",
            "processes": items.iter().map(|(pid, rel, p)| serde_json::json!({
                "pid": pid, "cgroup": rel, "oom_score_adj": p.oom_score_adj, "nice": p.nice,
            })).collect::<Vec<_>>(),
        });
        let detail = format!("{} processes", items.len());
        if self.dry_run {
            return self
                .node_entry(
                    "isolation",
                    "restore_isolation",
                    Outcome::DryRun,
                    reason,
                    detail,
                    None,
                )
                .map(drop);
        }
        self.node_entry(
            "isolation",
            "restore_isolation",
            Outcome::Intent,
            reason.clone(),
            detail.clone(),
            None,
        )?;
        for (pid, _, previous) in items {
            if let Err(e) = isolation::restore(*pid, *previous)
                && !isolation::is_gone(&e)
            {
                tracing::warn!(pid, "restoring isolation: {e}");
            }
        }
        self.node_entry(
            "isolation",
            "restore_isolation",
            Outcome::Applied,
            reason,
            detail,
            None,
        )
        .map(drop)
    }

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
            Role::Offline { owner, by_pattern } => {
                match (owner.is_empty(), self.rules.classify(owner).class) {
                    (true, _) => *by_pattern,
                    (false, Class::Offline) => true,
                    (false, Class::Online) => false,
                    (false, Class::System) => *by_pattern,
                }
            }
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

    /// The choke point. Returns what happened; fails only if the journal cannot be
    /// written, in which case nothing was applied.
    pub fn apply(&mut self, req: &Request) -> Result<Outcome, JournalError> {
        let rel = req.target.trim_start_matches('/');
        let class = self.rules.classify(rel);
        let seq = self.journal.next_seq();
        let entry = |outcome, detail: Option<String>| Entry {
            at: unix_now(),
            seq,
            stage: req.stage.clone(),
            action: req.op.name().to_string(),
            target: Some(rel.to_string()),
            class: Some(class.class.to_string()),
            priority: class.priority.map(|p| p.to_string()),
            reason: serde_json::json!({ "trigger": req.reason, "request": req.op }),
            outcome,
            detail,
        };

        // Never act on anything that is not offline, nor on a hierarchy root.
        if class.class != Class::Offline || rel.is_empty() {
            let why = format!(
                "refused: {} is {} (rule {}), only offline cgroups are acted on",
                if rel.is_empty() { "/" } else { rel },
                class.class,
                class.rule
            );
            tracing::warn!("{why}");
            self.journal.append(&entry(Outcome::Refused, Some(why)))?;
            return Ok(Outcome::Refused);
        }
        if self.dry_run {
            self.journal.append(&entry(Outcome::DryRun, None))?;
            tracing::info!(target = rel, op = req.op.name(), "dry run: not applied");
            return Ok(Outcome::DryRun);
        }

        self.journal.append(&entry(Outcome::Intent, None))?;
        let dirs = CgroupDirs::resolve(&self.layout, rel);
        let result = match &req.op {
            Operation::CpuLimit { cores } => cgroupfs::set_cpu_limit(&dirs, *cores).map(|()| None),
            Operation::MemoryLimit { bytes } => {
                cgroupfs::set_memory_limit(&dirs, *bytes).map(|()| None)
            }
            Operation::Freeze => cgroupfs::set_frozen(&dirs, true).map(|()| None),
            Operation::Thaw => cgroupfs::set_frozen(&dirs, false).map(|()| None),
            Operation::Kill => cgroupfs::kill_all(&dirs, self.kill_timeout)
                .map(|n| Some(format!("{n} processes killed"))),
        };
        match result {
            Ok(detail) => {
                tracing::info!(target = rel, op = req.op.name(), stage = %req.stage, "applied");
                self.journal.append(&entry(Outcome::Applied, detail))?;
                Ok(Outcome::Applied)
            }
            Err(e) => {
                tracing::error!(target = rel, op = req.op.name(), "{e}");
                self.journal
                    .append(&entry(Outcome::Failed, Some(e.to_string())))?;
                Ok(Outcome::Failed)
            }
        }
    }
}

#[cfg(test)]
mod network_tests {
    use super::*;
    use crate::model::classify::Rule;

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

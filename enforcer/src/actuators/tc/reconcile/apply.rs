//! Applying a survey's plan: IFBs created first, the operations in order, IFBs nobody needs
//! deleted, and what enforcer now owns recorded in its state file.

use super::*;

impl Reconciler {
    /// Applies what the last survey planned. `prog_fd` is the classifier's fd; `allowed`
    /// says, per interface, whether the choke point let it through.
    pub fn apply(
        &mut self,
        survey: &Survey,
        prog_fd: Option<RawFd>,
        allowed: &dyn Fn(&InterfaceReport) -> bool,
    ) -> Applied {
        let mut applied = Applied::default();
        let runtime = self.runtime.take().expect("one pass at a time");
        let before = self.owned.clone();
        runtime.block_on(async {
            // IFBs first: the redirects point at them.
            let mut created: HashMap<(u64, String), u32> = HashMap::new();
            for r in survey.interfaces.iter().filter(|r| allowed(r)) {
                let Some(conn) = self.conns.get(&r.netns) else {
                    continue;
                };
                if r.link == Some(LinkOp::CreateIfb) {
                    match conn.add_ifb(&r.name).await {
                        Ok(index) => {
                            created.insert((r.netns, r.name.clone()), index);
                            self.owned.ifbs.insert((r.netns, index, r.name.clone()));
                            applied
                                .changes
                                .push(format!("ip link add name {} up type ifb", r.name));
                        }
                        Err(e) => applied.failures.push(format!("{}: {e}", r.name)),
                    }
                }
            }
            for r in survey.interfaces.iter().filter(|r| allowed(r)) {
                let Some(conn) = self.conns.get(&r.netns) else {
                    continue;
                };
                let ifindex = if r.ifindex == 0 {
                    match created.get(&(r.netns, r.name.clone())) {
                        Some(&i) => i,
                        None => continue,
                    }
                } else {
                    r.ifindex
                };
                let ifb_of_this = created
                    .get(&(r.netns, format!("{IFB_PREFIX}{}", r.ifindex)))
                    .copied();
                for op in &r.ops {
                    let op = fill(op, ifindex, ifb_of_this, prog_fd);
                    let line = format!("{} on {}", describe(&op), r.name);
                    match conn.apply(&op).await {
                        Ok(()) => {
                            record(&mut self.owned, r, ifindex, &op);
                            applied.changes.push(line);
                        }
                        Err(e) => {
                            applied.failures.push(format!("{line}: {e}"));
                            // The rest of this interface's plan depends on this step.
                            break;
                        }
                    }
                }
                if r.link == Some(LinkOp::DeleteIfb) {
                    match conn.delete_link(r.ifindex).await {
                        Ok(()) => {
                            self.owned
                                .ifbs
                                .retain(|(n, i, _)| !(*n == r.netns && *i == r.ifindex));
                            applied.changes.push(format!("ip link del {}", r.name));
                        }
                        Err(e) => applied.failures.push(format!("{}: {e}", r.name)),
                    }
                }
            }
        });
        self.runtime = Some(runtime);
        self.conns.clear();
        // Objects on interfaces or namespaces that no longer exist are no longer owned.
        self.adopt(survey);
        if self.owned != before
            && let Some(path) = &self.state_path
            && let Err(e) = self.owned.save(path)
        {
            applied.failures.push(format!(
                "{}: cannot record what enforcer owns: {e}",
                path.display()
            ));
        }
        applied
    }

    /// Drops the connections of a survey that will not be applied.
    pub fn discard(&mut self) {
        self.conns.clear();
    }

    /// Keeps the record in step with what the survey saw: enforcer's HTB roots are its own
    /// even without a record (the `ef00:` handle says so); records of interfaces that are
    /// gone from namespaces that were read are dropped.
    fn adopt(&mut self, survey: &Survey) {
        let seen: BTreeSet<(u64, u32)> = survey
            .links
            .iter()
            .map(|l| (l.netns, l.ifindex))
            .chain(survey.interfaces.iter().map(|r| (r.netns, r.ifindex)))
            .collect();
        let read: BTreeSet<u64> = survey.links.iter().map(|l| l.netns).collect();
        let gone = |n: u64, i: u32| read.contains(&n) && !seen.contains(&(n, i));
        self.owned.ingress.retain(|&(n, i)| !gone(n, i));
        self.owned.roots.retain(|(n, i, _)| !gone(*n, *i));
        for r in &survey.interfaces {
            if matches!(r.installed.root, RootQdisc::Htb { .. }) && r.wanted.is_some() {
                self.owned
                    .roots
                    .insert((r.netns, r.ifindex, r.name.clone()));
            }
        }
    }
}

/// An operation as planned, completed with what is known only when applying.
fn fill(op: &TcOp, ifindex: u32, new_ifb: Option<u32>, prog_fd: Option<RawFd>) -> TcOp {
    let mut op = op.clone();
    match &mut op {
        TcOp::ReplaceRoot { ifindex: i, .. }
        | TcOp::DeleteRoot { ifindex: i }
        | TcOp::AddIngress { ifindex: i }
        | TcOp::DeleteIngress { ifindex: i }
        | TcOp::AddClass { ifindex: i, .. }
        | TcOp::ChangeClass { ifindex: i, .. }
        | TcOp::DeleteClass { ifindex: i, .. }
        | TcOp::DeleteFilter { ifindex: i, .. } => *i = ifindex,
        TcOp::SetClassifier {
            ifindex: i,
            prog_fd: fd,
            ..
        } => {
            *i = ifindex;
            *fd = prog_fd.unwrap_or(-1) as u32;
        }
        TcOp::AddRedirect {
            ifindex: i,
            target_ifindex,
            ..
        } => {
            *i = ifindex;
            if *target_ifindex == 0 {
                *target_ifindex = new_ifb.unwrap_or(0);
            }
        }
    }
    op
}

/// A short description for the journal.
fn describe(op: &TcOp) -> String {
    use crate::model::tc::{handle_str, rate_str};
    match op {
        TcOp::ReplaceRoot { default_minor, .. } => {
            format!("htb root ef00: default {default_minor:x}")
        }
        TcOp::DeleteRoot { .. } => "delete root qdisc".into(),
        TcOp::AddIngress { .. } => "ingress qdisc".into(),
        TcOp::DeleteIngress { .. } => "delete ingress qdisc".into(),
        TcOp::AddClass { class, .. } | TcOp::ChangeClass { class, .. } => format!(
            "{} class {} rate {} ceil {}",
            if matches!(op, TcOp::AddClass { .. }) {
                "add"
            } else {
                "change"
            },
            handle_str(class.classid),
            rate_str(class.rate),
            rate_str(class.ceil)
        ),
        TcOp::DeleteClass { classid, .. } => format!("delete class {}", handle_str(*classid)),
        TcOp::SetClassifier { replace, .. } => {
            format!(
                "{} cgroup classifier",
                if *replace { "replace" } else { "add" }
            )
        }
        TcOp::AddRedirect { target_ifindex, .. } => {
            format!("redirect ingress to ifindex {target_ifindex}")
        }
        TcOp::DeleteFilter { parent, prio, .. } => {
            format!("delete filter {} prio {prio}", handle_str(*parent))
        }
    }
}

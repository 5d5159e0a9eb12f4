//! One tc operation as enforcer plans it: the shaping planner emits these, the netlink
//! codec encodes them, the reports print them as the `tc` command an operator would type.

use super::{HTB_R2Q, HtbClass, ROOT_HANDLE, burst_for, handle_str as h};

/// One tc operation on one interface, as enforcer sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcOp {
    /// `tc qdisc replace dev X root handle ef00: htb default MINOR r2q 10`.
    ReplaceRoot { ifindex: u32, default_minor: u16 },
    /// `tc qdisc del dev X root`.
    DeleteRoot { ifindex: u32 },
    /// `tc qdisc add dev X ingress`.
    AddIngress { ifindex: u32 },
    /// `tc qdisc del dev X ingress`.
    DeleteIngress { ifindex: u32 },
    /// `tc class add dev X parent P classid C htb ...`.
    AddClass { ifindex: u32, class: HtbClass },
    /// `tc class change dev X parent P classid C htb ...`.
    ChangeClass { ifindex: u32, class: HtbClass },
    /// `tc class del dev X classid C`.
    DeleteClass { ifindex: u32, classid: u32 },
    /// `tc filter add|replace dev X parent P protocol all prio N handle H bpf fd FD name NAME`
    /// (not direct-action: the program returns the classid).
    SetClassifier {
        ifindex: u32,
        parent: u32,
        prio: u16,
        handle: u32,
        prog_fd: u32,
        name: String,
        replace: bool,
    },
    /// `tc filter add dev X parent ffff: protocol all prio N u32 match u32 0 0 action mirred
    /// egress redirect dev IFB`.
    AddRedirect {
        ifindex: u32,
        prio: u16,
        target_ifindex: u32,
    },
    /// `tc filter del dev X parent P protocol all prio N`.
    DeleteFilter {
        ifindex: u32,
        parent: u32,
        prio: u16,
    },
}

impl TcOp {
    pub fn ifindex(&self) -> u32 {
        match self {
            TcOp::ReplaceRoot { ifindex, .. }
            | TcOp::DeleteRoot { ifindex }
            | TcOp::AddIngress { ifindex }
            | TcOp::DeleteIngress { ifindex }
            | TcOp::AddClass { ifindex, .. }
            | TcOp::ChangeClass { ifindex, .. }
            | TcOp::DeleteClass { ifindex, .. }
            | TcOp::SetClassifier { ifindex, .. }
            | TcOp::AddRedirect { ifindex, .. }
            | TcOp::DeleteFilter { ifindex, .. } => *ifindex,
        }
    }

    /// The same operation as `tc` arguments (what an operator would type), with `dev` the
    /// interface's name, `name_of` naming other interfaces (a redirect's IFB), and `bpf` how
    /// `tc` finds the classifier program (`object-pinned /sys/fs/bpf/...`).
    pub fn tc_args(&self, dev: &str, name_of: &dyn Fn(u32) -> String, bpf: &str) -> Vec<String> {
        let class = |verb: &str, c: &HtbClass| {
            format!(
                "class {verb} dev {dev} parent {} classid {} htb rate {}bit ceil {}bit burst {} cburst {} quantum {} prio {}",
                h(c.parent),
                h(c.classid),
                c.rate * 8,
                c.ceil * 8,
                burst_for(c.rate),
                burst_for(c.ceil),
                c.quantum,
                c.prio
            )
        };
        let line = match self {
            TcOp::ReplaceRoot { default_minor, .. } => format!(
                "qdisc replace dev {dev} root handle {} htb default {default_minor:x} r2q {HTB_R2Q}",
                h(ROOT_HANDLE)
            ),
            TcOp::DeleteRoot { .. } => format!("qdisc del dev {dev} root"),
            TcOp::AddIngress { .. } => format!("qdisc add dev {dev} ingress"),
            TcOp::DeleteIngress { .. } => format!("qdisc del dev {dev} ingress"),
            TcOp::AddClass { class: c, .. } => class("add", c),
            TcOp::ChangeClass { class: c, .. } => class("change", c),
            TcOp::DeleteClass { classid, .. } => {
                format!("class del dev {dev} classid {}", h(*classid))
            }
            TcOp::SetClassifier {
                parent,
                prio,
                handle,
                replace,
                ..
            } => format!(
                "filter {} dev {dev} parent {} protocol all prio {prio} handle {handle} {bpf}",
                if *replace { "replace" } else { "add" },
                h(*parent)
            ),
            TcOp::AddRedirect {
                prio,
                target_ifindex,
                ..
            } => format!(
                "filter add dev {dev} parent ffff: protocol all prio {prio} u32 match u32 0 0 action mirred egress redirect dev {}",
                name_of(*target_ifindex)
            ),
            TcOp::DeleteFilter { parent, prio, .. } => {
                format!(
                    "filter del dev {dev} parent {} protocol all prio {prio}",
                    h(*parent)
                )
            }
        };
        line.split(' ').map(String::from).collect()
    }
}

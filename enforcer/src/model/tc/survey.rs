//! What a tc pass finds and plans (plain data, filled by the reconciler's survey): per interface, what is installed, what is wanted and the
//! changes between them (as `tc` commands), and what applying did. Serialised for
//! `enforcer tc show|apply` and the journal.

use serde::{Deserialize, Serialize};

use super::{InterfaceTc, TcOp};

/// Why enforcer manages an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Role {
    /// The bond: online, host and offline classes.
    Bond,
    /// An offline macvlan subinterface: `owner` is the cgroup owning its pod namespace
    /// (empty on the host), `by_pattern` says it is offline by the configured name pattern
    /// rather than by its owner's class.
    Offline { owner: String, by_pattern: bool },
    /// The IFB carrying an offline subinterface's ingress.
    Ifb { of: String },
    /// enforcer's objects on an interface it no longer wants to shape.
    Released,
}

/// One interface of a pass: what is installed, what is wanted, the plan between.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InterfaceReport {
    pub netns: u64,
    /// `host`, or the cgroup owning the pod namespace.
    pub namespace: String,
    /// 0 for an IFB still to be created.
    pub ifindex: u32,
    pub name: String,
    #[serde(flatten)]
    pub role: Role,
    pub installed: InterfaceTc,
    pub wanted: Option<InterfaceTc>,
    /// The planned changes, as `tc` commands.
    pub changes: Vec<String>,
    /// Why parts of it are left alone.
    pub conflicts: Vec<String>,
    #[serde(skip)]
    pub ops: Vec<TcOp>,
    #[serde(skip)]
    pub link: Option<LinkOp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOp {
    CreateIfb,
    DeleteIfb,
}

/// A link seen in a pass, for per-interface byte rates.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkSample {
    pub netns: u64,
    pub namespace: String,
    pub name: String,
    pub ifindex: u32,
    /// `bond`, `macvlan`.
    pub kind: String,
    /// Whose traffic it carries: `node` for the bond, else the namespace owner's class.
    pub class: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The result of a survey.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Survey {
    pub bond_present: bool,
    pub interfaces: Vec<InterfaceReport>,
    pub links: Vec<LinkSample>,
    /// Namespaces that could not be read (gone between the scan and the pass, ...).
    pub errors: Vec<String>,
    pub seconds: f64,
}

impl Survey {
    /// Planned operations (tc and link), over all interfaces.
    pub fn pending(&self) -> usize {
        self.interfaces
            .iter()
            .map(|i| i.ops.len() + usize::from(i.link.is_some()))
            .sum()
    }

    pub fn conflicts(&self) -> usize {
        self.interfaces.iter().map(|i| i.conflicts.len()).sum()
    }
}

/// What applying did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    pub changes: Vec<String>,
    pub failures: Vec<String>,
}

//! The record of what enforcer installed (HTB roots, ingress qdiscs, IFBs), kept in
//! `<state_dir>/network.json` so that a restarted daemon adopts its own objects and
//! shutdown removes exactly those.

use std::{collections::BTreeSet, path::Path};

use serde::{Deserialize, Serialize};

use crate::model::tc::{TcOp, survey::InterfaceReport};

/// What enforcer installed, persisted so that it survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    /// `(netns inode, ifindex)` with enforcer's `ingress` qdisc.
    pub ingress: BTreeSet<(u64, u32)>,
    /// `(netns inode, ifindex, name)` of IFBs enforcer created.
    pub ifbs: BTreeSet<(u64, u32, String)>,
    /// `(netns inode, ifindex, name)` with enforcer's HTB root.
    pub roots: BTreeSet<(u64, u32, String)>,
}

impl Owned {
    pub(super) fn load(path: &Path) -> Owned {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "{}: unreadable ({e}); starting without a record",
                    path.display()
                );
                Owned::default()
            }),
            Err(_) => Owned::default(),
        }
    }

    /// Written to a temporary file, fsynced and renamed: a crash leaves the old record or
    /// the new one, never half of one.
    pub(super) fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

/// Notes the effect of an applied operation on what enforcer owns.
pub(super) fn record(owned: &mut Owned, r: &InterfaceReport, ifindex: u32, op: &TcOp) {
    let key = (r.netns, ifindex);
    match op {
        TcOp::ReplaceRoot { .. } => {
            owned.roots.insert((r.netns, ifindex, r.name.clone()));
        }
        TcOp::DeleteRoot { .. } => owned.roots.retain(|(n, i, _)| (*n, *i) != key),
        TcOp::AddIngress { .. } => {
            owned.ingress.insert(key);
        }
        TcOp::DeleteIngress { .. } => {
            owned.ingress.remove(&key);
        }
        _ => {}
    }
}

//! What an effect whose outcome is still to come is, as data (followed up by
//! `unsettled.rs`).

use crate::actuators::{
    cgroupfs::{FreezeFollowUp, KillFollowUp},
    journal::{Entry, Outcome},
};

/// What the kernel has yet to complete.
pub enum FollowUp {
    Freeze(FreezeFollowUp),
    Kill(KillFollowUp),
}

/// An intent journaled, its outcome not yet.
pub struct Unsettled {
    pub intent: Entry,
    pub follow: FollowUp,
}

/// An effect whose outcome a later tick journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The intent's sequence number, under which the outcome went.
    pub seq: u64,
    pub stage: String,
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    pub detail: Option<String>,
}

//! What an effect whose outcome is still to come is, as data (followed up by
//! `unsettled.rs`).

use crate::actuators::{
    cgroupfs::FreezeFollowUp,
    journal::{Entry, Outcome},
};

/// An intent journaled, its outcome not yet.
pub struct Unsettled {
    pub intent: Entry,
    pub follow: FreezeFollowUp,
}

/// An effect whose outcome a later tick journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The intent's sequence number, under which the outcome went.
    pub seq: u64,
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    pub detail: Option<String>,
}

//! What the surfaces show of the offline units' usage (the ledger's figures while they run).

use serde::{Deserialize, Serialize};

/// One unit's use so far (the top N by CPU are shown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitUsage {
    pub id: String,
    pub namespace: String,
    pub pod: String,
    pub queue: String,
    pub application_id: String,
    pub cpu_seconds: f64,
    pub memory_byte_seconds: f64,
}

/// A queue's or a namespace's use: units running now and those ended since the daemon
/// started (monotone while it runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupUsage {
    pub name: String,
    pub cpu_seconds: f64,
    pub memory_byte_seconds: f64,
    pub units_ended: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageView {
    /// The ledger's live segment ("" when it could not be opened).
    pub ledger: String,
    pub ledger_write_failures: u64,
    pub units_open: u64,
    pub units: Vec<UnitUsage>,
    pub by_queue: Vec<GroupUsage>,
    pub by_namespace: Vec<GroupUsage>,
}

//! What a controller asks the choke point to do to one offline cgroup.

use serde::Serialize;

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

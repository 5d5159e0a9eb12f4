//! What the node looks like: the cgroup layout, where each controller the effects need is
//! (and whether cgroup2 delegates it), the classification of each cgroup, and the live
//! index `cgroup id -> path -> class`.

pub mod classify;
pub mod controllers;
pub mod hierarchies;
pub mod index;
pub mod layout;
pub mod netns;
pub mod pod;
pub mod tc;
pub mod usage;

use serde::{Deserialize, Serialize};

/// What kind of work a cgroup holds (SPEC §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Latency-sensitive services: never acted upon.
    Online,
    /// Batch work that may be bounded, frozen or killed.
    Offline,
    /// The OS, kubelet, HDFS datanode, Yarn NodeManager and everything unmatched.
    System,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Online, Class::Offline, Class::System];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Online => "online",
            Class::Offline => "offline",
            Class::System => "system",
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Priority of an offline unit: `P1` is the most important, `debug` the least, and the
/// protection ladder evicts in the reverse of this order (SPEC §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    P1,
    P2,
    P3,
    #[serde(rename = "debug")]
    Debug,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Priority::P1, Priority::P2, Priority::P3, Priority::Debug];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::Debug => "debug",
        }
    }

    /// Parses the spelling used in config files and cgroup paths (`P1`, `p1`, `debug`).
    pub fn parse(s: &str) -> Option<Priority> {
        match s.to_ascii_lowercase().as_str() {
            "p1" => Some(Priority::P1),
            "p2" => Some(Priority::P2),
            "p3" => Some(Priority::P3),
            "debug" => Some(Priority::Debug),
            _ => None,
        }
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

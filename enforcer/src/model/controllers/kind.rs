//! The controllers the enforcer's effects rely on, the features they carry, and where a
//! controller can be on a host.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A controller the enforcer's effects rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    Cpu,
    Memory,
    /// The v1 `freezer`; on cgroup2 freezing is the core file `cgroup.freeze`.
    Freezer,
    Pids,
}

impl Controller {
    pub const ALL: [Controller; 4] = [
        Controller::Cpu,
        Controller::Memory,
        Controller::Freezer,
        Controller::Pids,
    ];

    /// The name in mount options, `cgroup.controllers` and `cgroup.subtree_control`.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Memory => "memory",
            Controller::Freezer => "freezer",
            Controller::Pids => "pids",
        }
    }

    /// Whether cgroup2 needs it delegated (`+name` in the ancestors' `subtree_control`):
    /// not the freezer, which is a core file there.
    pub fn delegated_on_v2(self) -> bool {
        self != Controller::Freezer
    }

    /// The enforcer feature that is off without it. The pids controller is reported for
    /// completeness: nothing of the enforcer depends on it.
    pub fn feature(self) -> Option<Feature> {
        match self {
            Controller::Cpu => Some(Feature::CpuQuota),
            Controller::Memory => Some(Feature::MemoryLimits),
            Controller::Freezer => Some(Feature::Freeze),
            Controller::Pids => None,
        }
    }
}

impl std::fmt::Display for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the enforcer does to offline cgroups, as a controller gap can turn it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    CpuQuota,
    MemoryLimits,
    Freeze,
    /// Never off for want of a controller (`cgroup.procs` is core, signals need none); listed
    /// so that the surfaces show the four effects side by side.
    Kill,
}

impl Feature {
    pub const ALL: [Feature; 4] = [
        Feature::CpuQuota,
        Feature::MemoryLimits,
        Feature::Freeze,
        Feature::Kill,
    ];

    /// The metric label and the wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::CpuQuota => "cpu_quota",
            Feature::MemoryLimits => "memory_limits",
            Feature::Freeze => "freeze",
            Feature::Kill => "kill",
        }
    }

    /// What an operator reads: "offline memory limits are off".
    pub fn off(self) -> &'static str {
        match self {
            Feature::CpuQuota => "offline CPU quota is off",
            Feature::MemoryLimits => "offline memory limits are off",
            Feature::Freeze => "offline freeze is off",
            Feature::Kill => "offline kill is off",
        }
    }
}

/// Where a controller is on this host, as the actuators will use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Placement {
    /// A v1 hierarchy mounted here.
    V1(PathBuf),
    /// The cgroup2 hierarchy mounted here, with the controller in its root's
    /// `cgroup.controllers` (for the freezer: cgroup2 is mounted, `cgroup.freeze` is core).
    Unified(PathBuf),
    /// Neither.
    Nowhere,
}

impl Placement {
    pub(super) fn describe(&self) -> String {
        match self {
            Placement::V1(p) => format!("v1 {}", p.display()),
            Placement::Unified(p) => format!("cgroup2 {}", p.display()),
            Placement::Nowhere => "none".into(),
        }
    }
}

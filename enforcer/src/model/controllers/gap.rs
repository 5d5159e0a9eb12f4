//! A controller gap: what it turns off and the one line that says so.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{
    delegation::NotDelegated,
    kind::{Controller, Feature},
};

/// A controller that is missing, or not delegated to a cgroup: what it turns off and the one
/// line that says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub controller: Controller,
    /// None for the pids controller, which nothing depends on.
    pub feature: Option<Feature>,
    /// The cgroup whose `cgroup.subtree_control` lacks the controller, or the cgroup missing
    /// from a v1 hierarchy; None when the controller is on no hierarchy at all.
    pub cgroup: Option<PathBuf>,
    /// One line, naming the controller and the cgroup, saying what is off and what to do.
    pub explain: String,
}

impl Gap {
    pub(super) fn new(
        controller: Controller,
        cgroup: Option<PathBuf>,
        what: String,
        hint: &str,
    ) -> Gap {
        let off = controller
            .feature()
            .map_or("no enforcer feature depends on it", Feature::off);
        Gap {
            controller,
            feature: controller.feature(),
            cgroup,
            explain: format!("{what}: {off}{hint}"),
        }
    }

    pub(super) fn not_delegated(nd: NotDelegated) -> Gap {
        let hint = format!(" (enable it with \"+{}\")", nd.controller.name());
        Gap::new(
            nd.controller,
            Some(nd.cgroup.clone()),
            nd.to_string(),
            &hint,
        )
    }
}

/// The features off because of `gaps` (each once, in [`Feature::ALL`] order).
pub fn features_off(gaps: &[Gap]) -> Vec<Feature> {
    Feature::ALL
        .into_iter()
        .filter(|f| gaps.iter().any(|g| g.feature == Some(*f)))
        .collect()
}

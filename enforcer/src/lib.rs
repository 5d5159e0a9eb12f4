//! enforcer: kernel-level sight and sub-second action for nodes that co-locate online
//! services with offline batch work.
//!
//! Layers, each in its own module:
//! - [`sampling`]: eBPF programs and reading their maps;
//! - [`model`]: cgroup layout discovery, classification and the live index;
//! - [`policy`]: pure computations over samples (windows, utilisation);
//! - [`surfaces`]: metrics, the control socket and the CLI;
//! - [`daemon`]: the tick loop that wires them together.

pub mod actuators;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod host;
pub mod model;
pub mod policy;
pub mod sampling;
pub mod surfaces;
pub mod text;

//! enforcer: kernel-level sight and sub-second action for nodes that co-locate online
//! services with offline batch work.
//!
//! Layers, bottom to top; each uses only those below it (`cargo xtask layers` checks, and
//! ARCHITECTURE.md is the map):
//! 0. [`host`] (the node's files as the daemon's logic reads them, behind one trait);
//! 1. [`model`] (plain data: layout, classification, the live index, tc objects), [`clock`],
//!    [`text`];
//! 2. [`sampling`] (the eBPF programs and their maps), [`runtime`] (the container runtime
//!    over CRI) and [`policy`] (pure computations,
//!    time injected);
//! 3. [`config`] (the TOML file);
//! 4. [`actuators`] (the only writers to the kernel, behind the one choke point);
//! 5. [`surfaces`] (the wire schema, metrics, the control socket, the CLI's renderings);
//! 6. [`daemon`] (the tick: sample, decide, apply through the choke point, publish).

pub mod actuators;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod host;
pub mod model;
pub mod policy;
pub mod runtime;
pub mod sampling;
pub mod surfaces;
pub mod text;

//! Acting on the node: the only layer that writes to the kernel. Every effect goes through
//! [`Actuator`], the one choke point: it classifies the target again with the rules in force
//! (it does not trust its caller's idea of the class), refuses anything that is not offline,
//! writes the intent and its reason to the journal (fsynced) before touching anything, then
//! the outcome. In dry-run mode the decision is journaled and nothing is applied.

pub mod cgroupfs;
mod choke;
pub mod isolation;
pub mod journal;
pub mod kube;
pub mod record;
mod request;
pub mod tc;

pub use choke::{Actuator, Settled};
pub use request::{Operation, Request};

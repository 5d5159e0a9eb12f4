//! Text renderings for the operator's terminal, one module per subcommand of the
//! `enforcer` binary (whose handlers, in `enforcer/src/command/`, fetch the data and print
//! what these return), plus the live `top` loop. Pure functions of a [`Snapshot`], journal
//! entries or a [`TcReport`], so unit tests pin the output byte for byte (`tests.rs`,
//! against `golden/`).
//!
//! [`Snapshot`]: super::snapshot::Snapshot
//! [`TcReport`]: super::snapshot::TcReport

pub mod cgroups;
pub mod explain;
pub mod journal;
pub mod status;
pub mod tc;
pub mod top;
pub mod usage;

use crate::model::tc::rate_str;

fn priority(p: Option<crate::model::Priority>) -> &'static str {
    p.map(|p| p.as_str()).unwrap_or("-")
}

fn path(p: &str) -> String {
    format!("/{p}")
}

fn rate(bytes_per_second: f64) -> String {
    rate_str(bytes_per_second.max(0.0) as u64)
}

#[cfg(test)]
mod tests;

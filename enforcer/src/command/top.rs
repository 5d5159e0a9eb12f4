//! `enforcer top`: the live table (the loop itself is the library's, to be unit-testable
//! with the rest of the renderings).

use std::time::Duration;

use enforcer::surfaces::cli::top;

use super::{Output, Target};

pub fn execute(
    target: &Target,
    interval: f64,
    iterations: Option<u64>,
    rows: usize,
) -> anyhow::Result<()> {
    top::run(
        &target.socket,
        top::TopOptions {
            interval: Duration::from_secs_f64(interval.max(0.1)),
            iterations,
            rows,
            json: target.output == Output::Json,
        },
    )
    .map_err(Into::into)
}

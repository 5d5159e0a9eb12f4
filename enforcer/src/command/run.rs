//! `enforcer run`: the daemon.

use std::path::PathBuf;

use enforcer::{config::Config, daemon};

pub fn execute(config_path: Option<PathBuf>, dry_run: bool) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match &config_path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    daemon::run(daemon::RunOptions {
        config,
        config_path,
        dry_run,
    })
}

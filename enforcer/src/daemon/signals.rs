//! What the main thread waits for once the daemon runs: SIGTERM or SIGINT (stop), and SIGHUP
//! or a change of the configuration file (a reload, carried out by the sampler thread).

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::Context;

use super::{
    reload::{ReloadRequest, Trigger},
    watch::ConfigWatcher,
};

/// The signals the daemon answers, installed before anything else is started: SIGHUP's
/// default action ends the process, so an operator's reload right after a start (or a
/// DaemonSet's ConfigMap tooling) must never find the handler missing.
pub(super) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Within the runtime's context.
    pub(super) fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing SIGHUP handler")?,
        })
    }
}

pub(super) async fn wait_for_shutdown(
    signals: Signals,
    mut watcher: Option<ConfigWatcher>,
    reload: &ReloadRequest,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    let mut check = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(()) }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(()) }
            _ = hup.recv() => reload.ask(Trigger::Sighup),
            _ = file_changed(&mut watcher) => reload.ask(Trigger::FileChanged),
            // The sampler thread stops on a fatal error; follow it.
            _ = check.tick() => if stop.load(Ordering::Relaxed) { return Ok(()) },
        }
    }
}

/// Returns when the watched configuration file changed; never without a watcher.
async fn file_changed(watcher: &mut Option<ConfigWatcher>) {
    match watcher {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

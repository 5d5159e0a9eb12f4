//! Asking for a reload of the configuration file, and what the surfaces learn of its
//! outcome. Two things ask: SIGHUP, and a change of the file (`watch`, for ConfigMap
//! updates); the sampler thread takes the request at its next tick and reloads the same way
//! for both (`SamplerLoop::reload`).

use std::sync::atomic::{AtomicU8, Ordering};

use crate::surfaces::snapshot::ConfigView;

/// What asked for a reload, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
    Sighup,
    FileChanged,
}

impl Trigger {
    const fn bit(self) -> u8 {
        match self {
            Trigger::Sighup => 1,
            Trigger::FileChanged => 2,
        }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Trigger::Sighup => "SIGHUP",
            Trigger::FileChanged => "config file changed",
        }
    }
}

/// The pending requests, set by the signal handler and the watcher, taken by the tick.
#[derive(Debug, Default)]
pub(super) struct ReloadRequest(AtomicU8);

impl ReloadRequest {
    pub(super) fn ask(&self, trigger: Trigger) {
        self.0.fetch_or(trigger.bit(), Ordering::Relaxed);
    }

    /// The pending request, if any (requests that came together make one reload, named
    /// after the signal when there was one).
    pub(super) fn take(&self) -> Option<Trigger> {
        let bits = self.0.swap(0, Ordering::Relaxed);
        [Trigger::Sighup, Trigger::FileChanged]
            .into_iter()
            .find(|t| bits & t.bit() != 0)
    }
}

/// A reload applied at `at` (Unix seconds).
pub(super) fn succeeded(view: &mut ConfigView, at: f64) {
    view.reloads_total += 1;
    view.loaded_at = at;
    view.last_reload_failed = false;
    view.last_error = None;
}

/// A reload refused: the running configuration stays.
pub(super) fn failed(view: &mut ConfigView, error: &str) {
    view.reload_failures_total += 1;
    view.last_reload_failed = true;
    view.last_error = Some(error.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_coalesce_until_taken() {
        let r = ReloadRequest::default();
        assert_eq!(r.take(), None);
        r.ask(Trigger::FileChanged);
        r.ask(Trigger::FileChanged);
        assert_eq!(r.take(), Some(Trigger::FileChanged));
        assert_eq!(r.take(), None);
        r.ask(Trigger::FileChanged);
        r.ask(Trigger::Sighup);
        assert_eq!(r.take(), Some(Trigger::Sighup));
        assert_eq!(r.take(), None);
    }

    #[test]
    fn a_failure_is_shown_until_a_reload_succeeds() {
        let mut v = ConfigView {
            loaded_at: 10.0,
            ..Default::default()
        };
        failed(&mut v, "f: daemon.top_n: 0 is out of range");
        assert!(v.last_reload_failed);
        assert_eq!((v.reloads_total, v.reload_failures_total), (0, 1));
        assert_eq!(v.loaded_at, 10.0, "the running configuration is older");
        succeeded(&mut v, 20.0);
        assert!(!v.last_reload_failed && v.last_error.is_none());
        assert_eq!(
            (v.reloads_total, v.reload_failures_total, v.loaded_at),
            (1, 1, 20.0)
        );
    }
}

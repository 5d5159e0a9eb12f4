//! `/healthz` and `/readyz`: whether the daemon is doing its job, from the snapshot. A
//! liveness probe that always answers 200 can never restart a stuck daemon, so health
//! fails when the tick has stopped, the programs' maps cannot be read, or the choke point
//! cannot journal; readiness waits for the first samples and the first scan.

use super::snapshot::Snapshot;

/// Map reads failing this many ticks in a row mean the programs are gone.
const READ_FAILURES_UNHEALTHY: u32 = 5;

/// Seconds of ticks without one `sched_switch` run counted that mean the program is gone.
const PROGRAM_SILENT_UNHEALTHY: f64 = 5.0;

/// Ok, or why not (one line each).
pub fn health(s: &Snapshot, now_unix: f64) -> Result<(), Vec<String>> {
    let mut why = Vec::new();
    // Several tick periods, and never less than a second (a loaded node may lag a little).
    let stale_after = (s.tick_seconds * 10.0).max(1.0);
    let h = &s.sampler;
    if h.last_tick_unix > 0.0 && now_unix - h.last_tick_unix > stale_after {
        why.push(format!(
            "no tick for {:.1}s (tick {:.0}ms)",
            now_unix - h.last_tick_unix,
            s.tick_seconds * 1000.0
        ));
    }
    if h.last_tick_unix == 0.0 && now_unix - s.started_at > stale_after.max(10.0) {
        why.push(format!(
            "no tick since the start {:.0}s ago",
            now_unix - s.started_at
        ));
    }
    if h.consecutive_read_failures >= READ_FAILURES_UNHEALTHY {
        why.push(format!(
            "{} map reads failed in a row: the eBPF programs are detached or their maps gone",
            h.consecutive_read_failures
        ));
    }
    // A running node switches context many times a second (the sampler itself sleeps
    // between ticks): a count of `sched_switch` runs that stopped while the ticks go on
    // means the program no longer runs although its maps still read. Its raw tracepoint
    // link cannot be detached from outside (`bpftool link detach`: EOPNOTSUPP on 6.18), so
    // the programs otherwise leave only with the daemon's descriptors, i.e. with the daemon.
    if h.program_runs_moved_unix > 0.0
        && h.last_tick_unix - h.program_runs_moved_unix > stale_after.max(PROGRAM_SILENT_UNHEALTHY)
    {
        why.push(format!(
            "the sched_switch program has counted no context switch for {:.0}s: detached? (bpftool link list)",
            h.last_tick_unix - h.program_runs_moved_unix
        ));
    }
    if h.journal_failing {
        why.push(format!(
            "the journal {} cannot be written (full or read-only file system?)",
            s.protection.journal
        ));
    }
    if why.is_empty() { Ok(()) } else { Err(why) }
}

/// Ready once the first samples are in and the cgroup tree has been scanned.
pub fn ready(s: &Snapshot) -> Result<(), String> {
    if s.sampler.ticks_total < 2 {
        return Err(format!(
            "{} ticks so far: no rates yet",
            s.sampler.ticks_total
        ));
    }
    if s.sampler.rescans_total == 0 {
        return Err("the cgroup tree has not been scanned yet".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surfaces::metrics::tests_support::sample;

    /// A 100 ms daemon whose last tick was at 1000 s, nothing failing.
    fn healthy_at_1000() -> Snapshot {
        let mut s = sample();
        s.tick_seconds = 0.1;
        s.sampler.last_tick_unix = 1000.0;
        s.sampler.consecutive_read_failures = 0;
        s.sampler.journal_failing = false;
        s
    }

    #[test]
    fn health_fails_when_the_tick_stops_the_maps_fail_or_the_journal_cannot_be_written() {
        let mut s = healthy_at_1000();
        assert!(health(&s, 1000.5).is_ok());
        let why = health(&s, 1003.0).unwrap_err();
        assert!(why[0].starts_with("no tick for 3.0s"), "{why:?}");
        s.sampler.consecutive_read_failures = 7;
        s.sampler.journal_failing = true;
        assert_eq!(health(&s, 1000.5).unwrap_err().len(), 2);
    }

    #[test]
    fn health_fails_when_the_sched_switch_program_stops_counting_while_ticks_go_on() {
        let mut s = healthy_at_1000();
        // The cgroupfs poller has no program: never moved, never a reason.
        s.sampler.program_runs_moved_unix = 0.0;
        assert!(health(&s, 1000.0).is_ok());
        s.sampler.program_runs_moved_unix = 996.0;
        assert!(health(&s, 1000.0).is_ok());
        s.sampler.program_runs_moved_unix = 994.0;
        let why = health(&s, 1000.0).unwrap_err();
        assert!(
            why[0].starts_with("the sched_switch program has counted no context switch for 6s"),
            "{why:?}"
        );
    }

    #[test]
    fn ready_after_the_first_samples_and_scan() {
        let mut s = sample();
        s.sampler.ticks_total = 1;
        assert!(ready(&s).is_err());
        s.sampler.ticks_total = 5;
        s.sampler.rescans_total = 0;
        assert!(ready(&s).is_err());
        s.sampler.rescans_total = 1;
        assert!(ready(&s).is_ok());
    }
}

//! Driving the choke point as the daemon's ticks do: an effect the kernel completes later
//! (a freeze, a kill whose tasks are still exiting) is followed up with `Actuator::settle`, as each tick does, until its outcome
//! is journaled.

use std::time::{Duration, Instant};

use enforcer::actuators::{Actuator, Request, journal::Outcome};

/// Applies `req` and, when its outcome is still to come, settles every 10 ms (a fast tick)
/// until it is there: the outcome the journal ends up with. Panics 2 s past the kill's own
/// bound (`cgroupfs::KILL_BUDGET`, the longer of the two).
pub fn apply_settled(actuator: &mut Actuator, req: &Request) -> Outcome {
    let outcome = actuator.apply(req).expect("journal");
    if outcome != Outcome::Intent {
        return outcome;
    }
    let target = req.target.trim_start_matches('/');
    let deadline =
        Instant::now() + enforcer::actuators::cgroupfs::KILL_BUDGET + Duration::from_secs(2);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        let settled = actuator.settle(Instant::now()).expect("journal");
        if let Some(s) = settled.into_iter().find(|s| s.target == target) {
            return s.outcome;
        }
    }
    panic!("{} on {target} never settled", req.op.name());
}

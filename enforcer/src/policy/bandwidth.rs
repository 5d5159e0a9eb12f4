//! How much of the link offline traffic may use (SPEC §3: "the offline share follows online
//! usage the way CPU does"), one direction at a time, as a pure controller over injected
//! time:
//!
//! `limit = capacity × watermark − online rate`, clamped to `[floor, ceiling]`.
//!
//! Smoothing is asymmetric on purpose: when online traffic grows, the limit drops at once
//! (online must never wait for offline to back off); when it shrinks, the limit climbs back
//! with a first-order lag of time constant `raise_time`, so a burst that pauses for a moment
//! does not hand the link straight back to offline.

/// Static or dynamic limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitPolicy {
    /// A fixed limit in bytes per second.
    Static(u64),
    /// Follows online use.
    Dynamic,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandwidthRule {
    pub policy: LimitPolicy,
    /// Link capacity, bytes per second.
    pub capacity: u64,
    /// Share of the capacity online and offline may fill together (0 < w <= 1).
    pub watermark: f64,
    /// Bytes per second offline always keeps, and never exceeds.
    pub floor: u64,
    pub ceiling: u64,
    /// Time constant of the climb back, nanoseconds.
    pub raise_time_ns: u64,
}

impl BandwidthRule {
    /// The limit the rule asks for with `online` bytes per second measured, unsmoothed.
    pub fn target(&self, online: f64) -> u64 {
        match self.policy {
            LimitPolicy::Static(limit) => limit,
            LimitPolicy::Dynamic => {
                let room = self.capacity as f64 * self.watermark - online.max(0.0);
                (room.max(0.0) as u64).clamp(self.floor, self.ceiling.max(self.floor))
            }
        }
    }
}

/// The smoothed limit of one direction.
#[derive(Debug, Clone, Default)]
pub struct OfflineLimit {
    current: Option<(u64, f64)>,
}

impl OfflineLimit {
    /// Feeds the online rate measured at `at_ns`; returns the limit in force.
    pub fn update(&mut self, rule: &BandwidthRule, at_ns: u64, online: f64) -> u64 {
        let target = rule.target(online) as f64;
        let next = match self.current {
            None => target,
            Some(_) if matches!(rule.policy, LimitPolicy::Static(_)) => target,
            Some((_, current)) if target <= current => target,
            Some((last_ns, current)) => {
                let dt = at_ns.saturating_sub(last_ns) as f64;
                let tau = rule.raise_time_ns.max(1) as f64;
                current + (target - current) * (1.0 - (-dt / tau).exp())
            }
        };
        self.current = Some((at_ns, next));
        next as u64
    }

    pub fn current(&self) -> Option<u64> {
        self.current.map(|(_, v)| v as u64)
    }
}

/// Whether a limit in force in the kernel (`applied`) should be rewritten to `wanted`: any
/// decrease beyond 1%, an increase only beyond `dead_band` (relative), so that the climb
/// back does not rewrite classes on every tick.
pub fn needs_write(applied: Option<u64>, wanted: u64, dead_band: f64) -> bool {
    match applied {
        None => true,
        Some(a) if wanted < a => (a - wanted) as f64 > a as f64 * 0.01,
        Some(a) => (wanted - a) as f64 > a as f64 * dead_band,
    }
}

/// The alert condition of SPEC §5: offline traffic above its share (with `tolerance`, e.g.
/// 0.1 for 10%).
pub fn over_share(offline_rate: f64, limit: u64, tolerance: f64) -> bool {
    limit > 0 && offline_rate > limit as f64 * (1.0 + tolerance)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MBIT: u64 = 125_000;
    const S: u64 = 1_000_000_000;

    fn rule() -> BandwidthRule {
        BandwidthRule {
            policy: LimitPolicy::Dynamic,
            capacity: 1000 * MBIT,
            watermark: 0.9,
            floor: 50 * MBIT,
            ceiling: 800 * MBIT,
            raise_time_ns: 2 * S,
        }
    }

    #[test]
    fn the_limit_is_what_online_leaves_under_the_watermark() {
        let r = rule();
        assert_eq!(r.target(0.0), 800 * MBIT, "ceiling");
        assert_eq!(r.target((500 * MBIT) as f64), 400 * MBIT);
        assert_eq!(r.target((880 * MBIT) as f64), 50 * MBIT, "floor");
        assert_eq!(r.target(f64::from(u32::MAX) * 10.0), 50 * MBIT);
        let fixed = BandwidthRule {
            policy: LimitPolicy::Static(100 * MBIT),
            ..r
        };
        assert_eq!(fixed.target((900 * MBIT) as f64), 100 * MBIT);
    }

    #[test]
    fn an_online_burst_shrinks_the_limit_at_once() {
        let r = rule();
        let mut l = OfflineLimit::default();
        assert_eq!(l.update(&r, 0, 0.0), 800 * MBIT);
        assert_eq!(l.update(&r, S / 10, (500 * MBIT) as f64), 400 * MBIT);
    }

    #[test]
    fn the_limit_climbs_back_gradually() {
        let r = rule();
        let mut l = OfflineLimit::default();
        l.update(&r, 0, (500 * MBIT) as f64);
        // One time constant later: 63% of the way back from 400 to 800.
        let v = l.update(&r, 2 * S, 0.0);
        assert!((650 * MBIT..=655 * MBIT).contains(&v), "{v}");
        let v = l.update(&r, 20 * S, 0.0);
        assert!(v > 799 * MBIT, "{v}");
    }

    #[test]
    fn writes_are_dead_banded_upwards_only() {
        assert!(needs_write(None, 10, 0.05));
        assert!(needs_write(Some(1000), 980, 0.05), "a 2% drop is written");
        assert!(!needs_write(Some(1000), 995, 0.05));
        assert!(!needs_write(Some(1000), 1040, 0.05), "a 4% rise waits");
        assert!(needs_write(Some(1000), 1060, 0.05));
    }

    #[test]
    fn over_share_has_a_tolerance() {
        assert!(!over_share(105.0, 100, 0.1));
        assert!(over_share(111.0, 100, 0.1));
        assert!(!over_share(0.0, 0, 0.1));
    }
}

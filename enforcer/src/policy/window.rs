//! A sliding window over a monotone cumulative counter.

use std::collections::VecDeque;

/// Remembers `(time, cumulative value)` points for `window_ns` and answers the rate of
/// increase over the window.
#[derive(Debug, Clone)]
pub struct RateWindow {
    window_ns: u64,
    points: VecDeque<(u64, u64)>,
}

impl RateWindow {
    pub fn new(window_ns: u64) -> Self {
        RateWindow {
            window_ns: window_ns.max(1),
            points: VecDeque::new(),
        }
    }

    /// Records the counter's value at `at_ns`. Times must not go backwards; a point older
    /// than the newest is ignored.
    pub fn push(&mut self, at_ns: u64, value: u64) {
        if let Some(&(last, _)) = self.points.back()
            && at_ns <= last
        {
            return;
        }
        self.points.push_back((at_ns, value));
        // Keep one point at or before the window's start so the rate spans a full window.
        while self.points.len() > 2 && self.points[1].0 + self.window_ns <= at_ns {
            self.points.pop_front();
        }
    }

    /// Increase per nanosecond over exactly the last window (or over what has been seen,
    /// if less): for CPU nanoseconds, the number of cores in use. The counter's value at the
    /// window's start is interpolated between the two points around it, so the figure
    /// neither lags nor dilutes by up to a tick.
    pub fn rate(&self) -> f64 {
        let (Some(&(t0, v0)), Some(&(t1, v1))) = (self.points.front(), self.points.back()) else {
            return 0.0;
        };
        if t1 <= t0 {
            return 0.0;
        }
        let start = t1.saturating_sub(self.window_ns);
        if start <= t0 || self.points.len() < 2 {
            return v1.saturating_sub(v0) as f64 / (t1 - t0) as f64;
        }
        // points[0] is at or before `start`, points[1] after it (see `push`).
        let (ta, va) = self.points[0];
        let (tb, vb) = self.points[1];
        let at_start = va as f64
            + (vb.saturating_sub(va)) as f64 * ((start - ta) as f64 / (tb - ta).max(1) as f64);
        ((v1 as f64 - at_start) / self.window_ns as f64).max(0.0)
    }

    /// Increase per second over the last window (bytes per second for a byte counter).
    pub fn per_second(&self) -> f64 {
        self.rate() * 1e9
    }

    /// The span the rate is computed over, in nanoseconds.
    pub fn span_ns(&self) -> u64 {
        match (self.points.front(), self.points.back()) {
            (Some(&(t0, _)), Some(&(t1, _))) => (t1 - t0).min(self.window_ns),
            _ => 0,
        }
    }
}

/// The largest value seen over the last `window_ns`: the points that can still be the
/// peak, in time order and falling in value (each push costs O(1) amortised).
#[derive(Debug, Clone)]
pub struct PeakWindow {
    window_ns: u64,
    points: VecDeque<(u64, f64)>,
}

impl PeakWindow {
    pub fn new(window_ns: u64) -> Self {
        PeakWindow {
            window_ns: window_ns.max(1),
            points: VecDeque::new(),
        }
    }

    /// Records `value` at `at_ns` (times must not go backwards) and returns the peak over
    /// the window ending there.
    pub fn push(&mut self, at_ns: u64, value: f64) -> f64 {
        while self.points.back().is_some_and(|&(_, v)| v <= value) {
            self.points.pop_back();
        }
        self.points.push_back((at_ns, value));
        while self
            .points
            .front()
            .is_some_and(|&(t, _)| t + self.window_ns <= at_ns)
        {
            self.points.pop_front();
        }
        self.points.front().map_or(value, |&(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn rate_spans_the_window() {
        let mut w = RateWindow::new(1000 * MS);
        for i in 0..=20 {
            // One core busy for the first second, two afterwards.
            let t = i * 100 * MS;
            let v = if i <= 10 {
                t
            } else {
                1000 * MS + 2 * (t - 1000 * MS)
            };
            w.push(t, v);
        }
        assert_eq!(w.span_ns(), 1000 * MS);
        assert!((w.rate() - 2.0).abs() < 1e-9, "{}", w.rate());
    }

    #[test]
    fn rate_covers_exactly_the_window_when_points_do_not_line_up() {
        // Idle for a long time, then two cores busy for the last 50 ms, ticks every 100 ms:
        // a window of 100 ms must show one core on average, not be diluted over 200 ms.
        let mut w = RateWindow::new(100 * MS);
        w.push(0, 0);
        w.push(1000 * MS, 0);
        w.push(1100 * MS, 100 * MS);
        assert!((w.rate() - 1.0).abs() < 1e-9, "{}", w.rate());
        // Ticks that straddle the window start: value interpolated at the start.
        let mut w = RateWindow::new(150 * MS);
        w.push(0, 0);
        w.push(100 * MS, 100 * MS); // one core
        w.push(200 * MS, 300 * MS); // two cores
        // Window [50, 200]: 50 ms at one core + 100 ms at two = 250 ms over 150 ms.
        assert!((w.rate() - 250.0 / 150.0).abs() < 1e-9, "{}", w.rate());
    }

    #[test]
    fn empty_and_single_point_rate_is_zero() {
        let mut w = RateWindow::new(MS);
        assert_eq!(w.rate(), 0.0);
        w.push(5, 5);
        assert_eq!(w.rate(), 0.0);
    }

    #[test]
    fn time_going_backwards_is_ignored() {
        let mut w = RateWindow::new(1000 * MS);
        w.push(100 * MS, 0);
        w.push(200 * MS, 100 * MS);
        w.push(150 * MS, 0);
        assert!((w.rate() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn short_history_uses_what_it_has() {
        let mut w = RateWindow::new(1000 * MS);
        w.push(0, 0);
        w.push(300 * MS, 150 * MS);
        assert!((w.rate() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn the_peak_holds_for_the_window_then_falls_to_the_next_largest() {
        const S: u64 = 1_000_000_000;
        let mut w = PeakWindow::new(10 * S);
        assert_eq!(w.push(0, 0.2), 0.2);
        assert_eq!(w.push(S, 0.5), 0.5);
        assert_eq!(w.push(2 * S, 0.3), 0.5);
        assert_eq!(w.push(10 * S, 0.1), 0.5);
        // The 0.5 of t=1 s leaves the window at 11 s; 0.3 of t=2 s is the peak then.
        assert_eq!(w.push(11 * S, 0.1), 0.3);
        assert_eq!(w.push(12 * S, 0.1), 0.1);
        assert_eq!(w.push(12 * S + 1, 0.7), 0.7);
    }
}

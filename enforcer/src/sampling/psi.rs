//! Pressure stall information (`/proc/pressure/{cpu,memory,io}`), where the kernel has it.

use serde::{Deserialize, Serialize};

/// One resource's pressure: share of the last 10 s some (or all) tasks were stalled, and
/// cumulative stall seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    pub some_avg10: f64,
    pub full_avg10: f64,
    pub some_seconds_total: f64,
    pub full_seconds_total: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NodePressure {
    pub available: bool,
    pub cpu: Pressure,
    pub memory: Pressure,
    pub io: Pressure,
}

/// Parses one `/proc/pressure/*` file.
pub fn parse(text: &str) -> Pressure {
    let mut p = Pressure::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let kind = fields.next().unwrap_or("");
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            match (kind, key) {
                ("some", "avg10") => p.some_avg10 = value / 100.0,
                ("full", "avg10") => p.full_avg10 = value / 100.0,
                ("some", "total") => p.some_seconds_total = value / 1e6,
                ("full", "total") => p.full_seconds_total = value / 1e6,
                _ => {}
            }
        }
    }
    p
}

pub fn read() -> NodePressure {
    let file = |name: &str| std::fs::read_to_string(format!("/proc/pressure/{name}")).ok();
    match (file("cpu"), file("memory"), file("io")) {
        (Some(cpu), Some(memory), Some(io)) => NodePressure {
            available: true,
            cpu: parse(&cpu),
            memory: parse(&memory),
            io: parse(&io),
        },
        _ => NodePressure::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_format() {
        let p = parse(
            "some avg10=1.50 avg60=0.80 avg300=0.10 total=2500000\nfull avg10=0.25 avg60=0.00 avg300=0.00 total=1000\n",
        );
        assert_eq!(p.some_avg10, 0.015);
        assert_eq!(p.full_avg10, 0.0025);
        assert_eq!(p.some_seconds_total, 2.5);
        assert_eq!(p.full_seconds_total, 0.001);
    }

    #[test]
    fn reads_this_host() {
        // PSI is on here (see the notes); on a host without it `available` is false.
        assert!(read().available);
    }
}

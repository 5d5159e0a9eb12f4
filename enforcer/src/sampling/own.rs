//! enforcer's own cost, from `/proc/self`: CPU time, resident memory and open file
//! descriptors, for the `process_*` metrics every Prometheus client exports and the
//! dashboard's "own cost" panel (the operators budget the agent per node).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OwnUsage {
    /// User and system CPU time of every thread, in seconds.
    pub cpu_seconds_total: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
    /// File descriptors open.
    pub open_fds: u64,
}

/// The figures of this process now; a file that cannot be read leaves its figure at 0.
pub fn read() -> OwnUsage {
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    OwnUsage {
        cpu_seconds_total: parse_cpu_ticks(&stat).map_or(0.0, |t| t as f64 / ticks.max(1) as f64),
        resident_bytes: parse_resident_pages(&statm).unwrap_or(0) * page.max(1) as u64,
        open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
    }
}

/// utime + stime (fields 14 and 15) of `/proc/<pid>/stat`, in clock ticks. The command
/// name (field 2) may hold spaces and parentheses: fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The resident pages (field 2) of `/proc/<pid>/statm`.
fn parse_resident_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name_whatever_it_holds() {
        let stat = "4242 (tokio ) x (1)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 6 0 123456 123456789 4096 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("4242 (short"), None);
        assert_eq!(
            parse_resident_pages("5000 1234 300 100 0 900 0\n"),
            Some(1234)
        );
        assert_eq!(parse_resident_pages(""), None);
    }

    #[test]
    fn this_process_has_cpu_time_memory_and_descriptors() {
        let mut spin = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(30) {
            spin = spin.wrapping_add(1);
        }
        std::hint::black_box(spin);
        let own = read();
        assert!(own.cpu_seconds_total > 0.0, "{own:?}");
        assert!(own.resident_bytes > 1 << 20, "{own:?}");
        assert!(own.open_fds >= 3, "{own:?}");
    }
}

//! Traffic control state of one interface, as enforcer reads it from the kernel and as the
//! shaping policy wants it. Plain data: the policy diffs two of these, the tc actuator
//! encodes the difference as netlink messages.

use serde::{Deserialize, Serialize};

mod op;
pub mod survey;

pub use op::TcOp;

/// Major number of every qdisc and class enforcer installs (`ef00:`). A distinctive major
/// makes enforcer's objects recognisable in `tc` output and tells them apart from an
/// operator's own `1:` hierarchies.
pub const HANDLE_MAJOR: u16 = 0xef00;
/// Parent of the `ingress` qdisc (`ffff:fff1`).
pub const INGRESS_PARENT: u32 = 0xffff_fff1;
/// Handle of the `ingress` qdisc and parent of its filters (`ffff:`).
pub const INGRESS_HANDLE: u32 = 0xffff_0000;
/// `TC_H_ROOT`.
pub const ROOT_PARENT: u32 = 0xffff_ffff;
/// iproute2's default r2q; quantum is always given explicitly, so it only matters for
/// classes enforcer did not make.
pub const HTB_R2Q: u32 = 10;
/// `ETH_P_ALL`: filters match every protocol.
pub const ETH_P_ALL: u16 = 0x0003;

/// `ef00:minor`.
pub const fn classid(minor: u16) -> u32 {
    ((HANDLE_MAJOR as u32) << 16) | minor as u32
}

/// The handle of enforcer's root qdisc (`ef00:`).
pub const ROOT_HANDLE: u32 = classid(0);

/// `maj:min` as `tc` prints it (hex, minor omitted when zero).
pub fn handle_str(handle: u32) -> String {
    match handle {
        ROOT_PARENT => "root".into(),
        _ if handle & 0xffff == 0 => format!("{:x}:", handle >> 16),
        _ => format!("{:x}:{:x}", handle >> 16, handle & 0xffff),
    }
}

/// The root (egress) qdisc of an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RootQdisc {
    /// What the kernel attaches by itself (handle `0:`: noqueue, pfifo_fast, mq, ...):
    /// enforcer may replace it.
    Default { qdisc: String },
    /// enforcer's HTB (`ef00:`), with the minor of its default class.
    Htb { default_minor: u16 },
    /// Somebody else's qdisc: never touched.
    Foreign { qdisc: String, handle: u32 },
}

/// One HTB class. Rates in bytes per second, buffers in psched ticks (64 ns), as the kernel
/// keeps them, so that a dump compares exactly with what enforcer wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtbClass {
    pub classid: u32,
    pub parent: u32,
    pub rate: u64,
    pub ceil: u64,
    pub buffer: u32,
    pub cbuffer: u32,
    pub quantum: u32,
    pub prio: u32,
}

/// A filter enforcer installs or finds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Filter {
    /// cls_bpf running enforcer's classifier (not direct-action: it returns a classid).
    Classify {
        parent: u32,
        prio: u16,
        handle: u32,
        /// Kernel id of the program the filter runs.
        prog_id: u32,
        name: String,
    },
    /// u32 match-all with a mirred egress redirect: ingress traffic to an IFB.
    Redirect {
        parent: u32,
        prio: u16,
        target_ifindex: u32,
    },
    /// Any other filter (not enforcer's, or not one it knows).
    Other {
        parent: u32,
        prio: u16,
        handle: u32,
        filter: String,
    },
}

impl Filter {
    pub fn parent(&self) -> u32 {
        match self {
            Filter::Classify { parent, .. }
            | Filter::Redirect { parent, .. }
            | Filter::Other { parent, .. } => *parent,
        }
    }

    pub fn prio(&self) -> u16 {
        match self {
            Filter::Classify { prio, .. }
            | Filter::Redirect { prio, .. }
            | Filter::Other { prio, .. } => *prio,
        }
    }
}

/// The tc state of one interface: its root qdisc, whether an `ingress` qdisc is attached,
/// the classes of enforcer's HTB and the filters under enforcer's qdiscs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceTc {
    pub root: RootQdisc,
    pub ingress: bool,
    pub classes: Vec<HtbClass>,
    pub filters: Vec<Filter>,
}

impl Default for InterfaceTc {
    fn default() -> Self {
        InterfaceTc {
            root: RootQdisc::Default {
                qdisc: "noqueue".into(),
            },
            ingress: false,
            classes: Vec::new(),
            filters: Vec::new(),
        }
    }
}

/// psched ticks per microsecond (the kernel's PSCHED_SHIFT is 6: a tick is 64 ns).
const TICKS_PER_USEC: f64 = 1000.0 / 64.0;

/// The time to send `bytes` at `rate` bytes/s, in psched ticks, computed as `tc` does
/// (`tc_calc_xmittime`: whole microseconds, then ticks, both truncated), so that a class
/// enforcer sets reads back exactly like one `tc` set.
pub fn xmit_ticks(rate: u64, bytes: u64) -> u32 {
    if rate == 0 {
        return u32::MAX;
    }
    let usec = (1e6 * bytes as f64 / rate as f64)
        .min(f64::from(u32::MAX))
        .trunc();
    (usec * TICKS_PER_USEC).min(f64::from(u32::MAX)) as u32
}

/// The burst enforcer gives a class at `rate` bytes/s: 5 ms worth, at least 64 KiB (one GSO
/// packet, or a shaped TCP flow stalls on its first super-packet).
pub fn burst_for(rate: u64) -> u64 {
    (rate / 200).max(65_536)
}

/// An HTB class with the buffers and quantum enforcer uses for a rate: bursts of 5 ms at
/// the rate (at least 64 KiB, one GSO packet), quantum rate/10 clamped to 1514..=200000 as
/// the kernel would for r2q 10.
pub fn htb_class(classid: u32, parent: u32, rate: u64, ceil: u64, prio: u32) -> HtbClass {
    let burst = burst_for;
    HtbClass {
        classid,
        parent,
        rate,
        ceil,
        buffer: xmit_ticks(rate, burst(rate)),
        cbuffer: xmit_ticks(ceil, burst(ceil)),
        quantum: (rate / 10).clamp(1514, 200_000) as u32,
        prio,
    }
}

/// Rates as operators write them: `100mbit`, `20gbit`, `1.5gbit`, `500kbit` (bits per
/// second, SI prefixes as `tc` reads them). Returns bytes per second.
pub fn parse_rate(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let bits_scale = match unit.trim() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "tbit" => 1e12,
        _ => return None,
    };
    let bytes = number * bits_scale / 8.0;
    (bytes.is_finite() && bytes >= 1.0).then_some(bytes as u64)
}

/// Bytes per second as `tc` prints rates (`100Mbit`).
pub fn rate_str(bytes_per_second: u64) -> String {
    let bits = bytes_per_second as f64 * 8.0;
    for (scale, unit) in [(1e9, "Gbit"), (1e6, "Mbit"), (1e3, "Kbit")] {
        if bits >= scale {
            let v = bits / scale;
            return if (v - v.round()).abs() < 0.005 {
                format!("{}{unit}", v.round())
            } else {
                format!("{v:.2}{unit}")
            };
        }
    }
    format!("{bits:.0}bit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_like_tc() {
        assert_eq!(parse_rate("100mbit"), Some(12_500_000));
        assert_eq!(parse_rate("20gbit"), Some(2_500_000_000));
        assert_eq!(parse_rate("1.5Gbit"), Some(187_500_000));
        assert_eq!(parse_rate("800kbit"), Some(100_000));
        assert_eq!(
            parse_rate("100mb"),
            None,
            "bytes units are ambiguous: refused"
        );
        assert_eq!(parse_rate("fast"), None);
        assert_eq!(rate_str(12_500_000), "100Mbit");
        assert_eq!(rate_str(2_500_000_000), "20Gbit");
    }

    #[test]
    fn handles_print_like_tc() {
        assert_eq!(handle_str(ROOT_HANDLE), "ef00:");
        assert_eq!(handle_str(classid(0x30)), "ef00:30");
        assert_eq!(handle_str(INGRESS_HANDLE), "ffff:");
        assert_eq!(handle_str(ROOT_PARENT), "root");
    }

    #[test]
    fn buffers_are_the_time_to_send_the_burst() {
        // 64 KiB at 100 Mbit/s is 5242.88 us: tc counts 5242 us = 81906 ticks of 64 ns.
        assert_eq!(xmit_ticks(12_500_000, 65_536), 81_906);
        assert_eq!(xmit_ticks(2_500_000_000, 12_500_000), 78_125);
        let c = htb_class(classid(0x30), classid(1), 12_500_000, 12_500_000, 2);
        assert_eq!((c.buffer, c.cbuffer, c.quantum), (81_906, 81_906, 200_000));
        // Slow classes still get a quantum of one full frame.
        assert_eq!(htb_class(1, 0, 1000, 1000, 0).quantum, 1514);
    }
}

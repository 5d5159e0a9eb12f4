//! Network sight: bytes and packets per cgroup2 cgroup from `cgroup_skb` ingress/egress
//! programs attached at the cgroup2 root, and a `sched_cls` classifier that maps a packet's
//! socket cgroup to an HTB class.
//!
//! The cgroup is the one of the packet's socket (`bpf_skb_cgroup_id`), fixed when the socket
//! was created: the right owner on receive too, where `current` is whoever the softirq
//! interrupted. Loopback traffic is skipped: it never leaves the node, so it is no part of
//! what the node's links carry.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_skb_cgroup_id,
    macros::{cgroup_skb, classifier, map},
    maps::{HashMap, PerCpuHashMap},
    programs::{SkBuffContext, TcContext},
};
use enforcer_common::{NET_DEFAULT_ENTRIES, NetCounters};

#[map]
static NET_BYTES: PerCpuHashMap<u64, NetCounters> =
    PerCpuHashMap::with_max_entries(NET_DEFAULT_ENTRIES, 0);

/// Filled by the daemon: cgroup2 id -> tc classid (`major << 16 | minor`).
#[map]
static NET_CLASS: HashMap<u64, u32> = HashMap::with_max_entries(NET_DEFAULT_ENTRIES, 0);

/// The loopback device is ifindex 1 in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

/// What a `cgroup_skb` program returns to let the packet through: these programs observe,
/// they never drop.
const ALLOW: i32 = 1;

#[cgroup_skb(ingress)]
pub fn net_ingress(ctx: SkBuffContext) -> i32 {
    count(&ctx, false);
    ALLOW
}

#[cgroup_skb(egress)]
pub fn net_egress(ctx: SkBuffContext) -> i32 {
    count(&ctx, true);
    ALLOW
}

/// For a cls_bpf filter in classic mode (not direct-action): the return value is the classid,
/// and 0 means "no match", after which HTB falls back to its default class.
#[classifier]
pub fn net_classify(ctx: TcContext) -> i32 {
    // SAFETY: helper call on the program's own context; 0 when the skb has no full socket.
    let id = unsafe { bpf_skb_cgroup_id(ctx.skb.skb) };
    // SAFETY: the value is copied out at once.
    match unsafe { NET_CLASS.get(id) } {
        Some(classid) => *classid as i32,
        None => 0,
    }
}

#[inline(always)]
fn count(ctx: &SkBuffContext, egress: bool) {
    let skb = ctx.skb.skb;
    // SAFETY: `skb` is the program's context; `ifindex` is a readable __sk_buff field
    // (rewritten by the verifier into skb->dev->ifindex, 0 without a device). On egress the
    // hook runs in ip_finish_output, after skb->dev was set to the outgoing device.
    let ifindex = unsafe { (*skb).ifindex };
    if ifindex == LOOPBACK_IFINDEX {
        return;
    }
    // SAFETY: helper call on the program's own context.
    let id = unsafe { bpf_skb_cgroup_id(skb) };
    let len = ctx.len() as u64;
    if let Some(counters) = NET_BYTES.get_ptr_mut(id) {
        // SAFETY: per-CPU hash value, valid for the program run.
        unsafe { add(counters, len, egress) };
        return;
    }
    let mut fresh = NetCounters::default();
    if egress {
        fresh.tx_bytes = len;
        fresh.tx_packets = 1;
    } else {
        fresh.rx_bytes = len;
        fresh.rx_packets = 1;
    }
    if NET_BYTES.insert(id, fresh, BPF_NOEXIST as u64).is_err() {
        // A nested run on this CPU (a softirq interrupting a sender) inserted it first, or
        // the map is full; in the first case add to what it inserted.
        if let Some(counters) = NET_BYTES.get_ptr_mut(id) {
            // SAFETY: as above.
            unsafe { add(counters, len, egress) };
        }
    }
}

/// Plain adds on this CPU's copy. A softirq nesting on the same CPU (an ACK sent for the
/// same cgroup) within these few instructions could lose one packet's credit; the
/// `bpfel-unknown-none` target offers no atomic read-modify-write on stable `core`
/// (`atomic-cas` is false), and one packet in millions does not move a rate.
///
/// # Safety
///
/// `counters` must point at a live map value.
#[inline(always)]
unsafe fn add(counters: *mut NetCounters, len: u64, egress: bool) {
    // SAFETY: the caller's pointer is valid for the program run.
    let counters = unsafe { &mut *counters };
    if egress {
        counters.tx_bytes += len;
        counters.tx_packets += 1;
    } else {
        counters.rx_bytes += len;
        counters.rx_packets += 1;
    }
}

//! tc over netlink: the messages enforcer sends, and the decoding of the kernel's dumps into
//! [`crate::model::tc`] values.
//!
//! netlink-packet-route has typed options only for `ingress`, u32, mirred and cls_bpf; HTB
//! is encoded here by hand (`tc_htb_glob`, `tc_htb_opt`, the 64-bit rates) exactly as
//! iproute2 lays it out. The unit tests compare every message with the bytes `tc` itself
//! sends for the same command (captured with strace, see `fixtures.rs`).

use netlink_packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    link::LinkMessage,
    tc::{
        TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
        TcActionType, TcAttribute, TcFilterBpfOption, TcFilterU32Option, TcHandle, TcMessage,
        TcMirror, TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
    },
};

use super::htb::{TCA_HTB_CEIL64, TCA_HTB_INIT, TCA_HTB_PARMS, TCA_HTB_RATE64};
pub use crate::model::tc::TcOp;
use crate::model::tc::{
    ETH_P_ALL, HTB_R2Q, HtbClass, INGRESS_HANDLE, INGRESS_PARENT, ROOT_HANDLE, ROOT_PARENT,
};

/// `TC_HTB_PROTOVER`.
const HTB_VERSION: u32 = 3;
/// `TC_LINKLAYER_ETHERNET`: the kernel computes transmit times itself, no rate table.
const LINKLAYER_ETHERNET: u8 = 1;
/// What iproute2 puts in `cell_log` for its default MTU (2047 >> 3 < 256); kept so the
/// encoded struct is byte-for-byte what `tc` sends.
const CELL_LOG: u8 = 3;

fn header(ifindex: u32, parent: u32, handle: u32, info: u32) -> TcMessage {
    let mut m = TcMessage::with_index(ifindex as i32);
    m.header.parent = TcHandle::from(parent);
    m.header.handle = TcHandle::from(handle);
    m.header.info = info;
    m
}

fn kind(name: &str) -> TcAttribute {
    TcAttribute::Kind(name.to_string())
}

/// `struct tc_ratespec` for a rate in bytes per second (clamped to 32 bits; larger rates
/// travel in the 64-bit attributes).
fn ratespec(rate: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0] = CELL_LOG;
    b[1] = LINKLAYER_ETHERNET;
    // overhead (u16) 0, cell_align (i16) -1, mpu (u16) 0.
    b[4..6].copy_from_slice(&(-1i16).to_ne_bytes());
    b[8..12].copy_from_slice(&(rate.min(u64::from(u32::MAX)) as u32).to_ne_bytes());
    b
}

/// `struct tc_htb_opt`.
fn htb_opt(c: &HtbClass) -> Vec<u8> {
    let mut b = Vec::with_capacity(44);
    b.extend_from_slice(&ratespec(c.rate));
    b.extend_from_slice(&ratespec(c.ceil));
    for v in [c.buffer, c.cbuffer, c.quantum, 0, c.prio] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    b
}

fn htb_class_options(c: &HtbClass) -> Vec<TcOption> {
    let mut opts = Vec::new();
    // iproute2 order: the 64-bit rates first, then the parameters.
    if c.rate > u64::from(u32::MAX) {
        opts.push(TcOption::Other(DefaultNla::new(
            TCA_HTB_RATE64,
            c.rate.to_ne_bytes().to_vec(),
        )));
    }
    if c.ceil > u64::from(u32::MAX) {
        opts.push(TcOption::Other(DefaultNla::new(
            TCA_HTB_CEIL64,
            c.ceil.to_ne_bytes().to_vec(),
        )));
    }
    opts.push(TcOption::Other(DefaultNla::new(TCA_HTB_PARMS, htb_opt(c))));
    opts
}

fn class_message(ifindex: u32, c: &HtbClass) -> TcMessage {
    let mut m = header(ifindex, c.parent, c.classid, 0);
    m.attributes.push(kind("htb"));
    m.attributes
        .push(TcAttribute::Options(htb_class_options(c)));
    m
}

fn filter_info(prio: u16) -> u32 {
    (u32::from(prio) << 16) | u32::from(ETH_P_ALL.to_be())
}

fn redirect_options(target_ifindex: u32) -> Vec<TcOption> {
    let mut sel = TcU32Selector::default();
    sel.flags = TcU32SelectorFlags::Terminal;
    sel.nkeys = 1;
    sel.keys = vec![TcU32Key::default()];
    let mut mirror = TcMirror::default();
    mirror.generic = TcActionGeneric::default();
    mirror.generic.action = TcActionType::Stolen;
    mirror.eaction = TcMirrorActionType::EgressRedir;
    mirror.ifindex = target_ifindex;
    let mut action = TcAction::default();
    action.tab = 1;
    action.attributes = vec![
        TcActionAttribute::Kind("mirred".into()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirror,
        ))]),
    ];
    // iproute2 order: the action, then the selector.
    vec![
        TcOption::U32(TcFilterU32Option::Action(vec![action])),
        TcOption::U32(TcFilterU32Option::Selector(sel)),
    ]
}

impl TcOp {
    /// The request, with the flags `tc` uses for the same command (acknowledged, so that
    /// every error comes back).
    pub fn message(&self) -> NetlinkMessage<RouteNetlinkMessage> {
        const ADD: u16 = NLM_F_EXCL | NLM_F_CREATE;
        const REPLACE: u16 = NLM_F_CREATE | NLM_F_REPLACE;
        let (flags, inner) = match self {
            TcOp::ReplaceRoot {
                ifindex,
                default_minor,
            } => {
                let mut m = header(*ifindex, ROOT_PARENT, ROOT_HANDLE, 0);
                m.attributes.push(kind("htb"));
                let mut glob = Vec::with_capacity(20);
                for v in [HTB_VERSION, HTB_R2Q, u32::from(*default_minor), 0, 0] {
                    glob.extend_from_slice(&v.to_ne_bytes());
                }
                m.attributes.push(TcAttribute::Options(vec![TcOption::Other(
                    DefaultNla::new(TCA_HTB_INIT, glob),
                )]));
                (REPLACE, RouteNetlinkMessage::NewQueueDiscipline(m))
            }
            TcOp::DeleteRoot { ifindex } => (
                0,
                RouteNetlinkMessage::DelQueueDiscipline(header(*ifindex, ROOT_PARENT, 0, 0)),
            ),
            TcOp::AddIngress { ifindex } | TcOp::DeleteIngress { ifindex } => {
                let mut m = header(*ifindex, INGRESS_PARENT, INGRESS_HANDLE, 0);
                m.attributes.push(kind("ingress"));
                if matches!(self, TcOp::AddIngress { .. }) {
                    (ADD, RouteNetlinkMessage::NewQueueDiscipline(m))
                } else {
                    (0, RouteNetlinkMessage::DelQueueDiscipline(m))
                }
            }
            TcOp::AddClass { ifindex, class } => (
                ADD,
                RouteNetlinkMessage::NewTrafficClass(class_message(*ifindex, class)),
            ),
            TcOp::ChangeClass { ifindex, class } => (
                0,
                RouteNetlinkMessage::NewTrafficClass(class_message(*ifindex, class)),
            ),
            TcOp::DeleteClass { ifindex, classid } => (
                0,
                RouteNetlinkMessage::DelTrafficClass(header(*ifindex, 0, *classid, 0)),
            ),
            TcOp::SetClassifier {
                ifindex,
                parent,
                prio,
                handle,
                prog_fd,
                name,
                replace,
            } => {
                let mut m = header(*ifindex, *parent, *handle, filter_info(*prio));
                m.attributes.push(kind("bpf"));
                m.attributes.push(TcAttribute::Options(vec![
                    TcOption::Bpf(TcFilterBpfOption::ProgFd(*prog_fd)),
                    TcOption::Bpf(TcFilterBpfOption::ProgName(name.clone())),
                ]));
                // `tc filter replace` sends NLM_F_CREATE alone: without NLM_F_EXCL an
                // existing filter with this handle is changed in place.
                let flags = if *replace { NLM_F_CREATE } else { ADD };
                (flags, RouteNetlinkMessage::NewTrafficFilter(m))
            }
            TcOp::AddRedirect {
                ifindex,
                prio,
                target_ifindex,
            } => {
                let mut m = header(*ifindex, INGRESS_HANDLE, 0, filter_info(*prio));
                m.attributes.push(kind("u32"));
                m.attributes
                    .push(TcAttribute::Options(redirect_options(*target_ifindex)));
                (ADD, RouteNetlinkMessage::NewTrafficFilter(m))
            }
            TcOp::DeleteFilter {
                ifindex,
                parent,
                prio,
            } => (
                0,
                RouteNetlinkMessage::DelTrafficFilter(header(
                    *ifindex,
                    *parent,
                    0,
                    filter_info(*prio),
                )),
            ),
        };
        request(inner, flags | NLM_F_ACK)
    }
}

/// `ip link add name NAME up type ifb`.
pub fn ifb_add(name: &str) -> NetlinkMessage<RouteNetlinkMessage> {
    let link = rtnetlink::LinkIfb::new(name).up().build();
    request(
        RouteNetlinkMessage::NewLink(link),
        NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE,
    )
}

/// `ip link del IFINDEX`.
pub fn link_del(ifindex: u32) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut link = LinkMessage::default();
    link.header.index = ifindex;
    request(RouteNetlinkMessage::DelLink(link), NLM_F_ACK)
}

/// Every link of the namespace, as `ip link show` asks (AF_PACKET) but without VF details
/// (IFLA_EXT_MASK): enforcer has no use for them and they are large on SR-IOV NICs.
pub fn link_dump() -> NetlinkMessage<RouteNetlinkMessage> {
    let mut link = LinkMessage::default();
    link.header.interface_family = AddressFamily::Packet;
    request(RouteNetlinkMessage::GetLink(link), NLM_F_DUMP)
}

/// One link by name, as `ip link show dev NAME` asks (without VF details).
pub fn link_get(name: &str) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut link = LinkMessage::default();
    link.header.interface_family = AddressFamily::Packet;
    link.attributes
        .push(netlink_packet_route::link::LinkAttribute::IfName(
            name.into(),
        ));
    request(RouteNetlinkMessage::GetLink(link), 0)
}

/// Every qdisc of the namespace (`tc qdisc show`).
pub fn qdisc_dump() -> NetlinkMessage<RouteNetlinkMessage> {
    request(
        RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
        NLM_F_DUMP,
    )
}

/// The classes of one interface (`tc class show dev X`).
pub fn class_dump(ifindex: u32) -> NetlinkMessage<RouteNetlinkMessage> {
    request(
        RouteNetlinkMessage::GetTrafficClass(TcMessage::with_index(ifindex as i32)),
        NLM_F_DUMP,
    )
}

/// The filters under one qdisc (`tc filter show dev X parent P`).
pub fn filter_dump(ifindex: u32, parent: u32) -> NetlinkMessage<RouteNetlinkMessage> {
    request(
        RouteNetlinkMessage::GetTrafficFilter(header(ifindex, parent, 0, 0)),
        NLM_F_DUMP,
    )
}

/// Wraps a message in a netlink request header with `flags` (NLM_F_REQUEST added).
pub fn request(inner: RouteNetlinkMessage, flags: u16) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
    message.finalize();
    message
}

/// The bytes of a message as they go on the socket.
pub fn to_bytes(message: &NetlinkMessage<RouteNetlinkMessage>) -> Vec<u8> {
    let mut buf = vec![0u8; message.buffer_len()];
    message.serialize(&mut buf);
    buf
}

/// Walks netlink attributes (for the tests' comparisons with `tc`'s own messages).
#[cfg(test)]
pub(super) fn attributes(bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
    netlink_packet_core::NlasIterator::new(bytes)
        .flatten()
        .map(|n: netlink_packet_core::NlaBuffer<&[u8]>| (n.kind(), n.value().to_vec()))
        .collect()
}

#[cfg(test)]
#[path = "fixtures.rs"]
mod tests;

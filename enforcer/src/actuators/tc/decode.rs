//! Decoding the kernel's link, qdisc, class and filter dumps into [`crate::model::tc`] values.
//!
//! HTB's options are opaque to netlink-packet-route (it keeps them as one attribute): the
//! nested `TCA_HTB_*` attributes are walked here.
//!
//! Every byte here comes from the kernel, of a namespace that a pod may own: decoding is
//! total (a field that is missing or short makes the object unknown, never a panic), and
//! [`decode_dump`] is the path raw bytes take, for the fuzzer as for the client.

use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload, Nla, NlasIterator};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    tc::{
        TcAction, TcActionAttribute, TcActionMirrorOption, TcActionOption, TcAttribute,
        TcFilterBpfOption, TcFilterU32Option, TcMessage, TcMirrorActionType, TcOption,
    },
};

use super::htb::{TCA_HTB_CEIL64, TCA_HTB_INIT, TCA_HTB_PARMS, TCA_HTB_RATE64};
use crate::model::tc::{Filter, HtbClass, ROOT_PARENT};

/// A qdisc as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QdiscInfo {
    pub ifindex: u32,
    pub parent: u32,
    pub handle: u32,
    pub kind: String,
    /// HTB only: the minor of its default class.
    pub htb_default: Option<u16>,
}

/// A link as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// `macvlan`, `ifb`, `veth`, `bond`, ... (`None`: a physical device).
    pub kind: Option<String>,
    /// IFLA_LINK: the lower device's ifindex (a macvlan's parent).
    pub parent: Option<u32>,
    /// IFLA_LINK_NETNSID: set when the lower device lives in another namespace.
    pub parent_netnsid: Option<i32>,
    pub mac: Vec<u8>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub up: bool,
}

fn link_of(m: &LinkMessage) -> Link {
    let mut link = Link {
        ifindex: m.header.index,
        name: String::new(),
        kind: None,
        parent: None,
        parent_netnsid: None,
        mac: Vec::new(),
        rx_bytes: 0,
        tx_bytes: 0,
        up: m.header.flags.contains(LinkFlags::Up),
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Link(p) => link.parent = Some(*p),
            LinkAttribute::LinkNetNsId(id) => link.parent_netnsid = Some(*id),
            LinkAttribute::Address(mac) => link.mac = mac.clone(),
            LinkAttribute::Stats64(s) => {
                link.rx_bytes = s.rx_bytes;
                link.tx_bytes = s.tx_bytes;
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(match k {
                            InfoKind::MacVlan => "macvlan".into(),
                            InfoKind::Ifb => "ifb".into(),
                            other => other.to_string(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// One object of a link, qdisc, class or filter dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dumped {
    Link(Link),
    Qdisc(QdiscInfo),
    Class(HtbClass),
    Filter(Filter),
}

/// One answer of a dump, decoded by its message type; `None` for what enforcer does not
/// model (another message type, a class of another qdisc, a classifier head).
pub(super) fn decode_message(m: &RouteNetlinkMessage) -> Option<Dumped> {
    match m {
        RouteNetlinkMessage::NewLink(l) => Some(Dumped::Link(link_of(l))),
        RouteNetlinkMessage::NewQueueDiscipline(t) => Some(Dumped::Qdisc(decode_qdisc(t))),
        RouteNetlinkMessage::NewTrafficClass(t) => decode_class(t).map(Dumped::Class),
        RouteNetlinkMessage::NewTrafficFilter(t) => decode_filter(t).map(Dumped::Filter),
        _ => None,
    }
}

/// The entry the kernel's bytes take: one buffer of netlink messages as a dump's datagrams
/// bring them, split and deserialised as the client's connection does (netlink-proto's
/// codec: a buffer that is not netlink ends the read, a message that does not deserialise
/// is skipped), each decoded by [`decode_message`].
pub fn decode_dump(bytes: &[u8]) -> Vec<Dumped> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Ok(buffer) = NetlinkBuffer::new_checked(rest) else {
            break;
        };
        let (message, after) = rest.split_at(buffer.length() as usize);
        rest = after;
        if let Ok(NetlinkMessage {
            payload: NetlinkPayload::InnerMessage(m),
            ..
        }) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(message)
        {
            out.extend(decode_message(&m));
        }
    }
    out
}

fn kind_of(m: &TcMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            TcAttribute::Kind(k) => Some(k.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The nested attributes inside TCA_OPTIONS of a kind netlink-packet-route does not know
/// (it keeps them as one opaque attribute).
fn opaque_options(m: &TcMessage) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    for a in &m.attributes {
        let TcAttribute::Options(opts) = a else {
            continue;
        };
        for o in opts {
            let TcOption::Other(nla) = o else { continue };
            let mut value = vec![0u8; nla.value_len()];
            nla.emit_value(&mut value);
            for inner in NlasIterator::new(&value[..]).flatten() {
                out.push((inner.kind(), inner.value().to_vec()));
            }
        }
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_of(b: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(..8)?.try_into().ok()?))
}

pub fn decode_qdisc(m: &TcMessage) -> QdiscInfo {
    let kind = kind_of(m);
    let htb_default = (kind == "htb")
        .then(|| {
            opaque_options(m)
                .iter()
                .find(|(k, _)| *k == TCA_HTB_INIT)
                .and_then(|(_, v)| u32_at(v, 8))
                .map(|d| d as u16)
        })
        .flatten();
    QdiscInfo {
        ifindex: m.header.index as u32,
        parent: m.header.parent.into(),
        handle: m.header.handle.into(),
        kind,
        htb_default,
    }
}

/// An HTB class from a class dump (`None` for classes of other qdiscs).
pub fn decode_class(m: &TcMessage) -> Option<HtbClass> {
    if kind_of(m) != "htb" {
        return None;
    }
    let opts = opaque_options(m);
    let parms = &opts.iter().find(|(k, _)| *k == TCA_HTB_PARMS)?.1;
    let rate64 = opts
        .iter()
        .find(|(k, _)| *k == TCA_HTB_RATE64)
        .and_then(|(_, v)| u64_of(v));
    let ceil64 = opts
        .iter()
        .find(|(k, _)| *k == TCA_HTB_CEIL64)
        .and_then(|(_, v)| u64_of(v));
    let classid: u32 = m.header.handle.into();
    let parent: u32 = m.header.parent.into();
    Some(HtbClass {
        classid,
        // A top-level class is dumped with parent `root`; it was created under its qdisc.
        parent: if parent == ROOT_PARENT {
            classid & 0xffff_0000
        } else {
            parent
        },
        rate: rate64.unwrap_or(u64::from(u32_at(parms, 8)?)),
        ceil: ceil64.unwrap_or(u64::from(u32_at(parms, 20)?)),
        buffer: u32_at(parms, 24)?,
        cbuffer: u32_at(parms, 28)?,
        quantum: u32_at(parms, 32)?,
        prio: u32_at(parms, 40)?,
    })
}

/// A filter from a filter dump. Classifier heads and u32 hash-table nodes (no selector) are
/// skipped.
pub fn decode_filter(m: &TcMessage) -> Option<Filter> {
    let parent: u32 = m.header.parent.into();
    let handle: u32 = m.header.handle.into();
    let prio = (m.header.info >> 16) as u16;
    let kind = kind_of(m);
    let options: Vec<&TcOption> = m
        .attributes
        .iter()
        .filter_map(|a| match a {
            TcAttribute::Options(o) => Some(o.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    // A dump lists each priority's classifier head (no handle, no options) before its
    // filters: not a filter.
    if options.is_empty() {
        return None;
    }
    match kind.as_str() {
        "bpf" => {
            let mut prog_id = 0;
            let mut name = String::new();
            for o in &options {
                match o {
                    TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => prog_id = *id,
                    TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => name = n.clone(),
                    _ => {}
                }
            }
            Some(Filter::Classify {
                parent,
                prio,
                handle,
                prog_id,
                name,
            })
        }
        "u32" => {
            if !options
                .iter()
                .any(|o| matches!(o, TcOption::U32(TcFilterU32Option::Selector(_))))
            {
                return None;
            }
            let target = options.iter().find_map(|o| match o {
                TcOption::U32(TcFilterU32Option::Action(actions)) => {
                    actions.iter().find_map(mirred_redirect_target)
                }
                _ => None,
            });
            Some(match target {
                Some(target_ifindex) => Filter::Redirect {
                    parent,
                    prio,
                    target_ifindex,
                },
                None => Filter::Other {
                    parent,
                    prio,
                    handle,
                    filter: kind,
                },
            })
        }
        _ => Some(Filter::Other {
            parent,
            prio,
            handle,
            filter: kind,
        }),
    }
}

fn mirred_redirect_target(action: &TcAction) -> Option<u32> {
    action.attributes.iter().find_map(|a| match a {
        TcActionAttribute::Options(opts) => opts.iter().find_map(|o| match o {
            TcActionOption::Mirror(TcActionMirrorOption::Parms(p))
                if p.eaction == TcMirrorActionType::EgressRedir =>
            {
                Some(p.ifindex)
            }
            _ => None,
        }),
        _ => None,
    })
}

//! One rtnetlink connection inside one network namespace: link, qdisc, class and filter
//! dumps, tc operations, IFB devices.
//!
//! A netlink socket belongs to the namespace its creating thread was in, for its whole life:
//! [`NsConn::open`] enters the namespace with `setns` on the calling thread, creates the
//! socket, and returns the thread to its own namespace before anything else runs. Sockets
//! are not kept between passes: an open socket pins its namespace, which would keep a
//! deleted pod's interfaces alive.

use std::{fs::File, io, path::Path};

use futures_util::{StreamExt, future::join_all};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use nix::sched::{CloneFlags, setns};
use rtnetlink::Handle;
use thiserror::Error;

pub use super::decode::Link;
use super::{
    codec::{TcOp, class_dump, filter_dump, ifb_add, link_del, link_dump, link_get, qdisc_dump},
    decode::{Dumped, QdiscInfo, decode_message},
};
use crate::model::tc::{Filter, HtbClass};

#[derive(Debug, Error)]
pub enum TcError {
    #[error("network namespace {path}: {source}")]
    Namespace { path: String, source: io::Error },
    #[error("netlink: {0}")]
    Netlink(io::Error),
    #[error("{what}: {source}")]
    Op { what: String, source: io::Error },
}

impl TcError {
    /// The errno behind the error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            TcError::Namespace { source, .. }
            | TcError::Netlink(source)
            | TcError::Op { source, .. } => source.raw_os_error(),
        }
    }
}

/// A connection inside one namespace. Must be opened and used within a tokio runtime.
pub struct NsConn {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NsConn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends one request and collects its answers; an error answer becomes the errno.
async fn exchange(
    mut handle: Handle,
    message: NetlinkMessage<RouteNetlinkMessage>,
) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut answers = handle
        .request(message)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut out = Vec::new();
    while let Some(m) = answers.next().await {
        match m.payload {
            NetlinkPayload::InnerMessage(inner) => out.push(inner),
            NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
            _ => {}
        }
    }
    Ok(out)
}

/// The objects of one dump, decoded as [`super::decode_dump`] decodes raw bytes.
fn dumped(answers: &[RouteNetlinkMessage]) -> impl Iterator<Item = Dumped> + '_ {
    answers.iter().filter_map(decode_message)
}

impl NsConn {
    /// Opens a connection inside the namespace at `ns` (`/proc/PID/ns/net`,
    /// `/run/netns/NAME`, ...). The calling thread is back in its own namespace on return.
    pub fn open(ns: &Path) -> Result<NsConn, TcError> {
        let ns_err = |source| TcError::Namespace {
            path: ns.display().to_string(),
            source,
        };
        let own = File::open("/proc/thread-self/ns/net").map_err(ns_err)?;
        let target = File::open(ns).map_err(ns_err)?;
        setns(&target, CloneFlags::CLONE_NEWNET).map_err(|e| ns_err(e.into()))?;
        let created = rtnetlink::new_connection();
        // Back to where this thread was; if that fails every later socket would be created
        // in the wrong namespace, so there is no sane way to go on.
        setns(&own, CloneFlags::CLONE_NEWNET)
            .expect("returning to the daemon's own network namespace");
        let (connection, handle, _) = created.map_err(TcError::Netlink)?;
        Ok(NsConn {
            handle,
            task: tokio::spawn(connection),
        })
    }

    pub async fn links(&self) -> Result<Vec<Link>, TcError> {
        let answers = exchange(self.handle.clone(), link_dump())
            .await
            .map_err(TcError::Netlink)?;
        Ok(dumped(&answers)
            .filter_map(|d| match d {
                Dumped::Link(l) => Some(l),
                _ => None,
            })
            .collect())
    }

    /// Every qdisc of the namespace.
    pub async fn qdiscs(&self) -> Result<Vec<QdiscInfo>, TcError> {
        let answers = exchange(self.handle.clone(), qdisc_dump())
            .await
            .map_err(TcError::Netlink)?;
        Ok(dumped(&answers)
            .filter_map(|d| match d {
                Dumped::Qdisc(q) => Some(q),
                _ => None,
            })
            .collect())
    }

    /// The HTB classes of each interface, all dumps in flight together.
    pub async fn classes(&self, ifindexes: &[u32]) -> Result<Vec<Vec<HtbClass>>, TcError> {
        let dumps = ifindexes
            .iter()
            .map(|&i| exchange(self.handle.clone(), class_dump(i)));
        join_all(dumps)
            .await
            .into_iter()
            .map(|r| {
                r.map(|a| {
                    dumped(&a)
                        .filter_map(|d| match d {
                            Dumped::Class(c) => Some(c),
                            _ => None,
                        })
                        .collect()
                })
                .map_err(TcError::Netlink)
            })
            .collect()
    }

    /// The filters under `(ifindex, parent qdisc)` for each pair, all dumps in flight
    /// together.
    pub async fn filters(&self, slots: &[(u32, u32)]) -> Result<Vec<Vec<Filter>>, TcError> {
        let dumps = slots
            .iter()
            .map(|&(ifindex, parent)| exchange(self.handle.clone(), filter_dump(ifindex, parent)));
        join_all(dumps)
            .await
            .into_iter()
            .map(|r| {
                r.map(|a| {
                    dumped(&a)
                        .filter_map(|d| match d {
                            Dumped::Filter(f) => Some(f),
                            _ => None,
                        })
                        .collect()
                })
                .map_err(TcError::Netlink)
            })
            .collect()
    }

    pub async fn apply(&self, op: &TcOp) -> Result<(), TcError> {
        exchange(self.handle.clone(), op.message())
            .await
            .map(drop)
            .map_err(|source| TcError::Op {
                what: format!("{op:?}"),
                source,
            })
    }

    /// Creates an IFB device named `name`, up. Returns its ifindex.
    pub async fn add_ifb(&self, name: &str) -> Result<u32, TcError> {
        exchange(self.handle.clone(), ifb_add(name))
            .await
            .map_err(|source| TcError::Op {
                what: format!("creating IFB {name}"),
                source,
            })?;
        // The new link alone, by name: listing every link after each creation would make
        // creating N IFBs quadratic.
        let answers = exchange(self.handle.clone(), link_get(name))
            .await
            .map_err(|source| TcError::Op {
                what: format!("reading back IFB {name}"),
                source,
            })?;
        answers
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })
            .ok_or_else(|| TcError::Op {
                what: format!("creating IFB {name}"),
                source: io::Error::other("created but not listed"),
            })
    }

    pub async fn delete_link(&self, ifindex: u32) -> Result<(), TcError> {
        exchange(self.handle.clone(), link_del(ifindex))
            .await
            .map(drop)
            .map_err(|source| TcError::Op {
                what: format!("deleting link {ifindex}"),
                source,
            })
    }
}

//! The cgroup events of the kernel programs (`tp_btf/cgroup_{mkdir,rmdir,rename}`): what
//! was created, removed or renamed, in which hierarchy, read from a ring buffer that a
//! thread can sleep on.

use std::time::Duration;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use enforcer_common::{
    CGROUP_EVENT_PATH_LEN, CgroupChangeKind, CgroupEvent, MAP_CGROUP_EVENTS, MAP_CGROUP_EVENTS_LOST,
};

use super::error::SamplerError;

/// One event, in user space terms. Paths are relative to the hierarchy's root, "" being
/// the root, as the index keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupChange {
    Created {
        hierarchy: u32,
        id: u64,
        path: String,
    },
    Removed {
        hierarchy: u32,
        id: u64,
    },
    /// The cgroup `id` is now at `path`; its descendants moved with it.
    Renamed {
        hierarchy: u32,
        id: u64,
        path: String,
    },
    /// An event whose path was cut or unreadable, or of a kind this daemon does not know:
    /// only a walk of the hierarchy can say what changed.
    Unreadable {
        hierarchy: u32,
    },
}

impl CgroupChange {
    pub fn hierarchy(&self) -> u32 {
        match self {
            CgroupChange::Created { hierarchy, .. }
            | CgroupChange::Removed { hierarchy, .. }
            | CgroupChange::Renamed { hierarchy, .. }
            | CgroupChange::Unreadable { hierarchy } => *hierarchy,
        }
    }

    /// Decodes one ring buffer record (bytes from the kernel: any length, any content).
    pub fn decode(record: &[u8]) -> Option<CgroupChange> {
        if record.len() < size_of::<CgroupEvent>() {
            return None;
        }
        // SAFETY: the record is at least as long as the event, which is plain old data of
        // integers and bytes; read_unaligned copes with any alignment.
        let event: CgroupEvent =
            unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<CgroupEvent>()) };
        let hierarchy = event.hierarchy;
        let end = event
            .path
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(CGROUP_EVENT_PATH_LEN);
        let path = std::str::from_utf8(&event.path[..end]).ok();
        let path = match path {
            Some(p) if event.truncated == 0 && p.starts_with('/') => {
                p.trim_start_matches('/').trim_end_matches('/').to_string()
            }
            _ => {
                // Removal needs no path; the others do.
                return Some(if event.kind == CgroupChangeKind::Rmdir as u32 {
                    CgroupChange::Removed {
                        hierarchy,
                        id: event.id,
                    }
                } else {
                    CgroupChange::Unreadable { hierarchy }
                });
            }
        };
        let id = event.id;
        Some(match event.kind {
            k if k == CgroupChangeKind::Mkdir as u32 => CgroupChange::Created {
                hierarchy,
                id,
                path,
            },
            k if k == CgroupChangeKind::Rmdir as u32 => CgroupChange::Removed { hierarchy, id },
            k if k == CgroupChangeKind::Rename as u32 => CgroupChange::Renamed {
                hierarchy,
                id,
                path,
            },
            _ => CgroupChange::Unreadable { hierarchy },
        })
    }
}

pub struct CgroupEvents {
    ring: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    lost_seen: u64,
}

impl CgroupEvents {
    pub(super) fn from_maps(
        ring: aya::maps::Map,
        lost: aya::maps::Map,
    ) -> Result<Self, SamplerError> {
        Ok(CgroupEvents {
            ring: RingBuf::try_from(ring).map_err(|e| read_error(MAP_CGROUP_EVENTS, e))?,
            lost: PerCpuArray::try_from(lost).map_err(|e| read_error(MAP_CGROUP_EVENTS_LOST, e))?,
            lost_seen: 0,
        })
    }

    /// Sleeps until the kernel has events or `timeout` passes; true when there are events.
    pub fn wait(&self, timeout: Duration) -> bool {
        super::ring::wait_readable(&self.ring, timeout)
    }

    /// Every event the kernel has queued, oldest first (records that do not decode are
    /// left out and counted in the second figure).
    pub fn drain(&mut self, out: &mut Vec<CgroupChange>) -> usize {
        let mut bad = 0;
        while let Some(record) = self.ring.next() {
            match CgroupChange::decode(&record) {
                Some(change) => out.push(change),
                None => bad += 1,
            }
        }
        bad
    }

    /// Events the kernel dropped (ring buffer full) since the last call.
    pub fn lost(&mut self) -> Result<u64, SamplerError> {
        let values = self
            .lost
            .get(&0, 0)
            .map_err(|e| read_error(MAP_CGROUP_EVENTS_LOST, e))?;
        let total: u64 = values.iter().sum();
        let new = total.saturating_sub(self.lost_seen);
        self.lost_seen = total;
        Ok(new)
    }
}

fn read_error(map: &'static str, e: impl std::fmt::Display) -> SamplerError {
    SamplerError::Read {
        map,
        source: std::io::Error::other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u32, hierarchy: u32, id: u64, path: &[u8], truncated: u32) -> Vec<u8> {
        let mut event = CgroupEvent {
            kind,
            hierarchy,
            id,
            at_ns: 1,
            truncated,
            _pad: 0,
            path: [0; CGROUP_EVENT_PATH_LEN],
        };
        event.path[..path.len()].copy_from_slice(path);
        // SAFETY: plain old data viewed as bytes.
        unsafe {
            std::slice::from_raw_parts(
                (&event as *const CgroupEvent).cast::<u8>(),
                size_of::<CgroupEvent>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn decodes_the_three_kinds_relative_to_the_root() {
        assert_eq!(
            CgroupChange::decode(&record(1, 4, 77, b"/kubepods/besteffort/podx", 0)),
            Some(CgroupChange::Created {
                hierarchy: 4,
                id: 77,
                path: "kubepods/besteffort/podx".into()
            })
        );
        assert_eq!(
            CgroupChange::decode(&record(2, 0, 9, b"/a", 0)),
            Some(CgroupChange::Removed {
                hierarchy: 0,
                id: 9
            })
        );
        assert_eq!(
            CgroupChange::decode(&record(3, 1, 5, b"/b/c", 0)),
            Some(CgroupChange::Renamed {
                hierarchy: 1,
                id: 5,
                path: "b/c".into()
            })
        );
    }

    #[test]
    fn a_cut_or_strange_path_asks_for_a_walk_but_a_removal_needs_none() {
        assert_eq!(
            CgroupChange::decode(&record(1, 2, 7, b"/long", 1)),
            Some(CgroupChange::Unreadable { hierarchy: 2 })
        );
        assert_eq!(
            CgroupChange::decode(&record(1, 2, 7, b"relative", 0)),
            Some(CgroupChange::Unreadable { hierarchy: 2 })
        );
        assert_eq!(
            CgroupChange::decode(&record(1, 2, 7, &[b'/', 0xff, 0xfe], 0)),
            Some(CgroupChange::Unreadable { hierarchy: 2 })
        );
        assert_eq!(
            CgroupChange::decode(&record(2, 2, 7, b"", 1)),
            Some(CgroupChange::Removed {
                hierarchy: 2,
                id: 7
            })
        );
        assert_eq!(
            CgroupChange::decode(&record(9, 2, 7, b"/x", 0)),
            Some(CgroupChange::Unreadable { hierarchy: 2 })
        );
        assert_eq!(CgroupChange::decode(&[0u8; 16]), None);
    }
}

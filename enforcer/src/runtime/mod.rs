//! The node's container runtime over CRI: which pods and containers run here, with the
//! labels and annotations kubelet copied onto them, and each sandbox's network namespace.
//! One list is three local RPCs (sandboxes, containers, and the verbose status of sandboxes
//! not seen before); it never talks to the API server.

mod cri;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::Duration,
};

use k8s_cri::v1 as api;

pub use self::cri::CriClient;
use crate::model::{
    netns::netns_of,
    pod::{ContainerMeta, Pod},
};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container runtime client: {0}")]
    Setup(String),
    #[error("CRI {call}: {message} ({code})")]
    Rpc {
        call: &'static str,
        code: String,
        message: String,
    },
    #[error("{}: the runtime's socket is gone", .0.display())]
    Gone(PathBuf),
    #[error("CRI {call}: no answer within {after:?}")]
    Timeout { call: &'static str, after: Duration },
}

/// Lists pods from one runtime socket.
pub struct PodSource {
    socket: PathBuf,
    client: CriClient,
    /// Each sandbox's network namespace, read once (`None`: the node's or unknown).
    netns: HashMap<String, Option<u64>>,
    /// RPCs made by the last list.
    pub last_rpcs: u32,
}

impl PodSource {
    pub fn new(socket: &Path, timeout: Duration) -> Result<PodSource, RuntimeError> {
        Ok(PodSource {
            socket: socket.to_path_buf(),
            client: CriClient::new(socket, timeout)?,
            netns: HashMap::new(),
            last_rpcs: 0,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn version(&self) -> Result<String, RuntimeError> {
        self.client.version()
    }

    /// Every pod sandbox with its containers.
    pub fn list(&mut self) -> Result<Vec<Pod>, RuntimeError> {
        let sandboxes = self.client.pod_sandboxes()?;
        let containers = self.client.containers()?;
        self.last_rpcs = 2;
        let mut by_sandbox: HashMap<String, Vec<ContainerMeta>> = HashMap::new();
        for c in containers {
            let name = c.metadata.map(|m| m.name).unwrap_or_default();
            by_sandbox
                .entry(c.pod_sandbox_id)
                .or_default()
                .push(ContainerMeta {
                    id: c.id,
                    name,
                    running: c.state == api::ContainerState::ContainerRunning as i32,
                });
        }
        self.netns
            .retain(|id, _| sandboxes.iter().any(|s| &s.id == id));
        let mut pods = Vec::with_capacity(sandboxes.len());
        for s in sandboxes {
            let Some(meta) = s.metadata else { continue };
            let ready = s.state == api::PodSandboxState::SandboxReady as i32;
            let netns = match self.netns.get(&s.id) {
                Some(&known) => known,
                None if ready => {
                    self.last_rpcs += 1;
                    let known = match self.client.sandbox_pid(&s.id) {
                        Ok((Some(pid), true)) => netns_of(Path::new("/proc"), pid),
                        Ok(_) => None,
                        Err(e) => {
                            tracing::debug!("sandbox {}: {e}", s.id);
                            None
                        }
                    };
                    self.netns.insert(s.id.clone(), known);
                    known
                }
                None => None,
            };
            let mut containers = by_sandbox.remove(&s.id).unwrap_or_default();
            containers.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
            pods.push(Pod {
                uid: meta.uid,
                namespace: meta.namespace,
                name: meta.name,
                sandbox_id: s.id,
                ready,
                labels: sorted(s.labels),
                annotations: sorted(s.annotations),
                containers,
                netns,
                created_at: s.created_at,
            });
        }
        // A pod re-created with the same uid (a new sandbox attempt) keeps one entry: the
        // ready one, else the newest.
        pods.sort_by(|a, b| {
            a.uid
                .cmp(&b.uid)
                .then(b.ready.cmp(&a.ready))
                .then(b.created_at.cmp(&a.created_at))
        });
        pods.dedup_by(|later, first| later.uid == first.uid);
        Ok(pods)
    }
}

fn sorted(m: HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

//! Pods as the node's container runtime knows them (CRI pod sandboxes and their
//! containers), and where a pod is in the cgroup tree: kubelet names a pod's cgroup after its
//! uid under either cgroup driver, so a cgroup path says which pod (and which container) it
//! is, and the pod table says what the pod is.

use std::{collections::BTreeMap, collections::HashMap, sync::Arc};

use serde::{Deserialize, Serialize};

/// A pod's Kubernetes QoS class, which kubelet encodes in the pod's cgroup parent
/// (`kubepods/besteffort/`, `kubepods/burstable/`, or directly under `kubepods/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "guaranteed",
            Qos::Burstable => "burstable",
            Qos::BestEffort => "besteffort",
        }
    }

    pub fn parse(s: &str) -> Option<Qos> {
        match s.to_ascii_lowercase().as_str() {
            "guaranteed" => Some(Qos::Guaranteed),
            "burstable" => Some(Qos::Burstable),
            "besteffort" => Some(Qos::BestEffort),
            _ => None,
        }
    }
}

impl std::fmt::Display for Qos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One container of a pod, as the runtime lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMeta {
    pub id: String,
    pub name: String,
    pub running: bool,
}

/// One pod sandbox, as the runtime lists it (kubelet copies the pod's labels and annotations
/// onto it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub sandbox_id: String,
    pub ready: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub containers: Vec<ContainerMeta>,
    /// The sandbox's network namespace (inode of `/proc/PID/ns/net`), when known.
    pub netns: Option<u64>,
    /// Nanoseconds since the epoch, from the runtime.
    pub created_at: i64,
}

impl Pod {
    /// `namespace/name`, the way operators name a pod.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn container(&self, id: &str) -> Option<&ContainerMeta> {
        self.containers.iter().find(|c| c.id == id)
    }
}

#[cfg(test)]
impl Pod {
    /// `namespace/exec-1` with uid `uid`, these labels and one running container
    /// `executor` (id `c1`): the pod of the unit tests that classify or count pods.
    pub fn for_tests(uid: &str, namespace: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            uid: uid.into(),
            namespace: namespace.into(),
            name: "exec-1".into(),
            sandbox_id: "s".into(),
            ready: true,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
            containers: vec![ContainerMeta {
                id: "c1".into(),
                name: "executor".into(),
                running: true,
            }],
            netns: None,
            created_at: 0,
        }
    }
}

/// Which pod (and container) a cgroup path belongs to, from kubelet's naming alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPath<'a> {
    /// The pod uid with dashes (`3f2a…-…`), whatever the driver wrote.
    pub uid: String,
    pub qos: Qos,
    /// The pod's cgroup: the prefix of the path that ends with the pod's directory.
    pub pod_cgroup: &'a str,
    /// The container id when the path is a container's cgroup (or below one).
    pub container_id: Option<&'a str>,
}

/// Finds the pod in a cgroup path of either kubelet driver:
/// cgroupfs `…kubepods/<qos>/pod<uid>/<container-id>` (Guaranteed: `kubepods/pod<uid>`),
/// systemd `…kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice/
/// cri-containerd-<id>.scope` (Guaranteed: `kubepods.slice/kubepods-pod<uid_>.slice`).
/// Anything below `kubepods` that is not a pod directory returns None.
pub fn pod_path(path: &str) -> Option<PodPath<'_>> {
    let parts: Vec<&str> = path.split('/').collect();
    let top = parts
        .iter()
        .position(|p| *p == "kubepods" || *p == "kubepods.slice")?;
    let mut i = top + 1;
    let qos = match parts.get(i).copied()? {
        "besteffort" | "kubepods-besteffort.slice" => {
            i += 1;
            Qos::BestEffort
        }
        "burstable" | "kubepods-burstable.slice" => {
            i += 1;
            Qos::Burstable
        }
        _ => Qos::Guaranteed,
    };
    let dir = *parts.get(i)?;
    let uid = if let Some(rest) = dir.strip_prefix("pod") {
        rest.to_string()
    } else {
        let slice = dir.strip_suffix(".slice")?;
        let (_, uid) = slice.rsplit_once("-pod")?;
        // systemd escapes the uid's dashes as underscores.
        uid.replace('_', "-")
    };
    if uid.is_empty() || !uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return None;
    }
    let end: usize = parts[..=i].iter().map(|p| p.len() + 1).sum::<usize>() - 1;
    let container_id = parts.get(i + 1).map(|c| container_id(c));
    Some(PodPath {
        uid,
        qos,
        pod_cgroup: &path[..end],
        container_id,
    })
}

/// A container cgroup's name to the runtime's container id: `cri-containerd-<id>.scope`,
/// `docker-<id>.scope`, `crio-<id>.scope` under systemd, the bare id under cgroupfs.
fn container_id(dir: &str) -> &str {
    let base = dir.strip_suffix(".scope").unwrap_or(dir);
    match base.rsplit_once('-') {
        Some((_, id)) if dir.ends_with(".scope") => id,
        _ => base,
    }
}

/// The pods the runtime listed last, by uid, and a container id index.
#[derive(Debug, Default, Clone)]
pub struct PodTable {
    by_uid: HashMap<String, Arc<Pod>>,
    /// Bumped whenever the content changes: the index reclassifies on a new generation.
    generation: u64,
}

impl PodTable {
    pub fn new() -> PodTable {
        PodTable::default()
    }

    /// Whether the table holds exactly `pods` (a refresh that changed nothing, the usual
    /// one, allocates nothing to find out).
    pub fn holds(&self, pods: &[Pod]) -> bool {
        pods.len() == self.by_uid.len()
            && pods
                .iter()
                .all(|p| self.by_uid.get(&p.uid).is_some_and(|old| **old == *p))
    }

    /// Replaces the content; returns whether anything changed.
    pub fn replace(&mut self, pods: Vec<Pod>) -> bool {
        if self.holds(&pods) {
            return false;
        }
        self.by_uid = pods
            .into_iter()
            .map(|p| (p.uid.clone(), Arc::new(p)))
            .collect();
        self.generation += 1;
        true
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn get(&self, uid: &str) -> Option<&Arc<Pod>> {
        self.by_uid.get(uid)
    }

    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Pod>> {
        self.by_uid.values()
    }

    /// The pod a cgroup path is of, when the runtime knows it.
    pub fn lookup<'a>(&self, path: &'a str) -> Option<PodContext<'a>> {
        let at = pod_path(path)?;
        let pod = self.by_uid.get(&at.uid)?.clone();
        let container = at
            .container_id
            .and_then(|id| pod.container(id).map(|c| c.name.clone()));
        Some(PodContext {
            pod,
            qos: at.qos,
            pod_cgroup: at.pod_cgroup,
            container,
        })
    }

    /// The pod that owns a network namespace (by its sandbox), if any.
    pub fn by_netns(&self, netns: u64) -> Option<&Arc<Pod>> {
        self.by_uid.values().find(|p| p.netns == Some(netns))
    }
}

/// A cgroup's pod: what the classification rules match on.
#[derive(Debug, Clone)]
pub struct PodContext<'a> {
    pub pod: Arc<Pod>,
    pub qos: Qos,
    pub pod_cgroup: &'a str,
    /// The container's name when the cgroup is one of the pod's containers.
    pub container: Option<String>,
}

/// What an index entry keeps of its pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub pod: Arc<Pod>,
    pub qos: Qos,
    /// Whether this cgroup is the pod's own (not one of its containers').
    pub is_pod_cgroup: bool,
    pub container: Option<String>,
}

impl PodRef {
    pub fn from_context(ctx: &PodContext<'_>, path: &str) -> PodRef {
        PodRef {
            pod: ctx.pod.clone(),
            qos: ctx.qos,
            is_pod_cgroup: ctx.pod_cgroup == path,
            container: ctx.container.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "3f2a1b4c-0d5e-4f60-8a7b-9c0d1e2f3a4b";

    #[test]
    fn pod_paths_of_the_cgroupfs_driver() {
        let path = format!("kubepods/besteffort/pod{UID}");
        let p = pod_path(&path).unwrap();
        assert_eq!(
            (p.uid.as_str(), p.qos, p.container_id),
            (UID, Qos::BestEffort, None)
        );
        let path = format!("a/b/kubepods/burstable/pod{UID}/9c1e");
        let p = pod_path(&path).unwrap();
        assert_eq!(p.qos, Qos::Burstable);
        assert_eq!(p.pod_cgroup, format!("a/b/kubepods/burstable/pod{UID}"));
        assert_eq!(p.container_id, Some("9c1e"));
        let path = format!("kubepods/pod{UID}/abc");
        let p = pod_path(&path).unwrap();
        assert_eq!((p.qos, p.container_id), (Qos::Guaranteed, Some("abc")));
        assert_eq!(pod_path("kubepods/besteffort"), None);
        assert_eq!(pod_path("kubepods"), None);
        assert_eq!(pod_path("system.slice/containerd.service"), None);
        assert_eq!(pod_path("kubepods/besteffort/podNOT-HEX"), None);
    }

    #[test]
    fn pod_paths_of_the_systemd_driver() {
        let u = UID.replace('-', "_");
        let path = format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/cri-containerd-9c1e.scope"
        );
        let p = pod_path(&path).unwrap();
        assert_eq!((p.uid.as_str(), p.qos), (UID, Qos::BestEffort));
        assert_eq!(p.container_id, Some("9c1e"));
        assert_eq!(
            p.pod_cgroup,
            format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice")
        );
        let path = format!("kubepods.slice/kubepods-pod{u}.slice");
        let p = pod_path(&path).unwrap();
        assert_eq!((p.qos, p.container_id), (Qos::Guaranteed, None));
        assert_eq!(pod_path("kubepods.slice/kubepods-besteffort.slice"), None);
    }

    fn pod(uid: &str) -> Pod {
        Pod {
            uid: uid.into(),
            namespace: "spark".into(),
            name: "exec-1".into(),
            sandbox_id: "s1".into(),
            ready: true,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            containers: vec![ContainerMeta {
                id: "9c1e".into(),
                name: "executor".into(),
                running: true,
            }],
            netns: Some(42),
            created_at: 0,
        }
    }

    #[test]
    fn the_table_finds_a_cgroups_pod_and_container_and_counts_changes() {
        let mut t = PodTable::new();
        assert!(t.replace(vec![pod(UID)]));
        assert!(!t.replace(vec![pod(UID)]), "same content, same generation");
        assert_eq!(t.generation(), 1);
        let path = format!("kubepods/besteffort/pod{UID}/9c1e");
        let c = t.lookup(&path).unwrap();
        assert_eq!(c.pod.full_name(), "spark/exec-1");
        assert_eq!(c.container.as_deref(), Some("executor"));
        let r = PodRef::from_context(&c, "x");
        assert!(!r.is_pod_cgroup);
        assert!(t.lookup("kubepods/besteffort/pod0000").is_none());
        assert_eq!(t.by_netns(42).unwrap().uid, UID);
    }
}

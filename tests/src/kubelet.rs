//! Kubelet's part, for a test: read a DaemonSet manifest (`deploy/daemonset.yaml`) and turn
//! its pod template into the CRI requests kubelet would send (sandbox and container config:
//! host namespaces, privileged, args, env, resources, hostPath and configMap volumes).
//! [`crate::cri`] sends them.
//!
//! What kubelet does that this does not: no API server (the ConfigMap is read from the same
//! manifest file; the RBAC objects beside the DaemonSet are the API server's business and
//! are skipped), no service account token volume (so the daemon finds no in-cluster
//! credentials, and no `KUBERNETES_SERVICE_HOST` is set either), no probes run by itself (the
//! test calls the probes' paths), no DNS config, no /etc/hosts or termination-log mounts, no
//! restarts. An env `valueFrom` is translated for `fieldRef: spec.nodeName` only (this
//! host's name, which is what kubelet registers the node as by default).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use k8s_cri::v1 as cri;
use serde::Deserialize;

// ---------------------------------------------------------------------------------------
// The manifest: only the fields kubelet needs to start the pod. A field this does not
// translate (a container `command`, an env `valueFrom`, a volume that is neither hostPath nor
// configMap, a subPath) is refused, never silently dropped.

#[derive(Debug, Deserialize)]
struct Object {
    kind: String,
    metadata: ObjectMeta,
    #[serde(default)]
    data: BTreeMap<String, String>,
    spec: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct DaemonSetSpec {
    template: PodTemplate,
}

#[derive(Debug, Deserialize)]
struct PodTemplate {
    #[serde(default)]
    metadata: ObjectMeta,
    spec: PodSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default, rename = "hostPID")]
    pub host_pid: bool,
    #[serde(default)]
    pub host_network: bool,
    #[serde(default, rename = "hostIPC")]
    pub host_ipc: bool,
    pub termination_grace_period_seconds: Option<i64>,
    /// Read, not acted on: kubelet would mount the account's token, which this does not.
    pub service_account_name: Option<String>,
    pub priority_class_name: Option<String>,
    pub containers: Vec<Container>,
    #[serde(default)]
    pub init_containers: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    pub security_context: Option<SecurityContext>,
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
pub struct SecurityContext {
    #[serde(default)]
    pub privileged: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(default)]
    pub read_only: bool,
    pub sub_path: Option<String>,
    pub mount_propagation: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: u16,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub http_get: Option<HttpGet>,
}

#[derive(Debug, Deserialize)]
pub struct HttpGet {
    pub path: String,
    pub port: serde_yaml_ng::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    pub host_path: Option<HostPathSource>,
    pub config_map: Option<ConfigMapSource>,
}

#[derive(Debug, Deserialize)]
pub struct HostPathSource {
    pub path: String,
    #[serde(rename = "type", default)]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
pub struct ConfigMapSource {
    pub name: String,
}

/// A DaemonSet manifest file: the DaemonSet and the ConfigMaps beside it.
pub struct Manifest {
    pub name: String,
    pub namespace: String,
    /// The pod template's metadata (labels, annotations).
    pub pod_meta: ObjectMeta,
    pub pod: PodSpec,
    /// ConfigMap name -> its `data`.
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
}

impl Manifest {
    pub fn read(path: &Path) -> anyhow::Result<Manifest> {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        let mut daemonset = None;
        let mut config_maps = BTreeMap::new();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = serde_yaml_ng::Value::deserialize(doc)
                .with_context(|| format!("{}: not YAML", path.display()))?;
            if value.is_null() {
                continue;
            }
            let object: Object = serde_yaml_ng::from_value(value)
                .with_context(|| format!("{}: not a Kubernetes object", path.display()))?;
            match object.kind.as_str() {
                "ConfigMap" => {
                    config_maps.insert(object.metadata.name.clone(), object.data);
                }
                "DaemonSet" => {
                    let spec: DaemonSetSpec =
                        serde_yaml_ng::from_value(object.spec.context("DaemonSet has no spec")?)
                            .with_context(|| format!("{}: DaemonSet spec", path.display()))?;
                    daemonset = Some((object.metadata, spec));
                }
                // API-side objects: nothing of them reaches the node.
                "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" => {}
                other => bail!("{}: unexpected kind {other}", path.display()),
            }
        }
        let (meta, spec) =
            daemonset.with_context(|| format!("{}: no DaemonSet", path.display()))?;
        let manifest = Manifest {
            name: meta.name,
            namespace: meta.namespace.unwrap_or_else(|| "default".into()),
            pod_meta: spec.template.metadata,
            pod: spec.template.spec,
            config_maps,
        };
        manifest.check_translatable()?;
        Ok(manifest)
    }

    /// The pod's only container.
    pub fn container(&self) -> &Container {
        &self.pod.containers[0]
    }

    fn check_translatable(&self) -> anyhow::Result<()> {
        if self.pod.containers.len() != 1 || !self.pod.init_containers.is_empty() {
            bail!("the pod must have exactly one container and no init container");
        }
        let c = self.container();
        if !c.command.is_empty() {
            bail!("container `command` is not translated (the image's ENTRYPOINT is used)");
        }
        for e in &c.env {
            if e.value.is_none() && !e.value_from.as_ref().is_some_and(is_node_name_ref) {
                bail!(
                    "env {}: only plain values and fieldRef spec.nodeName are translated",
                    e.name
                );
            }
        }
        for m in &c.volume_mounts {
            if m.sub_path.is_some() {
                bail!("volumeMount {}: subPath is not translated", m.name);
            }
            if m.mount_propagation.as_deref().is_some_and(|p| p != "None") {
                bail!(
                    "volumeMount {}: only mountPropagation None is translated",
                    m.name
                );
            }
            let v = self
                .pod
                .volumes
                .iter()
                .find(|v| v.name == m.name)
                .with_context(|| format!("volumeMount {} names no volume", m.name))?;
            if v.host_path.is_none() && v.config_map.is_none() {
                bail!(
                    "volume {}: only hostPath and configMap are translated",
                    v.name
                );
            }
        }
        Ok(())
    }

    /// The container's environment as kubelet gives it: plain values, and `spec.nodeName`
    /// as this host's name.
    pub fn env(&self) -> Vec<(String, String)> {
        self.container()
            .env
            .iter()
            .map(|e| {
                let value = match &e.value {
                    Some(v) => v.clone(),
                    None => node_name(),
                };
                (e.name.clone(), value)
            })
            .collect()
    }

    /// The container port a probe or annotation names (a number or a port's name).
    pub fn container_port(&self, port: &serde_yaml_ng::Value) -> Option<u16> {
        match port {
            serde_yaml_ng::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            serde_yaml_ng::Value::String(s) => s.parse().ok().or_else(|| {
                self.container()
                    .ports
                    .iter()
                    .find(|p| p.name.as_deref() == Some(s))
                    .map(|p| p.container_port)
            }),
            _ => None,
        }
    }
}

/// `valueFrom: {fieldRef: {fieldPath: spec.nodeName}}` (the downward API's node name).
fn is_node_name_ref(v: &serde_yaml_ng::Value) -> bool {
    v.get("fieldRef")
        .and_then(|f| f.get("fieldPath"))
        .and_then(serde_yaml_ng::Value::as_str)
        == Some("spec.nodeName")
}

/// The name kubelet registers this host as by default: its hostname, lower-cased.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

/// A Kubernetes quantity as millis of a core (`cpu`) or bytes (`memory`).
pub fn quantity(q: &str) -> anyhow::Result<i64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let num: f64 = num.parse().with_context(|| format!("quantity {q:?}"))?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => bail!("quantity {q:?}: unknown suffix"),
    };
    Ok((num * factor).round() as i64)
}

fn millicores(q: &str) -> anyhow::Result<i64> {
    let q = q.trim();
    Ok(match q.strip_suffix('m') {
        Some(n) => n.parse().with_context(|| format!("cpu {q:?}"))?,
        None => (q.parse::<f64>().with_context(|| format!("cpu {q:?}"))? * 1000.0).round() as i64,
    })
}

/// Where the node-local parts of the pod go, and what the test substitutes.
pub struct Node<'a> {
    /// Stands for /var/lib/kubelet: configMap volumes and container logs are written here.
    pub kubelet_dir: &'a Path,
    /// The cgroup root kubelet would be given (`--cgroup-root`), relative to every
    /// hierarchy's mount point: pods go to `<root>/kubepods/<qos>/pod<uid>`.
    pub cgroup_root: &'a str,
    /// hostPath volumes whose host directory is replaced (manifest path -> directory).
    pub host_path_substitutes: &'a BTreeMap<String, PathBuf>,
    /// Changes a ConfigMap file before it is written: (ConfigMap, key, content) -> content.
    pub edit_config: &'a dyn Fn(&str, &str, &str) -> String,
}

/// The CRI requests for one pod of the DaemonSet.
pub struct PodPlan {
    pub uid: String,
    pub sandbox: cri::PodSandboxConfig,
    pub container: cri::ContainerConfig,
    /// `<root>/kubepods/<qos>/pod<uid>`, relative.
    pub cgroup_parent: String,
    pub grace: Duration,
    /// The container's log file (CRI log format).
    pub log_path: PathBuf,
}

fn qos(r: &Resources) -> &'static str {
    let has = |m: &BTreeMap<String, String>| m.contains_key("cpu") || m.contains_key("memory");
    if !has(&r.requests) && !has(&r.limits) {
        return "besteffort";
    }
    let guaranteed = ["cpu", "memory"].iter().all(|k| {
        r.limits
            .get(*k)
            .is_some_and(|l| r.requests.get(*k).is_none_or(|q| q == l))
    });
    if guaranteed {
        "guaranteed"
    } else {
        "burstable"
    }
}

/// Writes a configMap volume the way kubelet's atomic writer does: the files in a
/// timestamped directory, `..data` a symlink to it, each key a symlink through `..data`.
fn write_config_map(dir: &Path, files: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let stamp = "..2000_01_01_00_00_00.000000001";
    std::fs::create_dir_all(dir.join(stamp))?;
    for (key, content) in files {
        std::fs::write(dir.join(stamp).join(key), content)?;
        std::os::unix::fs::symlink(format!("..data/{key}"), dir.join(key))?;
    }
    std::os::unix::fs::symlink(stamp, dir.join("..data"))?;
    Ok(())
}

/// A pod uid unique to this process and moment, as the API server would assign one.
fn new_pod_uid() -> anyhow::Result<String> {
    Ok(format!(
        "{:08x}-0000-4000-8000-{:012x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
            & 0xffff_ffff_ffff
    ))
}

/// Translates the manifest's pod into CRI requests, as kubelet would, and prepares the
/// volumes on the node (hostPath types checked or created, configMaps written).
pub fn plan_pod(manifest: &Manifest, node: &Node<'_>) -> anyhow::Result<PodPlan> {
    let uid = new_pod_uid()?;
    let pod_name = format!("{}-{}", manifest.name, &uid[..8]);
    let spec = &manifest.pod;
    let c = manifest.container();
    let qos = qos(&c.resources);
    let cgroup_parent = format!(
        "{}/kubepods/{qos}/pod{uid}",
        node.cgroup_root.trim_matches('/')
    );
    let mode = |host: bool| {
        if host {
            cri::NamespaceMode::Node as i32
        } else {
            cri::NamespaceMode::Pod as i32
        }
    };
    let namespaces = cri::NamespaceOption {
        network: mode(spec.host_network),
        pid: mode(spec.host_pid),
        ipc: mode(spec.host_ipc),
        ..Default::default()
    };
    let privileged = c.security_context.as_ref().is_some_and(|s| s.privileged);
    let grace = spec.termination_grace_period_seconds.unwrap_or(30);

    let mut labels = manifest.pod_meta.labels.clone();
    labels.insert("io.kubernetes.pod.name".into(), pod_name.clone());
    labels.insert(
        "io.kubernetes.pod.namespace".into(),
        manifest.namespace.clone(),
    );
    labels.insert("io.kubernetes.pod.uid".into(), uid.clone());
    let log_directory = node
        .kubelet_dir
        .join(format!("logs/pods/{}_{pod_name}_{uid}", manifest.namespace));
    std::fs::create_dir_all(log_directory.join(&c.name))?;
    let sandbox = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: pod_name.clone(),
            uid: uid.clone(),
            namespace: manifest.namespace.clone(),
            attempt: 0,
        }),
        // A host-network pod shares the node's UTS namespace: kubelet sets no hostname.
        hostname: if spec.host_network {
            String::new()
        } else {
            pod_name.clone()
        },
        log_directory: log_directory.display().to_string(),
        labels: labels.clone().into_iter().collect(),
        annotations: manifest.pod_meta.annotations.clone().into_iter().collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("/{cgroup_parent}"),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces.clone()),
                // Kubelet makes the sandbox privileged when a container is.
                privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    let mut mounts = Vec::new();
    for m in &c.volume_mounts {
        let v = spec.volumes.iter().find(|v| v.name == m.name).unwrap();
        let host_path = if let Some(h) = &v.host_path {
            let dir = node
                .host_path_substitutes
                .get(&h.path)
                .cloned()
                .unwrap_or_else(|| PathBuf::from(&h.path));
            match h.kind.as_str() {
                "DirectoryOrCreate" => std::fs::create_dir_all(&dir)
                    .with_context(|| format!("hostPath {}", dir.display()))?,
                "Directory" => {
                    if !dir.is_dir() {
                        bail!(
                            "hostPath {} (volume {}) is not a directory: kubelet would not start the pod",
                            dir.display(),
                            v.name
                        );
                    }
                }
                "" => {}
                other => bail!("hostPath type {other} is not translated"),
            }
            dir
        } else {
            let cm = &v.config_map.as_ref().unwrap().name;
            let data = manifest
                .config_maps
                .get(cm)
                .with_context(|| format!("ConfigMap {cm} is not in the manifest"))?;
            let files = data
                .iter()
                .map(|(k, content)| (k.clone(), (node.edit_config)(cm, k, content)))
                .collect();
            let dir = node.kubelet_dir.join(format!(
                "pods/{uid}/volumes/kubernetes.io~configmap/{}",
                v.name
            ));
            write_config_map(&dir, &files)?;
            dir
        };
        mounts.push(cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: host_path.display().to_string(),
            // Kubelet mounts configMap volumes read-only whatever the mount says.
            readonly: m.read_only || v.config_map.is_some(),
            propagation: cri::MountPropagation::PropagationPrivate as i32,
            ..Default::default()
        });
    }

    // Resources as kubelet's cgroupfs driver sets them on the container.
    let r = &c.resources;
    let mut resources = cri::LinuxContainerResources {
        cpu_period: 100_000,
        ..Default::default()
    };
    if let Some(cpu) = r.requests.get("cpu").or(r.limits.get("cpu")) {
        resources.cpu_shares = (millicores(cpu)? * 1024 / 1000).max(2);
    } else {
        resources.cpu_shares = 2;
    }
    if let Some(cpu) = r.limits.get("cpu") {
        resources.cpu_quota = millicores(cpu)? * 100_000 / 1000;
    }
    if let Some(mem) = r.limits.get("memory") {
        resources.memory_limit_in_bytes = quantity(mem)?;
    }
    // Critical pods get -997 (asked of the runtime; restrict_oom_score_adj keeps it at
    // containerd's own value here), Burstable ones a score from their memory request.
    resources.oom_score_adj = if matches!(
        spec.priority_class_name.as_deref(),
        Some("system-node-critical" | "system-cluster-critical")
    ) {
        -997
    } else {
        match qos {
            "guaranteed" => -997,
            "besteffort" => 1000,
            _ => 999,
        }
    };

    let mut container_labels = BTreeMap::new();
    container_labels.insert("io.kubernetes.container.name".to_string(), c.name.clone());
    for k in [
        "io.kubernetes.pod.name",
        "io.kubernetes.pod.namespace",
        "io.kubernetes.pod.uid",
    ] {
        container_labels.insert(k.to_string(), labels[k].clone());
    }
    let log_rel = format!("{}/0.log", c.name);
    let container = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: c.image.clone(),
            ..Default::default()
        }),
        args: c.args.clone(),
        envs: manifest
            .env()
            .into_iter()
            .map(|(key, value)| cri::KeyValue { key, value })
            .collect(),
        mounts,
        labels: container_labels.into_iter().collect(),
        annotations: [
            ("io.kubernetes.container.restartCount", "0".to_string()),
            (
                "io.kubernetes.pod.terminationGracePeriod",
                grace.to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        log_path: log_rel.clone(),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(cri::LinuxContainerSecurityContext {
                privileged,
                namespace_options: Some(namespaces),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    Ok(PodPlan {
        uid,
        sandbox,
        container,
        cgroup_parent,
        grace: Duration::from_secs(grace.max(0) as u64),
        log_path: log_directory.join(log_rel),
    })
}

/// One pod of a test: a single busybox container running `command`, started as kubelet
/// starts a pod of that QoS class under `root` (host network: no CNI here).
pub struct TestPod<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// "besteffort", "burstable" or "guaranteed": where kubelet puts its cgroup.
    pub qos: &'a str,
    pub labels: &'a [(&'a str, &'a str)],
    pub image: &'a str,
    pub command: &'a [&'a str],
    /// Its own network namespace (needs a CNI plugin) rather than the node's.
    pub own_network: bool,
}

/// The CRI requests for a [`TestPod`], with kubelet's labels.
pub fn plan_test_pod(pod: &TestPod<'_>, root: &str, log_dir: &Path) -> anyhow::Result<PodPlan> {
    let uid = new_pod_uid()?;
    let qos_dir = match pod.qos {
        "guaranteed" => String::new(),
        q => format!("{q}/"),
    };
    let cgroup_parent = format!("{}/kubepods/{qos_dir}pod{uid}", root.trim_matches('/'));
    let network = if pod.own_network {
        cri::NamespaceMode::Pod as i32
    } else {
        cri::NamespaceMode::Node as i32
    };
    let namespaces = cri::NamespaceOption {
        network,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    };
    let mut labels: BTreeMap<String, String> = pod
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.insert("io.kubernetes.pod.name".into(), pod.name.into());
    labels.insert("io.kubernetes.pod.namespace".into(), pod.namespace.into());
    labels.insert("io.kubernetes.pod.uid".into(), uid.clone());
    let log_directory = log_dir.join(format!("{}_{}_{uid}", pod.namespace, pod.name));
    std::fs::create_dir_all(log_directory.join("main"))?;
    let sandbox = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: pod.name.into(),
            uid: uid.clone(),
            namespace: pod.namespace.into(),
            attempt: 0,
        }),
        log_directory: log_directory.display().to_string(),
        labels: labels.clone().into_iter().collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("/{cgroup_parent}"),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let container = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "main".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: pod.image.into(),
            ..Default::default()
        }),
        command: pod.command.iter().map(|s| s.to_string()).collect(),
        labels: [
            ("io.kubernetes.container.name", "main"),
            ("io.kubernetes.pod.name", pod.name),
            ("io.kubernetes.pod.namespace", pod.namespace),
            ("io.kubernetes.pod.uid", uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        log_path: "main/0.log".into(),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                cpu_period: 100_000,
                cpu_shares: 2,
                ..Default::default()
            }),
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    Ok(PodPlan {
        uid,
        sandbox,
        container,
        cgroup_parent,
        grace: Duration::from_secs(1),
        log_path: log_directory.join("main/0.log"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(millicores("100m").unwrap(), 100);
        assert_eq!(millicores("2").unwrap(), 2000);
        assert_eq!(millicores("0.5").unwrap(), 500);
        assert_eq!(quantity("128Mi").unwrap(), 128 << 20);
        assert_eq!(quantity("1G").unwrap(), 1_000_000_000);
        assert!(quantity("12parsecs").is_err());
    }

    #[test]
    fn the_deploy_manifest_translates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/daemonset.yaml");
        let m = Manifest::read(&path).expect("deploy/daemonset.yaml");
        assert_eq!(m.pod.service_account_name.as_deref(), Some("enforcer"));
        let env = m.env();
        let node = env
            .iter()
            .find(|(k, _)| k == "NODE_NAME")
            .expect("NODE_NAME");
        assert_eq!(node.1, node_name());
        assert!(!env.iter().any(|(k, _)| k == "KUBERNETES_SERVICE_HOST"));
    }
}

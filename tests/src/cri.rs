//! A blocking CRI client over containerd's unix socket (`k8s-cri` + tonic), and a guard that
//! stops and removes a pod sandbox. What it starts comes from [`crate::kubelet`].

use std::{path::Path, sync::Arc};

use anyhow::Context;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    self as cri, image_service_client::ImageServiceClient,
    runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// A blocking CRI client (RuntimeService and ImageService on one socket). Clones share the
/// connection and the runtime.
#[derive(Clone)]
pub struct Cri {
    rt: Arc<tokio::runtime::Runtime>,
    channel: Channel,
}

fn status(what: &str) -> impl FnOnce(tonic::Status) -> anyhow::Error + '_ {
    move |s| anyhow::anyhow!("CRI {what}: {} ({:?})", s.message(), s.code())
}

impl Cri {
    pub fn connect(socket: &Path) -> anyhow::Result<Cri> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let path = socket.to_path_buf();
        let channel = rt.block_on(async move {
            // The URI is not used: every connection goes to the unix socket.
            Endpoint::try_from("http://[::1]:0")?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await
                .context("connecting to the CRI socket")
        })?;
        Ok(Cri {
            rt: Arc::new(rt),
            channel,
        })
    }

    fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    pub fn version(&self) -> anyhow::Result<cri::VersionResponse> {
        let mut c = self.runtime();
        self.rt
            .block_on(c.version(cri::VersionRequest::default()))
            .map(|r| r.into_inner())
            .map_err(status("Version"))
    }

    /// The image's id, or None when the runtime does not have it.
    pub fn image_id(&self, image: &str) -> anyhow::Result<Option<String>> {
        let mut c = ImageServiceClient::new(self.channel.clone());
        let r = self
            .rt
            .block_on(c.image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            }))
            .map_err(status("ImageStatus"))?;
        Ok(r.into_inner().image.map(|i| i.id))
    }

    pub fn run_pod_sandbox(&self, config: &cri::PodSandboxConfig) -> anyhow::Result<String> {
        let mut c = self.runtime();
        self.rt
            .block_on(c.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            }))
            .map(|r| r.into_inner().pod_sandbox_id)
            .map_err(status("RunPodSandbox"))
    }

    pub fn create_container(
        &self,
        pod: &str,
        config: &cri::ContainerConfig,
        sandbox: &cri::PodSandboxConfig,
    ) -> anyhow::Result<String> {
        let mut c = self.runtime();
        self.rt
            .block_on(c.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config.clone()),
                sandbox_config: Some(sandbox.clone()),
            }))
            .map(|r| r.into_inner().container_id)
            .map_err(status("CreateContainer"))
    }

    pub fn start_container(&self, id: &str) -> anyhow::Result<()> {
        let mut c = self.runtime();
        self.rt
            .block_on(c.start_container(cri::StartContainerRequest {
                container_id: id.into(),
            }))
            .map(drop)
            .map_err(status("StartContainer"))
    }

    /// The stop signal, then SIGKILL after `timeout` seconds.
    pub fn stop_container(&self, id: &str, timeout: i64) -> anyhow::Result<()> {
        let mut c = self.runtime();
        self.rt
            .block_on(c.stop_container(cri::StopContainerRequest {
                container_id: id.into(),
                timeout,
            }))
            .map(drop)
            .map_err(status("StopContainer"))
    }

    /// The status, and the verbose info's JSON (`pid`, the runtime spec...).
    pub fn container_status(
        &self,
        id: &str,
    ) -> anyhow::Result<(cri::ContainerStatus, serde_json::Value)> {
        let mut c = self.runtime();
        let r = self
            .rt
            .block_on(c.container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            }))
            .map_err(status("ContainerStatus"))?
            .into_inner();
        let info = r
            .info
            .get("info")
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or(serde_json::Value::Null);
        Ok((r.status.context("no container status")?, info))
    }

    /// Whether the runtime reports the sandbox ready (its pause process alive).
    pub fn pod_sandbox_ready(&self, id: &str) -> anyhow::Result<bool> {
        let mut c = self.runtime();
        let r = self
            .rt
            .block_on(c.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            }))
            .map_err(status("PodSandboxStatus"))?
            .into_inner();
        let state = r.status.context("no sandbox status")?.state;
        Ok(state == cri::PodSandboxState::SandboxReady as i32)
    }

    /// The sandbox's (pause) process id, from the verbose status.
    pub fn pod_sandbox_pid(&self, id: &str) -> anyhow::Result<i32> {
        let mut c = self.runtime();
        let r = self
            .rt
            .block_on(c.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: true,
            }))
            .map_err(status("PodSandboxStatus"))?
            .into_inner();
        let info: serde_json::Value = r
            .info
            .get("info")
            .and_then(|i| serde_json::from_str(i).ok())
            .context("no verbose info")?;
        info["pid"]
            .as_i64()
            .map(|p| p as i32)
            .context("no pid in the verbose info")
    }

    pub fn stop_pod_sandbox(&self, id: &str) -> anyhow::Result<()> {
        let mut c = self.runtime();
        self.rt
            .block_on(c.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            }))
            .map(drop)
            .map_err(status("StopPodSandbox"))
    }

    pub fn remove_pod_sandbox(&self, id: &str) -> anyhow::Result<()> {
        let mut c = self.runtime();
        self.rt
            .block_on(c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            }))
            .map(drop)
            .map_err(status("RemovePodSandbox"))
    }
}

/// A pod sandbox removed (stopped first: SIGKILL to whatever still runs) when dropped.
pub struct PodGuard {
    cri: Cri,
    pub id: String,
}

impl PodGuard {
    pub fn run(cri: &Cri, config: &cri::PodSandboxConfig) -> anyhow::Result<PodGuard> {
        Ok(PodGuard {
            cri: cri.clone(),
            id: cri.run_pod_sandbox(config)?,
        })
    }
}

impl Drop for PodGuard {
    fn drop(&mut self) {
        if let Err(e) = self.cri.stop_pod_sandbox(&self.id) {
            eprintln!("warning: stopping pod sandbox {}: {e:#}", self.id);
        }
        if let Err(e) = self.cri.remove_pod_sandbox(&self.id) {
            eprintln!("warning: removing pod sandbox {}: {e:#}", self.id);
        }
    }
}

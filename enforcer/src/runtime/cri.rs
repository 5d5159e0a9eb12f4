//! A blocking CRI (`runtime.v1`) client over the runtime's unix socket: the three calls the
//! pod source needs, each bounded by a timeout, on a private current-thread tokio runtime.
//! Connections are made lazily and re-made after the runtime restarts (tonic reconnects).

use std::{path::Path, time::Duration};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{self as cri, runtime_service_client::RuntimeServiceClient};
use tonic::transport::{Channel, Endpoint, Uri};

use super::RuntimeError;

/// A lazily connected channel to the unix socket (the URI is not used: every connection
/// goes to the socket); `request_timeout` bounds each call, `None` for a long-lived stream.
/// Needs a tokio runtime entered.
fn channel(socket: &Path, connect_timeout: Duration, request_timeout: Option<Duration>) -> Channel {
    let path = socket.to_path_buf();
    let mut endpoint = Endpoint::from_static("http://[::1]:0").connect_timeout(connect_timeout);
    if let Some(t) = request_timeout {
        endpoint = endpoint.timeout(t);
    }
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
        }
    }))
}

pub struct CriClient {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    timeout: Duration,
}

fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> RuntimeError {
    move |s| RuntimeError::Rpc {
        call,
        code: format!("{:?}", s.code()),
        message: s.message().to_string(),
    }
}

impl CriClient {
    /// A client for `socket`; nothing is connected until the first call.
    pub fn new(socket: &Path, timeout: Duration) -> Result<CriClient, RuntimeError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RuntimeError::Setup(e.to_string()))?;
        let channel = {
            let _guard = rt.enter();
            channel(socket, timeout, Some(timeout))
        };
        Ok(CriClient {
            rt,
            channel,
            timeout,
        })
    }

    fn call<T>(
        &self,
        call: &'static str,
        f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, RuntimeError> {
        // The channel's timeout covers a request; this one covers a connection that hangs.
        self.rt
            .block_on(async { tokio::time::timeout(self.timeout, f).await })
            .map_err(|_| RuntimeError::Timeout {
                call,
                after: self.timeout,
            })?
            .map(tonic::Response::into_inner)
            .map_err(rpc(call))
    }

    fn client(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    /// Follows the runtime's container event stream (`GetContainerEvents`, containerd ≥ 1.7),
    /// calling `on_event` for each, until the stream ends or fails. containerd 1.6 answers
    /// `Unimplemented`. A client of its own: the stream is long-lived, so the request
    /// timeout of the list client does not apply to it.
    pub fn follow_events(
        socket: &Path,
        connect_timeout: Duration,
        mut on_event: impl FnMut(),
    ) -> Result<(), RuntimeError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RuntimeError::Setup(e.to_string()))?;
        let channel = {
            let _guard = rt.enter();
            channel(socket, connect_timeout, None)
        };
        rt.block_on(async move {
            let mut c = RuntimeServiceClient::new(channel);
            let mut stream = c
                .get_container_events(cri::GetEventsRequest {})
                .await
                .map_err(rpc("GetContainerEvents"))?
                .into_inner();
            while let Some(event) = stream.message().await.map_err(rpc("GetContainerEvents"))? {
                tracing::trace!(container = %event.container_id, kind = event.container_event_type, "runtime event");
                on_event();
            }
            Ok(())
        })
    }

    /// The runtime's name and version (`containerd 1.6.20`).
    pub fn version(&self) -> Result<String, RuntimeError> {
        let mut c = self.client();
        let v = self.call("Version", c.version(cri::VersionRequest::default()))?;
        Ok(format!("{} {}", v.runtime_name, v.runtime_version))
    }

    pub fn pod_sandboxes(&self) -> Result<Vec<cri::PodSandbox>, RuntimeError> {
        let mut c = self.client();
        let r = self.call(
            "ListPodSandbox",
            c.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
        )?;
        Ok(r.items)
    }

    pub fn containers(&self) -> Result<Vec<cri::Container>, RuntimeError> {
        let mut c = self.client();
        let r = self.call(
            "ListContainers",
            c.list_containers(cri::ListContainersRequest { filter: None }),
        )?;
        Ok(r.containers)
    }

    /// The sandbox's process id (verbose status, `info.pid`) and whether the sandbox has its
    /// own network namespace (not the node's).
    pub fn sandbox_pid(&self, id: &str) -> Result<(Option<i32>, bool), RuntimeError> {
        let mut c = self.client();
        let r = self.call(
            "PodSandboxStatus",
            c.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: true,
            }),
        )?;
        let pid = r
            .info
            .get("info")
            .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
            .and_then(|v| v["pid"].as_i64())
            .and_then(|p| i32::try_from(p).ok())
            .filter(|&p| p > 0);
        let own_netns = r
            .status
            .and_then(|s| s.linux)
            .and_then(|l| l.namespaces)
            .and_then(|n| n.options)
            .is_some_and(|o| o.network != cri::NamespaceMode::Node as i32);
        Ok((pid, own_netns))
    }
}

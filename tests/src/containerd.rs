//! A private containerd for a test (see ../shared/notes/containerd-cri.md): its own root,
//! state, sockets, runc root and opt directory under a temp dir, no CNI (host-network pods
//! only), the cgroupfs driver, and `restrict_oom_score_adj` (root here lacks
//! CAP_SYS_RESOURCE). Stopped by its pid when the guard drops; what it leaves behind (shims,
//! mounts, shim sockets in /run/containerd/s) is removed too.

use std::{
    collections::BTreeSet,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use nix::sys::signal::Signal;
use sha2::{Digest, Sha256};

use crate::{TempDir, process::ChildGuard};

/// Where containerd 1.6 puts shim sockets whatever its configuration says.
const SHIM_SOCKETS: &str = "/run/containerd/s";

fn shim_sockets() -> BTreeSet<PathBuf> {
    std::fs::read_dir(SHIM_SOCKETS)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Where containerd 1.6 pins pod network namespaces (`cni-<uuid>`), whatever its
/// configuration says; a sandbox whose network setup failed may leave its own behind.
const POD_NETNS: &str = "/run/netns";

fn pod_netns() -> BTreeSet<PathBuf> {
    std::fs::read_dir(POD_NETNS)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("cni-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Fails loudly with what is missing.
fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            d.join(tool)
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    assert!(
        found,
        "`{tool}` not found on PATH: install the Debian package `{package}` (cargo xtask setup)"
    );
}

/// The `loopback` CNI plugin's answer, without touching anything.
const LOOPBACK_PLUGIN: &str = r#"#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0"]}' ;;
ADD) printf '{"cniVersion":"0.4.0","interfaces":[{"name":"lo","sandbox":"%s"}],"ips":[{"version":"4","address":"127.0.0.1/8","interface":0}]}' "$CNI_NETNS" ;;
esac
exit 0
"#;

pub struct Containerd {
    child: Option<ChildGuard>,
    pub dir: TempDir,
    /// containerd's gRPC socket, which also serves CRI.
    pub socket: PathBuf,
    log: PathBuf,
    shim_sockets_before: BTreeSet<PathBuf>,
    netns_before: BTreeSet<PathBuf>,
}

impl Containerd {
    /// Starts containerd with `sandbox_image` as the CRI sandbox (pause) image and waits for
    /// its socket.
    pub fn start(sandbox_image: &str) -> Containerd {
        Self::start_with_cni(sandbox_image, None)
    }

    /// [`Containerd::start`] with one CNI plugin (`name`, the script's text) in its private
    /// plugin directory and a network list using it, so that pods may have their own network
    /// namespace (without one, only host-network pods run).
    pub fn start_with_cni(sandbox_image: &str, plugin: Option<(&str, &str)>) -> Containerd {
        for (tool, package) in [
            ("containerd", "containerd"),
            ("containerd-shim-runc-v2", "containerd"),
            ("ctr", "containerd"),
            ("runc", "runc"),
        ] {
            require_tool(tool, package);
        }
        let dir = TempDir::new("enforcer-containerd");
        let d = dir.path();
        for sub in ["root", "state", "opt", "runc", "cni/bin", "cni/conf"] {
            std::fs::create_dir_all(d.join(sub)).expect("containerd dirs");
        }
        if let Some((name, script)) = plugin {
            use std::os::unix::fs::PermissionsExt;
            let bin = d.join("cni/bin").join(name);
            std::fs::write(&bin, script).expect("write the CNI plugin");
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
            let list = serde_json::json!({
                "cniVersion": "0.4.0",
                "name": "enforcer-test",
                "plugins": [{ "type": name }],
            });
            std::fs::write(
                d.join("cni/conf/10-enforcer-test.conflist"),
                list.to_string(),
            )
            .expect("write the CNI network list");
            // containerd's CRI plugin also runs `loopback` for every pod: the namespace's lo,
            // which the test's plugin brings up itself.
            let loopback = d.join("cni/bin/loopback");
            std::fs::write(&loopback, LOOPBACK_PLUGIN).expect("write the loopback plugin");
            std::fs::set_permissions(&loopback, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let socket = d.join("containerd.sock");
        let config = d.join("config.toml");
        let p = |s: &str| d.join(s).display().to_string();
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  systemd_cgroup = false
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc}"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
"#,
                root = p("root"),
                state = p("state"),
                socket = socket.display(),
                opt = p("opt"),
                runc = p("runc"),
                cni_bin = p("cni/bin"),
                cni_conf = p("cni/conf"),
            ),
        )
        .expect("write containerd config");
        let log = d.join("containerd.log");
        let shim_sockets_before = shim_sockets();
        let netns_before = pod_netns();
        let mut containerd = Containerd {
            child: None,
            dir,
            socket,
            log,
            shim_sockets_before,
            netns_before,
        };
        containerd.spawn();
        containerd
    }

    fn spawn(&mut self) {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("containerd log");
        let mut command = Command::new("containerd");
        command
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log_file);
        self.child = Some(ChildGuard::spawn(command));
        self.wait_ready(Duration::from_secs(20));
    }

    /// Stops containerd (SIGTERM, by its pid) and leaves its pods running under their shims,
    /// as a runtime restart on a node does.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.signal(Signal::SIGTERM);
            assert!(
                child.wait_timeout(Duration::from_secs(10)).is_some(),
                "containerd ignored SIGTERM for 10 s"
            );
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts it again with the same configuration and state (it finds its pods again).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "containerd is running");
        self.spawn();
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().child_mut().try_wait().unwrap() {
                panic!("containerd exited at start ({status}):\n{}", self.log());
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "containerd not answering on {} after {timeout:?}:\n{}",
                self.socket.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ctr -a SOCKET -n k8s.io ARGS` (the namespace the CRI plugin uses).
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("run ctr")
    }

    /// Imports an OCI image-layout archive into the CRI plugin's namespace.
    pub fn import(&self, archive: &Path) {
        let out = self.ctr(&["images", "import", &archive.display().to_string()]);
        assert!(
            out.status.success(),
            "ctr images import {} failed: {}{}",
            archive.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The shims this containerd started (their command line names its socket).
    fn shims(&self) -> Vec<i32> {
        let address = self.socket.display().to_string();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                    args.first()
                        .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"))
                        && args.contains(&address.as_bytes())
                })
            })
            .collect()
    }

    /// Mount points under this containerd's directory (snapshots, rootfs), deepest first.
    fn own_mounts(&self) -> Vec<PathBuf> {
        let prefix = self.dir.path();
        let mut mounts: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(PathBuf::from))
            .filter(|m| m.starts_with(prefix))
            .collect();
        mounts.sort();
        mounts.dedup();
        mounts.reverse();
        mounts
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.signal(Signal::SIGTERM);
            if child.wait_timeout(Duration::from_secs(5)).is_none() {
                eprintln!("containerd ignored SIGTERM for 5 s: killing it");
            }
            drop(child); // SIGKILL if still there, and reaped
        }
        // A test that panicked before removing its pods leaves shims (and their containers)
        // behind: killing a shim's process group takes the container's processes with it only
        // if they share it, so kill the shims and let runc's cgroups be emptied by the caller's
        // cgroup guards.
        for pid in self.shims() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        for mount in self.own_mounts() {
            let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
        }
        for socket in shim_sockets() {
            if !self.shim_sockets_before.contains(&socket) {
                let _ = std::fs::remove_file(&socket);
            }
        }
        // Pod namespaces this containerd pinned and did not remove (a failed sandbox).
        for ns in pod_netns() {
            if !self.netns_before.contains(&ns) {
                let _ = nix::mount::umount2(&ns, nix::mount::MntFlags::MNT_DETACH);
                let _ = std::fs::remove_file(&ns);
            }
        }
        // The folder itself, if this run was the only one to use it.
        let _ = std::fs::remove_dir(SHIM_SOCKETS);
        let _ = std::fs::remove_dir("/run/containerd");
    }
}

/// The digest `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    let mut s = String::from("sha256:");
    for b in Sha256::digest(data) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The image name (`io.containerd.image.name`) an OCI archive's index.json gives its image.
pub fn archive_image_name(archive: &Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(archive).with_context(|| archive.display().to_string())?;
    for entry in tar::Archive::new(file).entries()? {
        let mut entry = entry?;
        if entry.path()?.as_os_str() == "index.json" {
            let index: serde_json::Value = serde_json::from_reader(&mut entry)?;
            return index["manifests"][0]["annotations"]["io.containerd.image.name"]
                .as_str()
                .map(str::to_string)
                .context("index.json names no image");
        }
    }
    anyhow::bail!("{}: no index.json", archive.display())
}

/// Whether a 64-bit ELF file names a program interpreter (`PT_INTERP`): dynamically linked.
pub fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    assert!(
        elf.len() > 64 && elf.starts_with(b"\x7fELF"),
        "not an ELF file"
    );
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    (0..u16_at(0x38)).any(|i| {
        let at = phoff + i * u16_at(0x36);
        elf[at..at + 4] == 3u32.to_le_bytes()
    })
}

/// A sandbox (pause) image for the CRI plugin, with no registry: an OCI archive whose one
/// layer holds `/bin/busybox` from busybox-static (`busybox sleep infinity` is the pause
/// process; the sandbox is stopped with SIGKILL). Written the way `cargo xtask image` writes
/// enforcer's (uncompressed layer, diff_id = digest, fixed mtimes), much smaller.
pub fn write_pause_image(dir: &Path, name: &str) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    let bytes = std::fs::read(busybox).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: install the Debian package `busybox-static`",
            busybox.display()
        )
    });
    // A dynamically linked busybox would need libc inside the image.
    assert!(
        !has_interpreter(&bytes),
        "/bin/busybox is dynamically linked: install `busybox-static`"
    );
    let tar_of = |entries: Vec<(&str, u32, Vec<u8>)>| -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, mode, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_path(path).unwrap();
            h.set_entry_type(if path.ends_with('/') {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_mtime(0);
            h.set_cksum();
            b.append(&h, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    };
    let layer = tar_of(vec![("bin/", 0o755, vec![]), ("bin/busybox", 0o755, bytes)]);
    let layer_digest = sha256(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Entrypoint": ["/bin/busybox", "sleep", "infinity"] },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }))
    .unwrap();
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": layer_digest, "size": layer.len() }],
    }))
    .unwrap();
    let manifest_digest = sha256(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": { "io.containerd.image.name": name },
        }],
    }))
    .unwrap();
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let (mb, cb, lb) = (
        blob(&manifest_digest),
        blob(&config_digest),
        blob(&layer_digest),
    );
    let archive = tar_of(vec![
        (
            "oci-layout",
            0o644,
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json", 0o644, index),
        ("blobs/", 0o755, vec![]),
        ("blobs/sha256/", 0o755, vec![]),
        (&mb, 0o644, manifest),
        (&cb, 0o644, config),
        (&lb, 0o644, layer),
    ]);
    let path = dir.join("pause.oci.tar");
    std::fs::write(&path, archive).expect("write pause image");
    path
}

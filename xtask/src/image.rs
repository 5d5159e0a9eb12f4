//! `cargo xtask image`: the DaemonSet's container image as an OCI image-layout archive
//! (`target/image/enforcer-<version>.oci.tar`), written here without a Docker engine, and
//! reproducible: the same commit gives the same bytes, hence the same digest.
//!
//! The archive holds `oci-layout`, `index.json` (naming the image for `ctr images import`
//! and for the DaemonSet), the manifest, the config and one uncompressed layer whose diff_id
//! is its digest. The layer holds the enforcer binary and nothing else.
//!
//! **The binary is linked statically against glibc** (`-C target-feature=+crt-static`,
//! a static PIE with no program interpreter), rather than shipped with the build host's
//! `libc.so.6`, `libm.so.6`, `libgcc_s.so.1` and loader. Why: the layer is one file, with
//! no copy of a Debian glibc inside the image to keep patched apart from the binary; the
//! same file also runs on the fleet's oldest hosts (CentOS 7.6, glibc 2.17) straight from
//! the host when the unit is used instead of the DaemonSet; and the daemon uses no part of
//! glibc that needs shared objects at run time (no NSS look-up: no user or host names are
//! resolved, addresses are parsed, never looked up). The build goes to its own target
//! directory (`target/x86_64-unknown-linux-gnu/release`) so that the ordinary release build
//! keeps its flags. The build checks that the result has no program interpreter.
//!
//! Reproducibility: every entry of both tars has mtime `SOURCE_DATE_EPOCH` (default: the
//! commit time), uid/gid 0, no user or group names and a fixed mode; entries are sorted; the
//! JSON documents have sorted keys; the only times in the config are the commit time. The
//! binary keeps the paths it was built from (panic locations; the BTF line info of the
//! kernel object, which aya-build compiles with its own flags): the same commit checked out
//! at the same path, with the same toolchain, gives the same digest.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cmd::{self, command, output};

/// The target the image's binary is built for (a separate target directory from the
/// ordinary release build, so that its static flags do not rebuild that one).
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Where the DaemonSet finds the binary and what it runs by default: the manifest's `args`
/// replace `CMD`, the `ENTRYPOINT` stays.
pub const ENTRYPOINT: &str = "/enforcer";
pub const DEFAULT_CMD: &[&str] = &["run", "--config", "/etc/enforcer/enforcer.toml"];
/// The repository the image is named in (`deploy/daemonset.yaml` references it).
pub const REPOSITORY: &str = "docker.io/library/enforcer";

const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// Everything the archive is made of: the same inputs give the same bytes.
pub struct Inputs {
    pub version: String,
    /// The commit (`git rev-parse HEAD`), with `-dirty` when tracked files differ from it.
    pub revision: String,
    /// Seconds since the epoch: every mtime, and the config's `created`.
    pub epoch: u64,
    /// The file that becomes `/enforcer`.
    pub binary: Vec<u8>,
}

/// A written archive and the digests it is made of.
pub struct Archive {
    pub bytes: Vec<u8>,
    /// `docker.io/library/enforcer:<version>`.
    pub name: String,
    /// The image's digest (what `ctr images ls` and CRI's image id report).
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digest: String,
    pub layer_size: usize,
}

fn sha256(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A tar entry header: ustar, uid/gid 0, no names, mtime `epoch`.
fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64, epoch: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).expect("short ASCII path");
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(epoch);
    h.set_cksum();
    h
}

/// A tar of `entries` (path, mode, content; a path ending in `/` is a directory), sorted.
fn tar_of(mut entries: Vec<(String, u32, Vec<u8>)>, epoch: u64) -> anyhow::Result<Vec<u8>> {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut b = tar::Builder::new(Vec::new());
    for (path, mode, data) in &entries {
        let kind = if path.ends_with('/') {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        };
        let h = header(path, kind, *mode, data.len() as u64, epoch);
        b.append(&h, data.as_slice())?;
    }
    Ok(b.into_inner()?)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of `epoch` (days to civil date: Howard Hinnant's algorithm).
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn json_bytes(v: &Value) -> Vec<u8> {
    // serde_json's map is a BTreeMap here (no preserve_order): keys come out sorted.
    serde_json::to_vec(v).expect("JSON")
}

/// Builds the archive in memory from `inputs` alone.
pub fn build(inputs: &Inputs) -> anyhow::Result<Archive> {
    let epoch = inputs.epoch;
    let created = rfc3339(epoch);
    let name = format!("{REPOSITORY}:{}", inputs.version);

    let layer = tar_of(
        vec![(
            ENTRYPOINT.trim_start_matches('/').to_string(),
            0o755,
            inputs.binary.clone(),
        )],
        epoch,
    )?;
    let layer_digest = sha256(&layer);

    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "Entrypoint": [ENTRYPOINT],
            "Cmd": DEFAULT_CMD,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
            "StopSignal": "SIGTERM",
            "ExposedPorts": { "9977/tcp": {} },
            "Labels": {
                "org.opencontainers.image.title": "enforcer",
                "org.opencontainers.image.description":
                    "eBPF protection of online services on co-located nodes",
                "org.opencontainers.image.version": inputs.version,
                "org.opencontainers.image.revision": inputs.revision,
                "org.opencontainers.image.created": created,
                "org.opencontainers.image.licenses": "Apache-2.0",
            },
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{ "created": created, "created_by": "cargo xtask image" }],
    });
    let config = json_bytes(&config);
    let config_digest = sha256(&config);

    let manifest = json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": { "mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": MEDIA_LAYER, "digest": layer_digest, "size": layer.len() }],
    }));
    let manifest_digest = sha256(&manifest);

    let index = json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": inputs.version,
            },
        }],
    }));

    let blob = |digest: &str, data: Vec<u8>| {
        (
            format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
            0o644,
            data,
        )
    };
    let layer_size = layer.len();
    let bytes = tar_of(
        vec![
            (
                "oci-layout".into(),
                0o644,
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".into(), 0o644, index),
            ("blobs/".into(), 0o755, Vec::new()),
            ("blobs/sha256/".into(), 0o755, Vec::new()),
            blob(&manifest_digest, manifest),
            blob(&config_digest, config),
            blob(&layer_digest, layer),
        ],
        epoch,
    )?;
    Ok(Archive {
        bytes,
        name,
        manifest_digest,
        config_digest,
        layer_digest,
        layer_size,
    })
}

/// The version of the enforcer package (its own, or the workspace's it inherits).
pub fn version(workspace: &Path) -> anyhow::Result<String> {
    let read = |p: PathBuf| -> anyhow::Result<toml::Table> {
        let text = std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()))?;
        toml::from_str(&text).with_context(|| format!("{}", p.display()))
    };
    let package = read(workspace.join("enforcer/Cargo.toml"))?;
    let version = &package["package"]["version"];
    if let Some(v) = version.as_str() {
        return Ok(v.to_string());
    }
    let root = read(workspace.join("Cargo.toml"))?;
    root.get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .context("no version in enforcer/Cargo.toml nor in [workspace.package]")
}

fn git(workspace: &Path, args: &[&str]) -> Option<String> {
    let mut c = command("git");
    c.arg("-C").arg(workspace).args(args);
    output(c).map(|s| s.trim().to_string())
}

/// `SOURCE_DATE_EPOCH` if set, else the commit time.
fn epoch(workspace: &Path) -> anyhow::Result<u64> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"));
    }
    git(workspace, &["log", "-1", "--format=%ct"])
        .context("`git log` failed: set SOURCE_DATE_EPOCH outside a git checkout")?
        .parse()
        .context("git's commit time")
}

fn revision(workspace: &Path) -> String {
    let Some(head) = git(workspace, &["rev-parse", "HEAD"]) else {
        return "unknown".into();
    };
    let dirty = git(
        workspace,
        &["status", "--porcelain", "--untracked-files=no"],
    )
    .is_some_and(|s| !s.is_empty());
    if dirty { format!("{head}-dirty") } else { head }
}

/// Whether the ELF file has a program interpreter (`PT_INTERP`): a dynamically linked
/// executable. A static PIE has `PT_DYNAMIC` (for its own relocations) but no interpreter.
pub fn has_interpreter(elf: &[u8]) -> anyhow::Result<bool> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        bail!("not a 64-bit little-endian ELF file");
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into()?) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let p_type = elf
            .get(at..at + 4)
            .context("truncated program headers")?
            .try_into()
            .map(u32::from_le_bytes)?;
        if p_type == 3 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Builds the static binary, writes the archive, prints its digest.
pub fn run(workspace: &Path) -> anyhow::Result<()> {
    let flags = format!("target.{TARGET}.rustflags=[\"-C\",\"target-feature=+crt-static\"]");
    let mut cargo = command(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["build", "--release", "-p", "enforcer", "--bin", "enforcer"])
        .args(["--target", TARGET, "--config", &flags])
        .current_dir(workspace);
    println!("\n==> build (static, {TARGET})");
    cmd::run(cargo).context("step `build` failed")?;

    let bin = workspace
        .join("target")
        .join(TARGET)
        .join("release/enforcer");
    let binary = std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    if has_interpreter(&binary)? {
        bail!(
            "{} has a program interpreter: the image would need the build host's glibc",
            bin.display()
        );
    }
    let inputs = Inputs {
        version: version(workspace)?,
        revision: revision(workspace),
        epoch: epoch(workspace)?,
        binary,
    };
    let archive = build(&inputs)?;

    let dir = workspace.join("target/image");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("enforcer-{}.oci.tar", inputs.version));
    let tmp = path.with_extension("tar.tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&archive.bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;

    println!("image:    {}", archive.name);
    println!("revision: {} (epoch {})", inputs.revision, inputs.epoch);
    println!(
        "layer:    {} ({} bytes, the binary alone)",
        archive.layer_digest, archive.layer_size
    );
    println!("config:   {}", archive.config_digest);
    println!(
        "archive:  {} ({} bytes)",
        path.display(),
        archive.bytes.len()
    );
    println!("import:   ctr -n k8s.io images import {}", path.display());
    println!("digest:   {}", archive.manifest_digest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, io::Read};

    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            version: "9.8.7".into(),
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            epoch: 1_700_000_000,
            binary: (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect(),
        }
    }

    /// path -> (header, content) of every entry, checking what every entry must be.
    fn entries(tar: &[u8], epoch: u64) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut last = String::new();
        for e in tar::Archive::new(tar).entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            assert!(path > last, "entries sorted: {last} then {path}");
            assert_eq!(h.mtime().unwrap(), epoch, "{path}");
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0), "{path}");
            assert_eq!(h.username().unwrap(), Some(""), "{path}");
            let mode = h.mode().unwrap();
            assert!(mode == 0o644 || mode == 0o755, "{path}: {mode:o}");
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            last = path.clone();
            out.insert(path, data);
        }
        out
    }

    fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, digest: &str) -> &'a [u8] {
        let data = &files[&format!("blobs/sha256/{}", digest.strip_prefix("sha256:").unwrap())];
        assert_eq!(sha256(data), digest, "a blob's name is its digest");
        data
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes_and_the_digests_are_right() {
        let a = build(&inputs()).unwrap();
        let b = build(&inputs()).unwrap();
        assert!(a.bytes == b.bytes, "two builds differ");
        assert_eq!(a.manifest_digest, b.manifest_digest);

        let files = entries(&a.bytes, 1_700_000_000);
        assert_eq!(
            files
                .keys()
                .filter(|k| k.len() <= "blobs/sha256/".len())
                .collect::<Vec<_>>(),
            ["blobs/", "blobs/sha256/", "index.json", "oci-layout"]
        );
        assert_eq!(files.len(), 7, "three blobs");
        let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let m = &index["manifests"][0];
        assert_eq!(
            m["annotations"]["io.containerd.image.name"],
            "docker.io/library/enforcer:9.8.7"
        );
        assert_eq!(
            m["annotations"]["org.opencontainers.image.ref.name"],
            "9.8.7"
        );
        assert_eq!(m["digest"], a.manifest_digest.as_str());
        let manifest_bytes = blob(&files, &a.manifest_digest);
        assert_eq!(m["size"], manifest_bytes.len());

        let manifest: Value = serde_json::from_slice(manifest_bytes).unwrap();
        assert_eq!(manifest["config"]["digest"], a.config_digest.as_str());
        let config_bytes = blob(&files, &a.config_digest);
        assert_eq!(manifest["config"]["size"], config_bytes.len());
        let layer_meta = &manifest["layers"][0];
        assert_eq!(layer_meta["mediaType"], MEDIA_LAYER);
        let layer = blob(&files, layer_meta["digest"].as_str().unwrap());
        assert_eq!(layer_meta["size"], layer.len());

        let config: Value = serde_json::from_slice(config_bytes).unwrap();
        // Uncompressed: the diff_id is the layer's digest.
        assert_eq!(config["rootfs"]["diff_ids"][0], a.layer_digest.as_str());
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        assert_eq!(config["config"]["Entrypoint"][0], "/enforcer");
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.revision"],
            inputs().revision
        );

        // The layer is the binary alone, executable.
        let layer_files = entries(layer, 1_700_000_000);
        assert_eq!(layer_files.keys().collect::<Vec<_>>(), ["enforcer"]);
        assert!(layer_files["enforcer"] == inputs().binary);

        // Any input change changes the digest.
        let later = build(&Inputs {
            epoch: 1_700_000_001,
            ..inputs()
        })
        .unwrap();
        assert_ne!(later.manifest_digest, a.manifest_digest);
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }

    #[test]
    fn interpreter_detection() {
        let this = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // The test binary is an ordinary dynamically linked executable.
        assert!(has_interpreter(&this).unwrap());
        assert!(has_interpreter(b"not an elf").is_err());
    }
}

//! Installs what a fresh machine lacks, idempotently, and in seconds when all is present:
//! the nightly toolchain's rust-src, bpf-linker built against the nightly's own LLVM,
//! cargo-fuzz for the fuzz targets, and the Debian packages the tests and benchmarks use.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::cmd::{self, cargo_bin_dir, command, output};

/// Debian packages the tests and benchmarks use as independent observers and load.
pub const PACKAGES: &[&str] = &[
    "iproute2",
    "iperf3",
    "stress-ng",
    "bpftool",
    "iputils-ping",
    // promtool and amtool: the alerting rules, their unit tests and the dashboard queries
    // are checked with Prometheus's own tools (tests/tests/alert_rules.rs).
    "prometheus",
    "prometheus-alertmanager",
    // The DaemonSet run for real (tests/tests/daemonset.rs): a private containerd and runc,
    // busybox-static for the sandbox (pause) image, protoc for k8s-cri's build script.
    "containerd",
    "runc",
    "busybox-static",
    "protobuf-compiler",
    // systemd-analyze verify on deploy/enforcer.service (tests/tests/manifests.rs); installing
    // it changes no PID 1 and starts nothing where systemd is not the init.
    "systemd",
    // The VM matrix (xtask/src/vm): curl fetches Debian's indexes and kernel packages, xz
    // unpacks the indexes, depmod (kmod) indexes an unpacked kernel's modules.
    "curl",
    "xz-utils",
    "kmod",
];

/// kubernetes-validate (PyPI) releases, each in its own directory
/// (`~/.cache/enforcer/kubernetes-validate-<release>`, run with `PYTHONPATH` set to it), and
/// the Kubernetes versions the manifests are validated against with it: no single release
/// carries both SPEC's oldest (1.19: up to 1.24.1) and a current one (1.25 on).
pub const KUBERNETES_VALIDATE: &[(&str, &[&str])] =
    &[("1.24.1", &["1.19.0"]), ("1.37.0", &["1.31.0", "1.37.0"])];

/// The cargo-fuzz that `cargo xtask test` runs the fuzz targets with.
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub struct Setup {
    pub packages: bool,
    /// cargo-fuzz (the test suite's fuzz step; a build or a run does without).
    pub fuzz: bool,
}

pub fn run(what: Setup) -> anyhow::Result<()> {
    let sysroot = nightly_rust_src()?;
    bpf_linker(&sysroot)?;
    if what.fuzz {
        cargo_fuzz()?;
    }
    if what.packages {
        debian_packages()?;
        kubernetes_validate()?;
    }
    Ok(())
}

/// Each release of [`KUBERNETES_VALIDATE`] with pip, unless its directory already has it.
fn kubernetes_validate() -> anyhow::Result<()> {
    for (release, _) in KUBERNETES_VALIDATE {
        let dir = cmd::home()
            .join(".cache/enforcer")
            .join(format!("kubernetes-validate-{release}"));
        if dir
            .join(format!("kubernetes_validate-{release}.dist-info"))
            .is_dir()
        {
            println!("setup: kubernetes-validate {release} ok");
            continue;
        }
        println!("setup: installing kubernetes-validate {release} (pip, about 20 s)");
        let mut c = command("python3");
        c.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--upgrade",
            "--target",
        ])
        .arg(&dir)
        .arg(format!("kubernetes-validate=={release}"))
        .env("PIP_ROOT_USER_ACTION", "ignore");
        cmd::run(c).context("pip install kubernetes-validate (python3 with pip is needed)")?;
    }
    Ok(())
}

/// cargo-fuzz from crates.io, at [`CARGO_FUZZ_VERSION`]; `cargo install --list` says
/// whether it is there already (the binary alone could be another version).
fn cargo_fuzz() -> anyhow::Result<()> {
    let wanted = format!("cargo-fuzz v{CARGO_FUZZ_VERSION}:");
    let listed = output({
        let mut c = command("cargo");
        c.args(["install", "--list"]);
        c
    });
    let binary = cargo_bin_dir().join("cargo-fuzz");
    if binary.is_file() && listed.is_some_and(|l| l.lines().any(|l| l.trim() == wanted)) {
        println!("setup: cargo-fuzz ok ({CARGO_FUZZ_VERSION})");
        return Ok(());
    }
    println!("setup: installing cargo-fuzz {CARGO_FUZZ_VERSION} (about two minutes)");
    let mut c = command("cargo");
    c.args(["install", "--locked", "--force", "cargo-fuzz", "--version"])
        .arg(CARGO_FUZZ_VERSION);
    cmd::run(c)
}

fn rustup() -> std::process::Command {
    command("rustup")
}

/// The nightly toolchain with rust-src (`-Z build-std=core` for the bpf target). Returns
/// the nightly sysroot.
fn nightly_rust_src() -> anyhow::Result<PathBuf> {
    let sysroot = || {
        let mut c = rustup();
        c.args(["run", "nightly", "rustc", "--print", "sysroot"]);
        output(c).map(|s| PathBuf::from(s.trim()))
    };
    let sysroot = match sysroot() {
        Some(s) => s,
        None => {
            println!("setup: installing the nightly toolchain");
            let mut c = rustup();
            c.args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]);
            cmd::run(c)?;
            sysroot().context("nightly toolchain still missing after install")?
        }
    };
    let core = sysroot.join("lib/rustlib/src/rust/library/core");
    if core.is_dir() {
        println!("setup: nightly rust-src ok");
    } else {
        println!("setup: installing rust-src for nightly");
        let mut c = rustup();
        c.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
        cmd::run(c)?;
    }
    Ok(sysroot)
}

/// `rustc +nightly -vV` line `name: value`.
fn nightly_version_field(name: &str) -> anyhow::Result<String> {
    let mut c = rustup();
    c.args(["run", "nightly", "rustc", "-vV"]);
    let text = output(c).context("`rustc +nightly -vV` failed")?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("`rustc +nightly -vV` has no `{name}` line"))
}

/// bpf-linker linked against the nightly's own libLLVM (no system LLVM of that major exists
/// here). Rebuilt when the nightly changes, since the libLLVM it links to changes with it.
fn bpf_linker(sysroot: &Path) -> anyhow::Result<()> {
    let llvm = nightly_version_field("LLVM version")?;
    let major = llvm.split('.').next().unwrap_or_default().to_string();
    let commit = nightly_version_field("commit-hash").unwrap_or_else(|_| llvm.clone());
    let prefix = cmd::home()
        .join(".cache/enforcer")
        .join(format!("llvm-{major}"));
    let marker = prefix.join("bpf-linker.built-for");
    let linker = cargo_bin_dir().join("bpf-linker");
    let works = output({
        let mut c = command(&linker);
        c.arg("--version");
        c
    })
    .is_some();
    if works && std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == commit) {
        println!("setup: bpf-linker ok (LLVM {major})");
        return Ok(());
    }

    println!("setup: building bpf-linker against the nightly's LLVM {major} (about 2 minutes)");
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let llvm_lib = sysroot.join("lib");
    let mut soname = None;
    for entry in
        std::fs::read_dir(&llvm_lib).with_context(|| format!("reading {}", llvm_lib.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("libLLVM") && name.contains(".so") {
            let link = lib.join(&name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(entry.path(), &link)?;
            if name.starts_with("libLLVM.so.") {
                soname = Some(entry.path());
            }
        }
    }
    let Some(soname) = soname else {
        bail!(
            "no libLLVM.so.* in {}: cannot build bpf-linker",
            llvm_lib.display()
        );
    };
    let plain = lib.join("libLLVM.so");
    let _ = std::fs::remove_file(&plain);
    std::os::unix::fs::symlink(soname, &plain)?;

    let mut c = command("cargo");
    c.args([
        "install",
        "--force",
        "bpf-linker",
        "--no-default-features",
        "--features",
    ])
    .arg(format!("llvm-{major}"))
    .env("LLVM_PREFIX", &prefix);
    cmd::run(c)?;
    std::fs::write(&marker, &commit)?;
    println!("setup: bpf-linker built");
    Ok(())
}

fn installed(package: &str) -> bool {
    let mut c = command("dpkg-query");
    c.args(["-W", "-f=${Status}", package]);
    output(c).is_some_and(|s| s.contains("install ok installed"))
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("setup: Debian packages ok ({})", PACKAGES.join(", "));
        return Ok(());
    }
    if !cmd::is_root() {
        bail!(
            "Debian packages missing ({}) and not root: run as root",
            missing.join(", ")
        );
    }
    println!("setup: installing {}", missing.join(", "));
    let mut update = command("apt-get");
    update.arg("update").arg("-q");
    cmd::run(update)?;
    let mut install = command("apt-get");
    install
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    cmd::run(install)
}

//! qemu for the VM matrix. Debian bookworm's `qemu-system-x86` would remove the machine's
//! newer `qemu-utils` (a bookworm-backports build), so the system emulator is installed
//! from the suite and at the version `qemu-utils` came from, with the seabios it needs.

use anyhow::{Context, bail};

use crate::cmd::{self, command};

const MIRROR: &str = "http://deb.debian.org/debian";

/// Installs qemu-system-x86 (and busybox-static for the initramfs) if missing.
pub fn ensure() -> anyhow::Result<()> {
    let has = |bin: &str| {
        command(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has("qemu-system-x86_64") && std::path::Path::new("/bin/busybox").is_file() {
        println!("setup: qemu-system-x86 ok");
        return Ok(());
    }
    let mut policy = command("dpkg-query");
    policy.args(["-W", "-f=${Version}", "qemu-utils"]);
    let utils = cmd::output(policy).unwrap_or_default();
    let mut debs = Vec::new();
    if utils.contains("bpo12") {
        // The backports build: its qemu-system-x86, -common, -data and seabios, by URL.
        let dir = std::env::temp_dir().join("enforcer-qemu-debs");
        std::fs::create_dir_all(&dir)?;
        let index = dir.join("Packages.xz");
        let mut fetch = command("curl");
        fetch
            .args(["-fsS", "--retry", "3", "-o"])
            .arg(&index)
            .arg(format!(
                "{MIRROR}/dists/bookworm-backports/main/binary-amd64/Packages.xz"
            ));
        cmd::run(fetch)?;
        let mut xz = command("xz");
        xz.arg("-dc").arg(&index);
        let text = cmd::output(xz).context("reading the bookworm-backports index")?;
        for (name, version) in [
            ("qemu-system-x86", Some(utils.as_str())),
            ("qemu-system-common", Some(utils.as_str())),
            ("qemu-system-data", Some(utils.as_str())),
            ("seabios", None),
        ] {
            let filename = text
                .split("\n\n")
                .filter(|s| s.lines().any(|l| l == format!("Package: {name}")))
                .filter(|s| version.is_none_or(|v| s.lines().any(|l| l == format!("Version: {v}"))))
                .find_map(|s| s.lines().find_map(|l| l.strip_prefix("Filename: ")))
                .with_context(|| format!("{name} {version:?} not in bookworm-backports"))?;
            let deb = dir.join(filename.rsplit('/').next().unwrap_or(name));
            let mut get = command("curl");
            get.args(["-fsS", "--retry", "3", "-o"])
                .arg(&deb)
                .arg(format!("{MIRROR}/{filename}"));
            cmd::run(get)?;
            debs.push(deb);
        }
    }
    println!("setup: installing qemu-system-x86 {utils} and busybox-static");
    let mut apt = command("apt-get");
    apt.env("DEBIAN_FRONTEND", "noninteractive").args([
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "busybox-static",
    ]);
    if debs.is_empty() {
        apt.arg("qemu-system-x86");
    } else {
        apt.args(&debs);
    }
    cmd::run(apt)?;
    if !has("qemu-system-x86_64") {
        bail!("qemu-system-x86_64 still missing after the install");
    }
    Ok(())
}

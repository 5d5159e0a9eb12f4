//! One boot: qemu with the host's root shared read-only and a writable folder for the
//! command, its output and its exit code; a guest that does not power off within the bound
//! is killed and reported.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use super::kernel::Kernel;
use crate::cmd::command;

/// The cgroup layout a guest mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// cgroup2 only, every controller in the unified hierarchy (`cgroup_no_v1=all`).
    V2,
    /// Each controller on its own v1 hierarchy, no cgroup2.
    V1,
    /// v1 controllers plus a controller-less cgroup2 at /sys/fs/cgroup/unified.
    Hybrid,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::V2 => "v2",
            Layout::V1 => "v1",
            Layout::Hybrid => "hybrid",
        }
    }
}

/// Hardware virtualisation usable for a stock kernel: a real KVM module, not the PVM-only
/// one of a machine that is itself a VM.
fn kvm_usable() -> bool {
    let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    Path::new("/dev/kvm").exists()
        && modules
            .lines()
            .any(|l| l.starts_with("kvm_intel ") || l.starts_with("kvm_amd "))
}

/// What one boot gave.
#[derive(Debug)]
pub struct Boot {
    /// The command's exit code; None when the guest never wrote one (hung, crashed, failed
    /// to boot).
    pub exit_code: Option<i32>,
    pub took: Duration,
    pub timed_out: bool,
}

/// Boots `kernel` with `initramfs`, mounting `layout`, and runs `command` (a shell line)
/// in `cwd` inside the guest; the console streams to this process's stdout.
pub fn boot(
    kernel: &Kernel,
    initramfs: &Path,
    layout: Layout,
    command_line: &str,
    cwd: &Path,
    share: &Path,
    bound: Duration,
) -> anyhow::Result<Boot> {
    let _ = std::fs::remove_dir_all(share);
    std::fs::create_dir_all(share)?;
    std::fs::write(share.join("guest.sh"), include_str!("guest.sh"))?;
    std::fs::write(share.join("cmd"), command_line)?;
    std::fs::write(share.join("cwd"), cwd.to_string_lossy().as_bytes())?;
    // The guest kernel's own module tree (in the cache, which the guest sees through the
    // shared root): bound over the guest's /lib/modules/<release> so that `modprobe` of
    // sch_htb, cls_bpf, veth, macvlan… loads the guest's modules, not the host's.
    let modules = kernel
        .module_base()
        .join("lib/modules")
        .join(&kernel.release);
    std::fs::write(share.join("modules"), modules.to_string_lossy().as_bytes())?;
    let mut append = String::from("console=ttyS0 panic=-1 quiet rdinit=/init");
    if layout == Layout::V2 {
        append.push_str(" cgroup_no_v1=all");
    }
    append.push_str(&format!(" enforcer.cgroup={}", layout.name()));
    let mut q = command("qemu-system-x86_64");
    if kvm_usable() {
        q.args(["-accel", "kvm", "-cpu", "host"]);
    } else {
        // TCG: about 15x slower than native for CPU-bound work; fine for functional tests.
        q.args(["-accel", "tcg,thread=multi", "-cpu", "max,-la57"]);
    }
    q.args(["-smp", "2", "-m", "2G", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(kernel.vmlinuz())
        .arg("-initrd")
        .arg(initramfs)
        .arg("-append")
        .arg(&append)
        .arg("-virtfs")
        .arg("local,path=/,mount_tag=hostroot,readonly=on,security_model=none,multidevs=remap")
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=out,security_model=none",
            share.display()
        ))
        .stdin(Stdio::null());
    let started = Instant::now();
    let mut child = q.spawn().context("cannot start qemu-system-x86_64")?;
    let timed_out = loop {
        if child.try_wait()?.is_some() {
            break false;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let exit_code = std::fs::read_to_string(share.join("exit-code"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    Ok(Boot {
        exit_code,
        took: started.elapsed(),
        timed_out,
    })
}

/// The writable folder of one boot.
pub fn share_dir(cache: &Path, kernel: &Kernel, layout: Layout) -> PathBuf {
    cache
        .join("runs")
        .join(format!("{}-{}", kernel.release, layout.name()))
}

/// Fails unless qemu is there (`cargo xtask setup` installs it).
pub fn require_qemu() -> anyhow::Result<()> {
    if command("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("qemu-system-x86_64 missing: run `cargo xtask setup`");
    }
    Ok(())
}

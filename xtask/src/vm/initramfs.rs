//! The guest's initramfs: Debian's static busybox, the kernel's 9p/overlay modules
//! (decompressed: busybox's insmod reads plain .ko files) in load order, and `init.sh`,
//! which mounts the host's root read-only over 9p with a tmpfs overlay and chroots into
//! it to run `guest.sh` from the shared folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::kernel::Kernel;
use crate::cmd::{self, command};

/// The modules the guest needs before it can reach the host's files (each only when the
/// kernel does not have it built in: virtio_pci is a module on 6.1, built in on 6.12).
const MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

const BUSYBOX: &str = "/bin/busybox";

/// The initramfs of `kernel`, built once into the cache.
pub fn ensure(kernel: &Kernel, cache: &Path) -> anyhow::Result<PathBuf> {
    let out = cache
        .join("initramfs")
        .join(format!("{}.cpio.gz", kernel.release));
    let init = include_str!("init.sh");
    // What the archive was built from: rebuilt when the script or the module list changes.
    let recipe = format!("{init}\n{MODULES:?}");
    let stamp = out.with_extension("recipe");
    if out.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == recipe) {
        return Ok(out);
    }
    if !Path::new(BUSYBOX).is_file() {
        bail!("{BUSYBOX} missing: install the Debian package busybox-static (cargo xtask setup)");
    }
    let dir = cache.join("initramfs").join(&kernel.release);
    let _ = std::fs::remove_dir_all(&dir);
    for d in [
        "bin", "modules", "proc", "sys", "dev", "lower", "upper", "newroot", "out",
    ] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    std::fs::copy(BUSYBOX, dir.join("bin/busybox")).context("copying busybox")?;
    let mut order = Vec::<String>::new();
    for module in MODULES {
        let mut c = command("modprobe");
        c.arg("-d").arg(kernel.module_base()).args([
            "-S",
            &kernel.release,
            "--show-depends",
            module,
        ]);
        // Without modules.builtin (Debian's 7.x packages ship none) modprobe cannot say
        // "builtin": a module it cannot find is taken as built in, and a guest that lacks
        // it after all says so when it cannot mount the host's root.
        let Some(deps) = cmd::output(c) else {
            println!(
                "vm: {module} is no module of {}: taken as built in",
                kernel.release
            );
            continue;
        };
        for line in deps.lines() {
            let Some(path) = line.strip_prefix("insmod ") else {
                continue; // builtin
            };
            let path = Path::new(path.trim());
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .context("module file name")?;
            let plain = name
                .trim_end_matches(".xz")
                .trim_end_matches(".zst")
                .to_string();
            if order.contains(&plain) {
                continue;
            }
            let target = dir.join("modules").join(&plain);
            if name.ends_with(".xz") || name.ends_with(".zst") {
                let mut x = command(if name.ends_with(".xz") { "xz" } else { "zstd" });
                x.arg("-dc").arg(path);
                let bytes = x.output().context("decompressing a module")?;
                if !bytes.status.success() {
                    bail!("cannot decompress {}", path.display());
                }
                std::fs::write(&target, bytes.stdout)?;
            } else {
                std::fs::copy(path, &target)?;
            }
            order.push(plain);
        }
    }
    std::fs::write(dir.join("modules/order"), order.join("\n") + "\n")?;
    let init_path = dir.join("init");
    std::fs::write(&init_path, init)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init_path, std::fs::Permissions::from_mode(0o755))?;
    // busybox's cpio writes the newc archive the kernel unpacks.
    let mut sh = command("sh");
    sh.current_dir(&dir).arg("-c").arg(format!(
        "find . | {BUSYBOX} cpio -o -H newc 2>/dev/null | gzip -1 > {}",
        out.display()
    ));
    cmd::run(sh)?;
    std::fs::write(&stamp, recipe)?;
    Ok(out)
}

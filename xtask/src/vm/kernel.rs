//! Debian kernels for the VM matrix: found in a suite's package index, downloaded once into
//! the cache (never into the host's /boot), unpacked with `dpkg -x` and `depmod`ed there.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::cmd::{self, command};

const MIRROR: &str = "http://deb.debian.org/debian";

/// A kernel the matrix can boot, by the name the command line takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSpec {
    /// `6.1`, `6.12`, `newest`.
    pub name: &'static str,
    /// The Debian suite that carries it.
    pub suite: &'static str,
    /// The `major.minor` wanted; None: the highest in the suite.
    pub series: Option<&'static str>,
}

/// The matrix's kernels: the oldest the fleet runs (bookworm), trixie's LTS, and sid's
/// newest.
pub const KERNELS: &[KernelSpec] = &[
    KernelSpec {
        name: "6.1",
        suite: "bookworm",
        series: Some("6.1"),
    },
    KernelSpec {
        name: "6.12",
        suite: "trixie",
        series: Some("6.12"),
    },
    KernelSpec {
        name: "newest",
        suite: "sid",
        series: None,
    },
];

/// An unpacked kernel in the cache.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `uname -r` of it, e.g. `6.12.117+deb13-amd64`.
    pub release: String,
    /// The folder `dpkg -x` unpacked into.
    pub root: PathBuf,
}

impl Kernel {
    /// `/boot/vmlinuz-<release>` up to 6.x; from Debian's 7.x packages on, the kernel is
    /// `/usr/lib/modules/<release>/vmlinuz`.
    pub fn vmlinuz(&self) -> PathBuf {
        let boot = self
            .root
            .join("boot")
            .join(format!("vmlinuz-{}", self.release));
        if boot.exists() {
            return boot;
        }
        self.module_base()
            .join("lib/modules")
            .join(&self.release)
            .join("vmlinuz")
    }

    /// The module tree's base for `modprobe -d`: Debian ships modules in /usr/lib/modules
    /// from trixie on, in /lib/modules before.
    pub fn module_base(&self) -> PathBuf {
        if self.root.join("usr/lib/modules").is_dir() {
            self.root.join("usr")
        } else {
            self.root.clone()
        }
    }
}

/// One package of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub filename: String,
    /// The packages of the same release the image needs unpacked beside it: from Debian
    /// 7.x on the image is split into `linux-binary-*` (the kernel) and `linux-modules-*`.
    pub parts: Vec<String>,
}

/// Every stanza of an index by package name (the first of each name).
fn stanzas(index: &str) -> impl Iterator<Item = (&str, &str)> {
    index.split("\n\n").filter_map(|s| {
        let name = s.lines().find_map(|l| l.strip_prefix("Package: "))?;
        Some((name, s))
    })
}

fn field(stanza: &str, name: &str) -> Option<String> {
    stanza
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .map(str::to_string)
}

/// The generic amd64 kernel images of a `Packages` index (not cloud, rt, dbg, unsigned).
pub fn kernel_images(index: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for (name, stanza) in stanzas(index) {
        let (Some(version), Some(filename)) = (field(stanza, "Version"), field(stanza, "Filename"))
        else {
            continue;
        };
        let Some(rest) = name.strip_prefix("linux-image-") else {
            continue;
        };
        let Some(release) = rest.strip_suffix("-amd64") else {
            continue;
        };
        // 6.1.0-41 or 6.12.117+deb13: digits, dots, one dash or plus part; no flavour.
        let generic = release.starts_with(|c: char| c.is_ascii_digit())
            && !release.contains("cloud")
            && !release.contains("-rt")
            && release
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c))
            && !release.ends_with("-unsigned");
        if !generic {
            continue;
        }
        let parts = field(stanza, "Depends")
            .unwrap_or_default()
            .split(',')
            .filter_map(|d| d.split_whitespace().next())
            .filter(|d| {
                *d == format!("linux-binary-{rest}") || *d == format!("linux-modules-{rest}")
            })
            .map(str::to_string)
            .collect();
        out.push(Package {
            name: name.to_string(),
            version,
            filename,
            parts,
        });
    }
    out
}

/// `major.minor` of a kernel package's version (`6.12.117-1` → `6.12`).
fn series(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// Compares Debian kernel versions numerically, part by part (enough for these: digits
/// separated by `.`, `-`, `+`, `~`).
fn version_key(version: &str) -> Vec<u64> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

/// The package `spec` picks from `images`: the highest version of its series.
pub fn pick(spec: &KernelSpec, images: &[Package]) -> Option<Package> {
    images
        .iter()
        .filter(|p| spec.series.is_none_or(|s| series(&p.version) == s))
        .max_by_key(|p| version_key(&p.version))
        .cloned()
}

fn fetch(url: &str, to: &Path) -> anyhow::Result<()> {
    let mut c = command("curl");
    c.args(["-fsS", "--retry", "3", "-o"]).arg(to).arg(url);
    cmd::run(c).with_context(|| format!("cannot download {url}"))
}

/// The kernel of `spec`, from the cache or downloaded into it.
pub fn ensure(spec: &KernelSpec, cache: &Path) -> anyhow::Result<Kernel> {
    let dir = cache.join("kernels");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let index_xz = dir.join(format!("{}.Packages.xz", spec.suite));
    // The index is refetched once a day: kernels are updated, old ones vanish from it.
    let fresh = std::fs::metadata(&index_xz)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|e| e.as_secs() < 86_400));
    if !fresh {
        fetch(
            &format!(
                "{MIRROR}/dists/{}/main/binary-amd64/Packages.xz",
                spec.suite
            ),
            &index_xz,
        )?;
    }
    let mut xz = command("xz");
    xz.arg("-dc").arg(&index_xz);
    let index = cmd::output(xz).context("cannot read the package index")?;
    let images = kernel_images(&index);
    let Some(pkg) = pick(spec, &images) else {
        bail!(
            "no linux-image for kernel {} in Debian {} ({} images listed)",
            spec.name,
            spec.suite,
            images.len()
        );
    };
    let release = pkg
        .name
        .strip_prefix("linux-image-")
        .expect("filtered")
        .to_string();
    let root = dir.join(&release);
    let kernel = Kernel { release, root };
    let done = kernel.root.join(".unpacked");
    if done.exists() {
        return Ok(kernel);
    }
    let _ = std::fs::remove_dir_all(&kernel.root);
    let mut files = vec![(pkg.name.clone(), pkg.filename.clone())];
    for part in &pkg.parts {
        let filename = stanzas(&index)
            .find(|(name, s)| name == part && field(s, "Version").as_ref() == Some(&pkg.version))
            .and_then(|(_, s)| field(s, "Filename"))
            .with_context(|| format!("{part} {} not in Debian {}", pkg.version, spec.suite))?;
        files.push((part.clone(), filename));
    }
    for (name, filename) in files {
        let deb = dir.join(format!("{name}.deb"));
        println!("vm: downloading {name} {}", pkg.version);
        fetch(&format!("{MIRROR}/{filename}"), &deb)?;
        let mut x = command("dpkg");
        x.arg("-x").arg(&deb).arg(&kernel.root);
        cmd::run(x)?;
        std::fs::remove_file(&deb).ok();
    }
    let mut d = command("depmod");
    d.arg("-b").arg(kernel.module_base()).arg(&kernel.release);
    cmd::run(d)?;
    std::fs::write(&done, &pkg.version)?;
    Ok(kernel)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "\
Package: linux-image-6.12.107+deb13-amd64
Version: 6.12.107-1
Filename: pool/main/l/linux-signed-amd64/linux-image-6.12.107+deb13-amd64_6.12.107-1_amd64.deb

Package: linux-image-6.12.117+deb13-cloud-amd64
Version: 6.12.117-1
Filename: pool/x-cloud.deb

Package: linux-image-6.12.117+deb13-amd64
Version: 6.12.117-1
Filename: pool/main/l/linux-signed-amd64/linux-image-6.12.117+deb13-amd64_6.12.117-1_amd64.deb

Package: linux-image-6.12.117+deb13-rt-amd64
Version: 6.12.117-1
Filename: pool/x-rt.deb

Package: linux-image-amd64
Version: 6.12.117-1
Filename: pool/meta.deb

Package: linux-image-6.16.3+deb13-amd64
Version: 6.16.3-1~bpo13+1
Depends: linux-base, linux-binary-6.16.3+deb13-amd64 (= 6.16.3-1~bpo13+1), linux-modules-6.16.3+deb13-amd64 (= 6.16.3-1~bpo13+1)
Filename: pool/616.deb
";

    #[test]
    fn the_generic_image_of_the_wanted_series_is_picked() {
        let images = kernel_images(INDEX);
        let names: Vec<&str> = images.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "linux-image-6.12.107+deb13-amd64",
                "linux-image-6.12.117+deb13-amd64",
                "linux-image-6.16.3+deb13-amd64"
            ]
        );
        let spec = KernelSpec {
            name: "6.12",
            suite: "trixie",
            series: Some("6.12"),
        };
        assert_eq!(
            pick(&spec, &images).unwrap().name,
            "linux-image-6.12.117+deb13-amd64"
        );
        let newest = KernelSpec {
            series: None,
            ..spec
        };
        let newest = pick(&newest, &images).unwrap();
        assert_eq!(newest.filename, "pool/616.deb");
        assert_eq!(
            newest.parts,
            [
                "linux-binary-6.16.3+deb13-amd64",
                "linux-modules-6.16.3+deb13-amd64"
            ]
        );
        assert!(images[0].parts.is_empty());
    }
}

//! Builds the kernel programs (`enforcer-ebpf`) with the nightly toolchain through
//! `aya-build`, so that a plain `cargo build` produces one self-contained binary.
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../enforcer-ebpf");
    aya_build::build_ebpf(
        [Package {
            name: "enforcer-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}

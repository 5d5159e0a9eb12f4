//! Builds the kernel programs (`enforcer-ebpf`) with the nightly toolchain through
//! `aya-build`, so that a plain `cargo build` produces one self-contained binary.
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    // aya-build relays every line the nested cargo prints on stderr as a cargo warning, so
    // its progress ("Compiling core ...", about forty lines) looked like forty warnings on
    // every clean build and drowned the real ones. A quiet nested cargo prints no progress;
    // compiler diagnostics still come through its JSON messages, and errors still show.
    // SAFETY: the build script is single-threaded here; the nested cargo inherits it.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
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

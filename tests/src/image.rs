//! `cargo xtask image`, as an operator runs it, for the tests that need the image.

use std::{path::PathBuf, process::Command};

use crate::alerting::workspace;

/// What `cargo xtask image` wrote: the archive and the image's digest.
pub struct BuiltImage {
    pub archive: PathBuf,
    pub digest: String,
}

/// Runs `cargo xtask image` in the workspace; panics with its output when it fails.
pub fn build_image() -> BuiltImage {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["xtask", "image"])
        .current_dir(workspace())
        .output()
        .expect("run cargo xtask image");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo xtask image failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("cargo xtask image printed no {name}\n{stdout}"))
            .to_string()
    };
    BuiltImage {
        archive: PathBuf::from(field("archive:")),
        digest: field("digest:"),
    }
}

//! The image is reproducible: the same commit gives the same digest. `cargo xtask image`
//! builds the static binary (and the kernel object it embeds) and writes the archive; then
//! the enforcer package's artifacts of that build are removed, so the second run compiles
//! the crate and its eBPF object again from the same sources, and the archive is written
//! again: the same bytes, hence the same digest, or the test names what differs.

use std::process::Command;

use enforcer_tests::{alerting::workspace, image::build_image};

#[test]
fn the_same_commit_builds_the_same_image_twice() {
    let first = build_image();
    let bytes = std::fs::read(&first.archive).expect("read the first archive");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let clean = Command::new(cargo)
        .args(["clean", "--release", "--target", "x86_64-unknown-linux-gnu"])
        .args(["-p", "enforcer"])
        .current_dir(workspace())
        .output()
        .expect("run cargo clean");
    assert!(
        clean.status.success(),
        "cargo clean failed: {}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let binary = workspace().join("target/x86_64-unknown-linux-gnu/release/enforcer");
    assert!(
        !binary.exists(),
        "{} survived the clean: the second build would not compile it again",
        binary.display()
    );
    let second = build_image();
    let again = std::fs::read(&second.archive).expect("read the second archive");
    assert_eq!(
        first.digest,
        second.digest,
        "two builds of the same commit: archives of {} and {} bytes, first difference at byte {:?}",
        bytes.len(),
        again.len(),
        bytes.iter().zip(&again).position(|(a, b)| a != b)
    );
    assert_eq!(bytes, again, "same digest, different archive bytes");
    println!("image digest, built twice from scratch: {}", first.digest);
}

use which::which;

/// Rebuild the kernel programs when bpf-linker changes: cargo cannot see that dependency,
/// because the linker is found on PATH (the aya-template pattern).
fn main() {
    let bpf_linker = which("bpf-linker").expect(
        "bpf-linker not found on PATH: run `cargo xtask setup` (it builds bpf-linker against the nightly's LLVM)",
    );
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
}

// Empty library target so that `enforcer` can name this crate as a build-dependency (the
// aya-template pattern); the programs are the binary in main.rs.
#![no_std]

//! Kernel sampling: loading the eBPF programs and reading their maps; file system usage.

pub mod batch;
pub mod btf;
pub mod cgroups;
pub mod cpu;
pub mod error;
pub mod filesystem;
pub mod kmsg;
pub mod memory;
pub mod net;
pub mod own;
pub mod poll;
pub mod programs;
pub mod psi;
pub mod reclaim;
pub mod ring;

//! What can go wrong loading the programs and reading their maps, shared by the loader
//! and every sampler.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SamplerError {
    #[error(transparent)]
    Btf(#[from] super::btf::BtfError),
    #[error("loading eBPF object: {0}")]
    Object(String),
    #[error("eBPF map or program {0} missing from the object")]
    Missing(&'static str),
    #[error("eBPF program {program}: {detail}")]
    Program {
        program: &'static str,
        detail: String,
    },
    #[error("reading eBPF map {map}: {source}")]
    Read {
        map: &'static str,
        source: std::io::Error,
    },
    #[error("writing eBPF map {map}: {source}")]
    Write {
        map: &'static str,
        source: std::io::Error,
    },
    #[error("the network programs are not loaded (ProgramOptions::network is None)")]
    NetworkDisabled,
}

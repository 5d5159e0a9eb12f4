//! Traffic control over netlink: encoding ([`codec`]) and the per-namespace client
//! ([`client`]) that dumps what is installed and applies changes. Never the `tc` binary.

pub mod client;
pub mod codec;
mod decode;
mod htb;
mod owned;
pub mod reconcile;

pub use decode::{Dumped, QdiscInfo, decode_dump};

//! The node's Kubernetes Node object, an effect target outside the process like the kernel:
//! while the scheduling gate is closed the Node carries a `NoSchedule` taint and the
//! condition `EnforcerOfflineClosed`, and the offline capacity (SPEC §2) is published as
//! annotations, for the schedulers that read Kubernetes rather than the gate's state file.
//!
//! `patch` builds the exact patches from (desired state, the Node as last read), pure;
//! `publisher` sends them from a thread of its own (`worker`, counting in `stats`), so the tick never waits for the API
//! server. Only the choke point ([`super::Actuator`]) hands it the gate; the daemon hands
//! it the capacity through the choke point too.

mod options;
pub mod patch;
mod publisher;
mod stats;
mod worker;

pub use options::{KubeError, PublisherOptions};
pub use patch::{CONDITION_TYPE, CPU_ANNOTATION, Desired, GateState, MEMORY_ANNOTATION};
pub use publisher::Publisher;
pub use stats::{PublisherStats, PublisherStatus};

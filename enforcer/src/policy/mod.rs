//! Pure computations over samples: signals in, figures out, time injected. Nothing here
//! touches the kernel, so all of it is unit-tested exhaustively.

pub mod bandwidth;
pub mod billing;
pub mod capacity;
pub mod ladder;
pub mod shaping;
pub mod usage;
pub mod window;

//! What operators and other systems see: Prometheus metrics, the control socket the CLI
//! talks to, and the CLI's renderings.

pub mod cli;
pub mod control;
pub mod http;
pub mod metrics;
pub mod netcli;
pub mod snapshot;
pub mod top;

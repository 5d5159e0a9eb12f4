//! What operators and other systems see: Prometheus metrics, the control socket the CLI
//! talks to, and the CLI's renderings (`cli`, one module per subcommand).

pub mod cli;
pub mod control;
pub mod http;
pub mod metrics;
mod netmetrics;
pub mod snapshot;

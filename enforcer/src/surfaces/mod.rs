//! What operators and other systems see: the wire schema (`snapshot`), Prometheus metrics
//! (`metrics`, one module per domain), the control socket the CLI talks to, and the CLI's
//! renderings (`cli`, one module per subcommand).

pub mod cli;
pub mod control;
pub mod health;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod snapshot;

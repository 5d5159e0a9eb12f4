//! The binary's subcommands: the clap definitions here, one module per subcommand holding
//! its handler (fetch from the control socket or a file, render with the library's
//! [`enforcer::surfaces::cli`], print text or `--output json`).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub mod cgroups;
pub mod config;
pub mod explain;
pub mod journal;
pub mod pods;
pub mod run;
pub mod status;
pub mod tc;
pub mod top;
pub mod usage;

#[derive(Parser)]
#[command(
    name = "enforcer",
    version,
    about = "Keeps online services safe on nodes shared with offline batch work"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum UsageOutput {
    Text,
    Json,
    Csv,
}

#[derive(clap::Args)]
pub struct Target {
    /// Control socket of the running daemon.
    #[arg(long, default_value = "/run/enforcer/enforcer.sock")]
    pub socket: PathBuf,
    #[arg(long, short, value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon: load the eBPF programs, sample, serve metrics and the control socket.
    Run {
        /// Configuration file (TOML); defaults apply when absent.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Decide and journal every action, apply none.
        #[arg(long)]
        dry_run: bool,
    },
    /// Node CPU, per-class usage and sampler health from the running daemon.
    Status(Target),
    /// Live per-cgroup CPU table from the running daemon (q or Ctrl-C to quit).
    Top {
        #[command(flatten)]
        target: Target,
        /// Refresh interval in seconds.
        #[arg(long, short = 'd', default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many refreshes.
        #[arg(long, short = 'n')]
        iterations: Option<u64>,
        /// Rows to show.
        #[arg(long, default_value_t = 30)]
        rows: usize,
    },
    /// Every cgroup the daemon knows: id, path, class, priority, the rule that matched.
    Cgroups(Target),
    /// Every pod the container runtime lists: class, priority, the rule that matched, CPU.
    Pods(Target),
    /// The protection ladder's current state and why, with the last actions.
    Explain(Target),
    /// The action journal (read from the file: works without a running daemon).
    Journal {
        /// Journal file (default: daemon.journal of --config, else the built-in default).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Configuration file naming the journal.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Only entries whose target contains this.
        #[arg(long)]
        target: Option<String>,
        /// Only this action (cpu_limit, memory_limit, freeze, thaw, kill, stop_scheduling, ...).
        #[arg(long)]
        action: Option<String>,
        /// Only the last N entries (after filtering).
        #[arg(long, short = 'n')]
        last: Option<usize>,
        #[arg(long, short, value_enum, default_value = "text")]
        output: Output,
    },
    /// Usage of the offline pods for billing, from the usage ledger (no daemon needed): per
    /// application (the operators' table), queue, namespace or pod, over a time range.
    Usage {
        /// Ledger file (default: daemon.usage_ledger of --config, else the built-in default).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Configuration file naming the ledger.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Rows per application, queue, namespace or pod.
        #[arg(long, value_enum, default_value = "application")]
        by: enforcer::surfaces::cli::usage::GroupBy,
        /// Only units alive at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Only units alive at or before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// text (a table), json, or csv (the operators' table's columns, loadable as is).
        #[arg(long, short, value_enum, default_value = "text")]
        output: UsageOutput,
    },
    /// Traffic control: what is installed on the bond and the offline subinterfaces, what
    /// the policy wants, and the difference.
    Tc {
        #[command(subcommand)]
        command: TcCommand,
    },
    /// Configuration file tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
pub enum TcCommand {
    /// Installed state, wanted state and the changes between them.
    Show(Target),
    /// Reconcile now (the daemon does so every second anyway).
    Apply {
        #[command(flatten)]
        target: Target,
        /// Show the changes without applying them.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file without running anything.
    Check { file: PathBuf },
}

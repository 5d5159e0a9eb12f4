//! The `enforcer` binary: the daemon (`enforcer run`) and the operator's CLI.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};
use enforcer::{
    config::Config,
    daemon,
    surfaces::{cli, control, top},
};

#[derive(Parser)]
#[command(
    name = "enforcer",
    version,
    about = "Keeps online services safe on nodes shared with offline batch work"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

#[derive(clap::Args)]
struct Target {
    /// Control socket of the running daemon.
    #[arg(long, default_value = "/run/enforcer/enforcer.sock")]
    socket: PathBuf,
    #[arg(long, short, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Subcommand)]
enum Command {
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
enum TcCommand {
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
enum ConfigCommand {
    /// Validate a configuration file without running anything.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, dry_run } => run(config, dry_run),
        Command::Status(t) => control::snapshot(&t.socket, Some(0))
            .map_err(Into::into)
            .map(|s| {
                if t.output == Output::Json {
                    println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                } else {
                    print!("{}", cli::render_status(&s));
                    print!("{}", enforcer::surfaces::netcli::render_status(&s.network));
                }
            }),
        Command::Cgroups(t) => control::snapshot(&t.socket, None)
            .map_err(Into::into)
            .map(|s| {
                if t.output == Output::Json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&s.cgroups).unwrap_or_default()
                    );
                } else {
                    print!("{}", cli::render_cgroup_table(&s.cgroups, false));
                }
            }),
        Command::Top {
            target,
            interval,
            iterations,
            rows,
        } => top::run(
            &target.socket,
            top::TopOptions {
                interval: Duration::from_secs_f64(interval.max(0.1)),
                iterations,
                rows,
                json: target.output == Output::Json,
            },
        )
        .map_err(Into::into),
        Command::Explain(t) => explain(&t),
        Command::Journal {
            file,
            config,
            target,
            action,
            last,
            output,
        } => journal(file, config, target, action, last, output),
        Command::Tc { command } => {
            let (t, req) = match command {
                TcCommand::Show(t) => (
                    t,
                    control::TcRequest {
                        apply: false,
                        dry_run: true,
                    },
                ),
                TcCommand::Apply { target, dry_run } => (
                    target,
                    control::TcRequest {
                        apply: true,
                        dry_run,
                    },
                ),
            };
            control::tc(&t.socket, req).map_err(Into::into).map(|r| {
                if t.output == Output::Json {
                    println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                } else {
                    print!("{}", enforcer::surfaces::netcli::render_tc(&r));
                }
            })
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => daemon::check_config(&file).map(|_| println!("{}: ok", file.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, naming what is wrong: the operator reads this at 3 a.m.
            eprintln!("enforcer: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(config_path: Option<PathBuf>, dry_run: bool) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match &config_path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    daemon::run(daemon::RunOptions {
        config,
        config_path,
        dry_run,
    })
}

fn journal_path(file: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match (file, config) {
        (Some(f), _) => f,
        (None, Some(c)) => Config::load(&c)?.daemon.journal,
        (None, None) => Config::default().daemon.journal,
    })
}

fn journal(
    file: Option<PathBuf>,
    config: Option<PathBuf>,
    target: Option<String>,
    action: Option<String>,
    last: Option<usize>,
    output: Output,
) -> anyhow::Result<()> {
    let path = journal_path(file, config)?;
    if !path.exists() {
        anyhow::bail!(
            "{}: no journal (no action was ever decided on this node)",
            path.display()
        );
    }
    let mut entries: Vec<_> = enforcer::actuators::journal::read(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .into_iter()
        .filter(|e| {
            target
                .as_ref()
                .is_none_or(|t| e.target.as_deref().is_some_and(|x| x.contains(t.as_str())))
        })
        .filter(|e| action.as_ref().is_none_or(|a| &e.action == a))
        .collect();
    if let Some(n) = last {
        entries.drain(..entries.len().saturating_sub(n));
    }
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        print!("{}", cli::render_journal(&entries));
    }
    Ok(())
}

fn explain(t: &Target) -> anyhow::Result<()> {
    let s = control::snapshot(&t.socket, Some(0))?;
    let recent = enforcer::actuators::journal::read(std::path::Path::new(&s.protection.journal))
        .map(|mut e| e.split_off(e.len().saturating_sub(5)))
        .unwrap_or_default();
    if t.output == Output::Json {
        let body = serde_json::json!({
            "protection": s.protection,
            "recent": recent,
            "node_cpu_utilisation": s.node_cpu_utilisation,
        });
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print!("{}", cli::render_explain(&s, &recent));
    }
    Ok(())
}

fn one_line(e: &anyhow::Error) -> String {
    enforcer::text::one_line(&format!("{e:#}"))
}

//! The `enforcer` binary: the daemon (`enforcer run`) and the operator's CLI.
//!
//! Layout: this file parses, dispatches and prints errors; [`command`] (`src/command/`)
//! holds the clap definitions and one module per subcommand with its handler (fetch from
//! the control socket or a file, print text or JSON); the text renderings live in the
//! library, in [`enforcer::surfaces::cli`] (one module per subcommand too), where unit
//! tests pin them without a daemon.
//!
//! Why `src/command/`, a module of this binary, and not a module of the library: argument
//! parsing stays out of the library (clap is the binary's business only). `src/bin/enforcer/`
//! would separate the trees as well; `src/main.rs` keeps the entry point where it has always
//! been, history included. The price: `src/command/` sits next to the library's modules yet
//! belongs to the binary's module tree only (`lib.rs` never declares it), so its handlers
//! reach the library through `enforcer::` paths, like any other crate.

use std::process::ExitCode;

use clap::Parser;

mod command;

use command::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, dry_run } => command::run::execute(config, dry_run),
        Command::Status(t) => command::status::execute(&t),
        Command::Cgroups(t) => command::cgroups::execute(&t),
        Command::Pods(t) => command::pods::execute(&t),
        Command::Top {
            target,
            interval,
            iterations,
            rows,
        } => command::top::execute(&target, interval, iterations, rows),
        Command::Explain(t) => command::explain::execute(&t),
        Command::Journal {
            file,
            config,
            target,
            action,
            last,
            output,
        } => command::journal::execute(file, config, target, action, last, output),
        Command::Usage {
            file,
            config,
            by,
            since,
            until,
            output,
        } => command::usage::execute(file, config, by, since, until, output),
        Command::Tc { command: tc } => command::tc::execute(tc),
        Command::Config { command: config } => command::config::execute(config),
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

fn one_line(e: &anyhow::Error) -> String {
    enforcer::text::one_line(&format!("{e:#}"))
}

//! `enforcer tc show` and `enforcer tc apply [--dry-run]`: the daemon's tc report.

use enforcer::surfaces::{cli::tc, control};

use super::{Output, TcCommand};

pub fn execute(command: TcCommand) -> anyhow::Result<()> {
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
    let r = control::tc(&t.socket, req)?;
    if t.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        print!("{}", tc::render_tc(&r));
    }
    Ok(())
}

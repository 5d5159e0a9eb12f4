//! `enforcer status`: the running daemon's snapshot, without its cgroups.

use enforcer::surfaces::{cli::status, control};

use super::{Output, Target};

pub fn execute(t: &Target) -> anyhow::Result<()> {
    let s = control::snapshot(&t.socket, Some(0))?;
    if t.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
    } else {
        print!("{}", status::render_status(&s));
    }
    Ok(())
}

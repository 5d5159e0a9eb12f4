//! `enforcer cgroups`: every cgroup the running daemon knows.

use enforcer::surfaces::{cli::cgroups, control};

use super::{Output, Target};

pub fn execute(t: &Target) -> anyhow::Result<()> {
    let s = control::snapshot(&t.socket, None)?;
    if t.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&s.cgroups).unwrap_or_default()
        );
    } else {
        print!("{}", cgroups::render_cgroup_table(&s.cgroups, false));
    }
    Ok(())
}

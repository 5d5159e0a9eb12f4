//! `enforcer pods`: every pod the running daemon's container runtime lists.

use enforcer::surfaces::{cli::cgroups, control};

use super::{Output, Target};

pub fn execute(t: &Target) -> anyhow::Result<()> {
    let s = control::snapshot(&t.socket, None)?;
    if t.output == Output::Json {
        let out = serde_json::json!({ "runtime": s.runtime, "pods": s.pods });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print!("{}", cgroups::render_pod_table(&s.runtime, &s.pods));
    }
    Ok(())
}

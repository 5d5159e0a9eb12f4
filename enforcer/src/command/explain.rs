//! `enforcer explain`: the ladder's state from the running daemon, with the last five
//! actions from the journal it names.

use enforcer::surfaces::{cli::explain, control};

use super::{Output, Target};

pub fn execute(t: &Target) -> anyhow::Result<()> {
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
        print!("{}", explain::render_explain(&s, &recent));
    }
    Ok(())
}

//! `enforcer journal`: the action journal, read from its file (no daemon needed), filtered.

use std::path::PathBuf;

use enforcer::{config::Config, surfaces::cli::journal};

use super::Output;

fn journal_path(file: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match (file, config) {
        (Some(f), _) => f,
        (None, Some(c)) => Config::load(&c)?.daemon.journal,
        (None, None) => Config::default().daemon.journal,
    })
}

pub fn execute(
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
        print!("{}", journal::render_journal(&entries));
    }
    Ok(())
}

//! `enforcer journal`: the action journal, read from its files (no daemon needed), every
//! segment oldest first, filtered. Entries are streamed: `--last N` keeps only N in memory.

use std::{collections::VecDeque, path::PathBuf};

use enforcer::{actuators::journal as file, config::Config, surfaces::cli::journal};

use super::Output;

fn journal_path(file: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match (file, config) {
        (Some(f), _) => f,
        (None, Some(c)) => Config::load(&c)?.daemon.journal.path,
        (None, None) => Config::default().daemon.journal.path,
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
    let context = |e: std::io::Error| anyhow::anyhow!("{}: {e}", path.display());
    if file::segment_paths(&path).map_err(context)?.is_empty() {
        anyhow::bail!(
            "{}: no journal (no action was ever decided on this node)",
            path.display()
        );
    }
    let mut entries = VecDeque::new();
    for entry in file::entries(&path).map_err(context)? {
        let entry = entry.map_err(context)?;
        let wanted = target.as_ref().is_none_or(|t| {
            entry
                .target
                .as_deref()
                .is_some_and(|x| x.contains(t.as_str()))
        }) && action.as_ref().is_none_or(|a| &entry.action == a);
        if !wanted {
            continue;
        }
        if last.is_some_and(|n| entries.len() == n) {
            entries.pop_front();
        }
        if last != Some(0) {
            entries.push_back(entry);
        }
    }
    let entries = Vec::from(entries);
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        print!("{}", journal::render_journal(&entries));
    }
    Ok(())
}

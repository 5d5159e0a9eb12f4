//! `enforcer config check`: validate a configuration file without running anything.

use enforcer::daemon;

use super::ConfigCommand;

pub fn execute(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Check { file } => {
            daemon::check_config(&file).map(|_| println!("{}: ok", file.display()))
        }
    }
}

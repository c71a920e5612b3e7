//! One file per command, each an options-to-library translation and a printer.

mod backup;
mod cat;
mod init;
mod ls;
mod restore;
mod snapshots;
mod stats;

use anyhow::Result;

use crate::args::{Cli, Command};

pub async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => init::run(g, a).await,
        Command::Backup(a) => backup::run(g, a).await,
        Command::Snapshots(a) => snapshots::run(g, a).await,
        Command::Restore(a) => restore::run(g, a).await,
        Command::Ls(a) => ls::run(g, a).await,
        Command::Cat(a) => cat::run(g, a).await,
        Command::Stats(a) => stats::run(g, a).await,
    }
}

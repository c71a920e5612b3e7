//! One file per command, each an options-to-library translation and a printer.

mod backup;
mod cache;
mod cat;
mod check;
mod copy;
mod diff;
mod dump;
mod find;
mod forget;
mod generate;
mod init;
mod key;
mod list;
mod ls;
mod mount;
mod prune;
mod repair;
mod restore;
mod rewrite;
mod serve;
mod share;
mod snapshots;
mod stats;
mod tag;
mod unlock;

use anyhow::Result;

use crate::args::{Cli, Command};

pub async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    run_command(g, cli.command)
        .await
        .map_err(|e| crate::repo::explain_storage(g, e))
}

async fn run_command(g: &crate::args::GlobalArgs, command: Command) -> Result<()> {
    match command {
        Command::Init(a) => init::run(g, a).await,
        Command::Backup(a) => backup::run(g, a).await,
        Command::Snapshots(a) => snapshots::run(g, a).await,
        Command::Restore(a) => restore::run(g, a).await,
        Command::Ls(a) => ls::run(g, a).await,
        Command::Cat(a) => cat::run(g, a).await,
        Command::Stats(a) => stats::run(g, a).await,
        Command::Forget(a) => forget::run(g, *a).await,
        Command::Prune(a) => prune::run(g, a).await,
        Command::Check(a) => check::run(g, a).await,
        Command::Unlock(a) => unlock::run(g, a).await,
        Command::Key(a) => key::run(g, a).await,
        Command::Diff(a) => diff::run(g, a).await,
        Command::Dump(a) => dump::run(g, a).await,
        Command::Repair(a) => repair::run(g, a).await,
        Command::Cache(a) => cache::run(g, a),
        Command::Tag(a) => tag::run(g, a).await,
        Command::List(a) => list::run(g, a).await,
        Command::Generate(a) => generate::run(a),
        Command::Copy(a) => copy::run(g, a).await,
        Command::Find(a) => find::run(g, a).await,
        Command::Rewrite(a) => rewrite::run(g, a).await,
        Command::Mount(a) => mount::run(g, a).await,
        Command::Share(a) => share::run(g, a).await,
        Command::Serve(a) => serve::run(g, a).await,
    }
}

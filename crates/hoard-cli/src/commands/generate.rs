use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::{Cli, GenerateArgs};

/// restic's `generate`: completion scripts for the shells, and man pages.
pub fn run(a: GenerateArgs) -> Result<()> {
    for (shell, file) in [
        (Shell::Bash, &a.bash_completion),
        (Shell::Zsh, &a.zsh_completion),
        (Shell::Fish, &a.fish_completion),
        (Shell::PowerShell, &a.powershell_completion),
    ] {
        let Some(file) = file else { continue };
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "hoard", &mut script);
        write_out(file, &script)?;
    }
    if let Some(dir) = &a.man {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut cmd = Cli::command();
        // Built, so that each command's page lists the global options too.
        cmd.build();
        write_page(dir, "hoard", cmd.clone())?;
        for sub in cmd.get_subcommands() {
            let name = format!("hoard-{}", sub.get_name());
            write_page(dir, &name, sub.clone().name(name.clone()))?;
        }
    }
    Ok(())
}

fn write_page(dir: &Path, name: &str, cmd: clap::Command) -> Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    write_out(&dir.join(format!("{name}.1")), &page)
}

fn write_out(file: &Path, bytes: &[u8]) -> Result<()> {
    if file == Path::new("-") {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        return Ok(out.flush()?);
    }
    std::fs::write(file, bytes).with_context(|| format!("cannot write {}", file.display()))
}

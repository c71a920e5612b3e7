//! The `hoard` command line: parses flags into library options, runs one command, and maps
//! the outcome to restic's exit codes. All work happens in `hoard-core`.

#![warn(missing_docs)]

mod args;
mod commands;
mod metrics;
mod output;
mod parse;
mod repo;

use std::process::ExitCode;

use clap::Parser;

use args::Cli;

/// Exit codes, as restic defines them.
mod exit {
    pub const OK: u8 = 0;
    pub const FATAL: u8 = 1;
    pub const INCOMPLETE: u8 = 3;
    pub const NO_REPOSITORY: u8 = 10;
    pub const LOCKED: u8 = 11;
    pub const WRONG_PASSWORD: u8 = 12;
    pub const INTERRUPTED: u8 = 130;
}

/// A command that finished but must still exit non-zero (e.g. a backup with unreadable files).
#[derive(Debug)]
pub(crate) struct Incomplete(pub String);

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Incomplete {}

/// Runs the CLI with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_logging(cli.global.verbose, cli.global.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hoard: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FATAL);
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // Do not wait for stray blocking tasks (e.g. a stalled read) at exit.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            let code = exit_code(&e);
            if code != exit::OK {
                eprintln!("hoard: {}", output::error_line(&e));
            }
            ExitCode::from(code)
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Incomplete>().is_some() {
        return exit::INCOMPLETE;
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::BrokenPipe {
            return exit::OK; // `hoard ls | head` is not an error
        }
    }
    if let Some(hoard_s3::S3Error::NoSuchBucket { .. }) = e.downcast_ref::<hoard_s3::S3Error>() {
        return exit::NO_REPOSITORY;
    }
    match e.downcast_ref::<hoard_core::Error>() {
        Some(hoard_core::Error::RepositoryNotFound(_)) => exit::NO_REPOSITORY,
        Some(hoard_core::Error::WrongPassword) => exit::WRONG_PASSWORD,
        Some(hoard_core::Error::Interrupted) => exit::INTERRUPTED,
        Some(hoard_core::Error::Locked { .. }) => exit::LOCKED,
        _ => exit::FATAL,
    }
}

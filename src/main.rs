//! The `hoard` binary: everything lives in `hoard-cli`.

fn main() -> std::process::ExitCode {
    hoard_cli::main()
}

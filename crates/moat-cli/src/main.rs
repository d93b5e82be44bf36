//! The `moat` binary: parse the command line, hand it to [`moat_cli::run`], exit with its code.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = moat_cli::Cli::parse();
    moat_cli::run(cli)
}

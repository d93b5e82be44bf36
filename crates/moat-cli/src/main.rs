//! The `moat` binary: parse the command line, hand it to [`moat_cli::run`], exit with its code.

use clap::Parser as _;

/// The gate allocates a little on every request from several threads; mimalloc does that
/// markedly cheaper than glibc malloc (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = moat_cli::Cli::parse();
    moat_cli::run(cli)
}

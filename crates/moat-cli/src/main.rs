//! The `moat` binary: parse the command line, hand it to [`moat_cli::run`], exit with its code.

use clap::Parser as _;

/// The gate allocates a little on every request from several threads; mimalloc does that
/// markedly cheaper than glibc malloc (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // The sandbox's init: `moat run` starts this binary inside the new namespaces. It must run
    // before anything else starts a thread (clap does not; tokio and logging would).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "__sandbox-init")
    {
        moat_sandbox::init_main();
    }
    let cli = moat_cli::Cli::parse();
    moat_cli::run(cli)
}

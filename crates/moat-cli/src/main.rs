//! The `moat` binary: parse the command line, hand it to [`moat_cli::run`], exit with its code.

use clap::Parser as _;

/// mimalloc for the gate, the C library's malloc for a session's short-lived processes (`moat
/// run` and the sandbox init), chosen per process; see [`moat_sandbox::Allocator`].
#[global_allocator]
static ALLOCATOR: moat_sandbox::Allocator = moat_sandbox::Allocator;

fn main() -> std::process::ExitCode {
    // The sandbox's init: `moat run` starts this binary inside the new namespaces. It must run
    // before anything else starts a thread (clap does not; tokio and logging would).
    let first = std::env::args_os().nth(1);
    if first.as_deref() == Some(moat_sandbox::INIT_SUBCOMMAND.as_ref()) {
        moat_sandbox::init_main();
    }
    // `moat run …`: fork the session's sandbox init now, while this process has one thread and
    // has read nothing but its arguments (no configuration, no environment, no secrets); it
    // waits for its request, and saves each session a second start of this binary. Any other
    // spelling (`moat --data-dir D run …`) starts the init the ordinary way.
    let init = if first.as_deref() == Some("run".as_ref()) {
        moat_sandbox::InitProcess::fork().ok()
    } else {
        None
    };
    let parsed = if first.as_deref() == Some("run".as_ref()) {
        moat_cli::Cli::try_parse_run()
    } else {
        moat_cli::Cli::try_parse()
    };
    let cli = match parsed {
        Ok(cli) => cli,
        Err(usage) => {
            // `--help`, `--version` or a usage error: the init ends (and is reaped) first.
            drop(init);
            usage.exit()
        }
    };
    moat_cli::run(cli, init)
}

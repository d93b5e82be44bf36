//! The `moat` command line: argument definitions ([`Cli`]), configuration resolution
//! (flags over `moat.toml` over defaults), and one module per subcommand.
//!
//! This is the only crate that reads the environment, `$HOME` or the terminal; every library
//! crate gets its configuration passed in.

#![allow(clippy::print_stdout, clippy::print_stderr)]

/// `eprintln!` in one `write`: the line reaches stderr whole, not interleaved with what the
/// agent writes there meanwhile, and in one system call (`eprintln!` writes each piece of its
/// format on its own, unbuffered: seven `write`s for the line that names the running gate).
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }};
}

mod cli;
mod commands;
mod config;
mod error;

use std::process::ExitCode;

pub use cli::Cli;
use error::UserError;

/// Run a parsed command line and turn the outcome into an exit code: 0 success, 1 failure
/// (with `error:` and `hint:` lines on stderr) or the code the error names (`moat run` exits 127
/// when its command is not found in the sandbox, as a shell would). Usage errors exit 2 from
/// clap itself.
///
/// `init` is a sandbox init forked at the start of `main` for `moat run` (see
/// [`moat_sandbox::InitProcess::fork`]); `moat run` starts one itself without it, and every
/// other command drops it.
pub fn run(cli: Cli, init: Option<moat_sandbox::InitProcess>) -> ExitCode {
    init_logging(cli.global.verbose);
    match commands::dispatch(cli, init) {
        Ok(code) => code,
        Err(error) => {
            let user = error.chain().find_map(|e| e.downcast_ref::<UserError>());
            report(&error, user);
            ExitCode::from(user.and_then(|e| e.exit_code).unwrap_or(1))
        }
    }
}

/// Prints `error` and its causes, and the hint of the [`UserError`] among them (`user`).
fn report(error: &anyhow::Error, user: Option<&UserError>) {
    say!("error: {error}");
    for cause in error.chain().skip(1) {
        say!("  caused by: {cause}");
    }
    if let Some(hint) = user.and_then(|e| e.hint.as_deref()) {
        say!("hint: {hint}");
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::INFO,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

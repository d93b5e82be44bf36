//! One module per subcommand; [`dispatch`] routes a parsed command line to it.

mod audit;
mod db;
mod gate;
mod policy;
mod report;
mod run;
mod sessions;
mod why;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::Loaded;

pub fn dispatch(cli: Cli, init: Option<moat_sandbox::InitProcess>) -> anyhow::Result<ExitCode> {
    let loaded = Loaded::load(&cli.global)?;
    match cli.command {
        Command::Gate(args) => gate::run(&cli.global, &loaded, args),
        Command::Why(args) => why::run(&cli.global, &loaded, args),
        Command::Db(command) => db::run(&cli.global, &loaded, command),
        Command::Policy(command) => policy::run(&cli.global, &loaded, command),
        Command::Audit(command) => audit::run(&cli.global, &loaded, command),
        Command::Run(args) => run::run(&cli.global, &loaded, *args, init),
        Command::Report(args) => report::report(&cli.global, &loaded, args),
        Command::Ps { json } => sessions::ps(&cli.global, &loaded, json),
        Command::Stop { session } => sessions::stop(&cli.global, &loaded, &session),
    }
}

/// A multi-threaded tokio runtime, built after the single-threaded set-up is done.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Print a value as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

//! `moat audit list`: the recorded gate decisions.

use std::process::ExitCode;

use moat_audit::{AuditLog, Event, ListQuery};

use crate::cli::{AuditCommand, GlobalArgs};
use crate::config::Loaded;
use crate::error::UserError;

pub fn run(
    global: &GlobalArgs,
    loaded: &Loaded,
    command: AuditCommand,
) -> anyhow::Result<ExitCode> {
    let AuditCommand::List {
        limit,
        ecosystem,
        package,
        action,
        json,
    } = command;
    let data_dir = loaded.data_dir(global)?;
    let path = data_dir.join("audit.db");
    if !path.is_file() {
        return Err(
            UserError::new(format!("no audit log at {}", path.display()))
                .hint("the gate creates it on its first start; pass the gate's --data-dir")
                .into(),
        );
    }
    let log = AuditLog::open_read_only(&path)?;
    let events = log.list(&ListQuery {
        limit,
        ecosystem,
        package,
        action,
    })?;
    if json {
        super::print_json(&events)?;
        return Ok(ExitCode::SUCCESS);
    }
    if events.is_empty() {
        println!("no decisions recorded");
    }
    for stored in &events {
        match &stored.event {
            Event::Decision(d) => {
                let target = match &d.version {
                    Some(v) => format!("{}@{v}", d.package),
                    None => d.package.clone(),
                };
                let rules = if d.rules.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", d.rules.join(", "))
                };
                println!(
                    "{:>6}  {}  {:<5}  {} {} {}{rules}  ({})",
                    stored.seq,
                    d.time.strftime("%Y-%m-%d %H:%M:%S"),
                    d.action,
                    d.ecosystem,
                    d.request,
                    target,
                    d.identity
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

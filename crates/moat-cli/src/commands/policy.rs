//! `moat policy check FILE` and `moat policy show-default`.

use std::process::ExitCode;

use moat_advisories::AdvisoryDb;
use moat_policy::{DEFAULT_POLICY_TOML, Policy};

use crate::cli::{GlobalArgs, PolicyCommand};
use crate::config::{self, Loaded};

pub fn run(
    global: &GlobalArgs,
    loaded: &Loaded,
    command: PolicyCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::ShowDefault => {
            print!("{DEFAULT_POLICY_TOML}");
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Check { file, json } => {
            let policy: Policy = config::load_policy(&file)?;
            // Unused-waiver checks need advisory data; without an index they are skipped, and said so.
            let data_dir = loaded.data_dir(global)?;
            let db = AdvisoryDb::load_index(&config::index_dir(&data_dir))
                .unwrap_or_else(|_| AdvisoryDb::empty());
            let have_data = !db.status().is_empty();
            let today = jiff::Timestamp::now()
                .to_zoned(jiff::tz::TimeZone::UTC)
                .date();
            let warnings = policy.check(&db, today);
            if json {
                super::print_json(&serde_json::json!({
                    "file": file,
                    "valid": true,
                    "revision": policy.revision(),
                    "advisory_data": have_data,
                    "warnings": warnings,
                }))?;
            } else {
                println!(
                    "{}: valid policy (revision {})",
                    file.display(),
                    policy.revision()
                );
                if !have_data {
                    println!(
                        "note: no advisory index in {}; unused-waiver checks skipped",
                        data_dir.display()
                    );
                }
                for warning in &warnings {
                    println!("warning[{}]: {}", warning.kind, warning.message);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

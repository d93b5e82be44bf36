//! `moat why ECOSYSTEM NAME@VERSION`: the full explanation of a verdict, computed here with the
//! same data, policy and upstream as the gate.

use std::process::ExitCode;
use std::time::Duration;

use moat_advisories::Ecosystem;
use moat_gate::{Gate, GateConfig};

use crate::cli::{GlobalArgs, WhyArgs};
use crate::config::{Loaded, Sources};
use crate::error::UserError;

pub fn run(global: &GlobalArgs, loaded: &Loaded, args: WhyArgs) -> anyhow::Result<ExitCode> {
    let ecosystem: Ecosystem = args
        .ecosystem
        .parse()
        .map_err(|e| UserError::new(format!("{e}")).hint("example: moat why npm minimist@1.2.5"))?;
    let (name, version) = split_package(&args.package);
    let data_dir = loaded.data_dir(global)?;
    std::fs::create_dir_all(&data_dir)?;
    let sources = Sources::load(loaded, &args.sources, &data_dir)?;
    let audit = loaded.audit_store(global, &data_dir).open()?;
    let public_url = loaded
        .file
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", loaded.listen(None)));
    let config = GateConfig {
        upstream: super::gate::upstream_config(&sources),
        metadata_ttl: Duration::from_secs(0),
        ..GateConfig::new(public_url, data_dir)
    };
    super::runtime()?.block_on(async move {
        let gate = Gate::new(
            config,
            sources.policy,
            sources.advisories,
            sources.popular,
            audit,
        )?;
        let verdict = gate.why(ecosystem, name, version).await?;
        if args.json {
            super::print_json(&verdict)?;
        } else {
            let why_url = gate.why_url(ecosystem, name, version);
            print!("{}", moat_gate::why::render_text(&verdict, &why_url));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `name@version` → (name, Some(version)); a leading `@` belongs to a scope.
fn split_package(spec: &str) -> (&str, Option<&str>) {
    match spec.rfind('@') {
        Some(at) if at > 0 => (&spec[..at], Some(&spec[at + 1..]).filter(|v| !v.is_empty())),
        _ => (spec, None),
    }
}

#[cfg(test)]
mod tests {
    use super::split_package;

    #[test]
    fn splits_scoped_and_plain_specs() {
        assert_eq!(split_package("minimist@1.2.5"), ("minimist", Some("1.2.5")));
        assert_eq!(
            split_package("@types/node@20.1.0"),
            ("@types/node", Some("20.1.0"))
        );
        assert_eq!(split_package("@types/node"), ("@types/node", None));
        assert_eq!(split_package("lodash"), ("lodash", None));
        assert_eq!(split_package("lodash@"), ("lodash", None));
    }
}

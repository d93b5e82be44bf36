//! `moat db import|status|sync`: the advisory index in DATA_DIR/advisories.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use moat_advisories::{AdvisoryDb, Ecosystem, ImportReport};

use crate::cli::{DbCommand, GlobalArgs};
use crate::config::{self, Loaded};
use crate::error::UserError;

/// OSV's public bucket of per-ecosystem `all.zip` dumps.
pub const DEFAULT_SYNC_BASE: &str = "https://osv-vulnerabilities.storage.googleapis.com";

pub fn run(global: &GlobalArgs, loaded: &Loaded, command: DbCommand) -> anyhow::Result<ExitCode> {
    let data_dir = loaded.data_dir(global)?;
    match command {
        DbCommand::Import { path, json } => {
            let started = Instant::now();
            let (imported, report) = config::import(&path)?;
            save_merged(&data_dir, imported)?;
            print_report(
                &report,
                started.elapsed(),
                json,
                &format!("imported {}", path.display()),
            )?;
        }
        DbCommand::Status { json } => status(&data_dir, json)?,
        DbCommand::Sync {
            base,
            ecosystems,
            timeout,
        } => {
            let base = base.unwrap_or_else(|| DEFAULT_SYNC_BASE.to_owned());
            let ecosystems = if ecosystems.is_empty() {
                Ecosystem::ALL.to_vec()
            } else {
                ecosystems
                    .iter()
                    .map(|e| {
                        e.parse::<Ecosystem>()
                            .map_err(|e| UserError::new(e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            };
            sync(
                &data_dir,
                base.trim_end_matches('/'),
                &ecosystems,
                Duration::from_secs(timeout),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Merge freshly imported ecosystems into the stored index and write it back.
fn save_merged(data_dir: &Path, imported: AdvisoryDb) -> anyhow::Result<()> {
    let dir = config::index_dir(data_dir);
    let mut db = AdvisoryDb::load_index(&dir).unwrap_or_else(|e| {
        tracing::warn!("replacing unreadable index: {e}");
        AdvisoryDb::empty()
    });
    db.merge(imported);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    db.save_index(&dir)?;
    Ok(())
}

fn print_report(
    report: &ImportReport,
    took: Duration,
    json: bool,
    what: &str,
) -> anyhow::Result<()> {
    if json {
        return super::print_json(report);
    }
    println!("{what} in {} ms", took.as_millis());
    for (ecosystem, count) in &report.loaded {
        println!("  {ecosystem}: {count} records");
    }
    println!(
        "  skipped: {} withdrawn, {} malformed, {} GIT ranges",
        report.withdrawn, report.malformed, report.git_ranges
    );
    for problem in &report.problems {
        println!("  malformed: {problem}");
    }
    Ok(())
}

fn status(data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let dir = config::index_dir(data_dir);
    let started = Instant::now();
    let db = AdvisoryDb::load_index(&dir)?;
    let took = started.elapsed();
    let status = db.status();
    if json {
        return super::print_json(&serde_json::json!({
            "index": dir,
            "revision": db.revision(),
            "load_ms": took.as_secs_f64() * 1000.0,
            "ecosystems": status,
        }));
    }
    if status.is_empty() {
        return Err(
            UserError::new(format!("no advisory data in {}", dir.display()))
                .hint("run `moat db sync` or `moat db import DIR`")
                .into(),
        );
    }
    println!(
        "advisory index {} (revision {}, loaded in {} ms)",
        dir.display(),
        db.revision(),
        took.as_millis()
    );
    for s in status {
        let newest = s
            .newest_modified
            .map(|t| t.to_string())
            .unwrap_or_else(|| "unknown".into());
        println!(
            "  {:<10} {:>7} records  {:>7} malicious  newest modified {newest}",
            s.ecosystem.as_str(),
            s.records,
            s.malicious
        );
    }
    Ok(())
}

fn sync(
    data_dir: &Path,
    base: &str,
    ecosystems: &[Ecosystem],
    timeout: Duration,
) -> anyhow::Result<()> {
    let downloads = data_dir.join("advisories").join("downloads");
    std::fs::create_dir_all(&downloads)
        .with_context(|| format!("creating {}", downloads.display()))?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .timeout(timeout)
        .user_agent(concat!("moat/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let runtime = super::runtime()?;
    let mut merged = AdvisoryDb::empty();
    for &ecosystem in ecosystems {
        let url = format!("{base}/{}/all.zip", ecosystem.as_str());
        let target = downloads.join(format!("{}.zip", ecosystem.as_str()));
        say!("downloading {url}");
        let started = Instant::now();
        let bytes = runtime.block_on(download(&client, &url)).map_err(|e| {
            UserError::new(format!(
                "cannot download {url}: {e:#}; the advisory data in {} is unchanged",
                config::index_dir(data_dir).display()
            ))
            .hint("check the network or proxy (HTTPS_PROXY), pass --base URL for a mirror, or `moat db import DIR` with dumps fetched another way")
        })?;
        let partial = target.with_extension("zip.part");
        std::fs::write(&partial, &bytes)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &target)?;
        let (db, report) = config::import(&target)?;
        say!(
            "  {} MB in {} ms; {} records",
            bytes.len() / 1_000_000,
            started.elapsed().as_millis(),
            report.loaded.iter().map(|(_, n)| n).sum::<usize>()
        );
        merged.merge(db);
    }
    // Only now, with every download imported, replace the stored data.
    save_merged(data_dir, merged)?;
    status(data_dir, false)
}

async fn download(client: &reqwest::Client, url: &str) -> anyhow::Result<Vec<u8>> {
    let response = client.get(url).send().await?.error_for_status()?;
    Ok(response.bytes().await?.to_vec())
}

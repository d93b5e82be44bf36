//! Import the full npm OSV dump and load the saved index; print best-of-5 wall-clock times
//! and the process's peak RSS.
//!
//! Run with `cargo bench -p moat-advisories`. Data comes from `$MOAT_SHARED_DATA` or
//! `../shared/data` beside the project.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use moat_advisories::{AdvisoryDb, Ecosystem, PopularNames};

const ROUNDS: usize = 5;

fn shared_data() -> PathBuf {
    std::env::var_os("MOAT_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
        })
}

/// Best wall-clock time of `ROUNDS` runs, the mean CPU time (all threads) per run, and the
/// last run's value.
fn best_of<T>(mut run: impl FnMut() -> T) -> (Duration, Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    let cpu_start = cpu_time();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let value = run();
        best = best.min(start.elapsed());
        last = Some(value);
    }
    let cpu = cpu_time().saturating_sub(cpu_start) / ROUNDS as u32;
    (best, cpu, last.unwrap())
}

/// User + system CPU time of this process so far (from /proc, in clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` run passes nothing and
    // should stay quick, so only run with `--bench`.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let dumps = shared_data().join("advisories");
    for ecosystem in Ecosystem::ALL {
        let zip = dumps.join(format!("{}.zip", ecosystem.as_str()));
        let (import, import_cpu, (db, report)) = best_of(|| AdvisoryDb::import_zip(&zip).unwrap());
        let dir = tempfile::tempdir().unwrap();
        db.save_index(dir.path()).unwrap();
        let (load, load_cpu, loaded) = best_of(|| AdvisoryDb::load_index(dir.path()).unwrap());
        assert_eq!(loaded.revision(), db.revision());
        let (query, _, hits) = best_of(|| {
            let mut hits = 0;
            for round in 0..10_000u32 {
                let version = format!("1.{}.{}", round % 7, round % 13);
                hits += db.matches(ecosystem, "minimist", &version).len();
                hits += usize::from(db.malicious_package(ecosystem, "lodash").is_some());
            }
            hits
        });
        println!(
            "{ecosystem}: import {:.1} ms (cpu {:.0} ms; {} records, {} withdrawn, {} malformed), \
             load index {:.1} ms (cpu {:.0} ms), 20k queries {:.1} ms ({hits} hits)",
            import.as_secs_f64() * 1e3,
            import_cpu.as_secs_f64() * 1e3,
            report.loaded.iter().map(|(_, n)| n).sum::<usize>(),
            report.withdrawn,
            report.malformed,
            load.as_secs_f64() * 1e3,
            load_cpu.as_secs_f64() * 1e3,
            query.as_secs_f64() * 1e3,
        );
    }
    for ecosystem in Ecosystem::ALL {
        let list = shared_data()
            .join("popular")
            .join(format!("{}.txt", ecosystem.as_str()));
        let (build, _, popular) = best_of(|| PopularNames::load(&list, ecosystem).unwrap());
        let names = [
            "lodahs",
            "expresss",
            "types-node",
            "pyrequests",
            "serde-jsn",
            "unrelated-name-here",
        ];
        let (check, _, flagged) = best_of(|| {
            let mut flagged = 0;
            for round in 0..10_000 {
                flagged += usize::from(popular.check(names[round % names.len()]).is_some());
            }
            flagged
        });
        println!(
            "{ecosystem} typosquat: build {:.1} ms ({} names), 10k checks {:.1} ms ({flagged} flagged)",
            build.as_secs_f64() * 1e3,
            popular.len(),
            check.as_secs_f64() * 1e3,
        );
    }
    match peak_rss_kib() {
        Some(kib) => println!("peak RSS (VmHWM): {:.1} MiB", kib as f64 / 1024.0),
        None => println!("peak RSS: unavailable"),
    }
}

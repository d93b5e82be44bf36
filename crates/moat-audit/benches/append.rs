//! Append throughput: concurrent tasks appending decision events to a fresh store in a temporary
//! directory, as a gate under load would. Prints events/s, the mean batch (events per fsync, and
//! per signed checkpoint) and append latency; every append is durable (committed, fsynced, its
//! tree nodes and the batch's signed checkpoint in the same transaction) before it returns.
//! Then the verification time of a log of 1,000,000 events (`MOAT_BENCH_VERIFY_EVENTS` to
//! change), and proof sizes. Run with `cargo bench -p moat-audit`.
//!
//! With `MOAT_TEST_POSTGRES=postgres://USER@HOST:PORT/DB` (a role that may create databases),
//! the same appends run on PostgreSQL too, each run in a database of its own (created and
//! dropped here), with durable commits (`synchronous_commit = on`).

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::{Duration, Instant};

use moat_audit::{AuditLog, DecisionEvent, Event, PostgresUrl};

/// (concurrent tasks, events in total)
const RUNS: [(usize, usize); 4] = [(1, 2_000), (64, 20_000), (256, 50_000), (256, 200_000)];

/// Two gates sharing one PostgreSQL log: (concurrent tasks per gate, events in total).
const TWO_GATES: (usize, usize) = (128, 200_000);

/// Events in the log whose verification is timed.
const VERIFY_EVENTS: usize = 1_000_000;

/// Events appended one at a time (one checkpoint each, the worst case for verification).
const SEQUENTIAL_EVENTS: usize = 50_000;

fn main() -> Result<(), Box<dyn Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("store     tasks  events    seconds  events/s   mean batch  p50 ms  p99 ms");
    for (tasks, events) in RUNS {
        let dir = tempfile::tempdir()?;
        let log = AuditLog::open(&dir.path().join("audit.db"))?;
        append_run(&runtime, "sqlite", &log, tasks, events)?;
    }
    if let Some(server) = std::env::var("MOAT_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.is_empty())
    {
        for (tasks, events) in RUNS {
            let database = Database::create(&server)?;
            let dir = tempfile::tempdir()?;
            let url = PostgresUrl::parse(&database.url).ok_or("MOAT_TEST_POSTGRES is no URL")?;
            let log = AuditLog::open_postgres(&url, &dir.path().join("audit.key"))?;
            append_run(&runtime, "postgres", &log, tasks, events)?;
        }
        two_gates(&runtime, &server, TWO_GATES.0, TWO_GATES.1)?;
    }
    let events = setting("MOAT_BENCH_VERIFY_EVENTS", VERIFY_EVENTS);
    verify(&runtime, 256, events)?;
    let events = setting("MOAT_BENCH_SEQUENTIAL_EVENTS", SEQUENTIAL_EVENTS);
    verify(&runtime, 1, events)?;
    Ok(())
}

/// Append `events` from `tasks` concurrent tasks to `log`, print a row, shut the log down.
fn append_run(
    runtime: &tokio::runtime::Runtime,
    store: &str,
    log: &AuditLog,
    tasks: usize,
    events: usize,
) -> Result<(), Box<dyn Error>> {
    let (elapsed, mut latencies) = runtime.block_on(run(log, tasks, events))?;
    let stats = log.stats();
    latencies.sort_unstable();
    let percentile = |p: usize| latencies[(latencies.len() - 1) * p / 100].as_secs_f64() * 1e3;
    println!(
        "{store:<8}  {tasks:>5}  {events:>6}  {:>9.3}  {:>8.0}  {:>11.1}  {:>6.2}  {:>6.2}",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        stats.events as f64 / stats.batches as f64,
        percentile(50),
        percentile(99),
    );
    runtime.block_on(log.shutdown());
    Ok(())
}

/// Two gates (two writers, same key) append to one PostgreSQL log at once, half the events each.
fn two_gates(
    runtime: &tokio::runtime::Runtime,
    server: &str,
    tasks: usize,
    events: usize,
) -> Result<(), Box<dyn Error>> {
    let database = Database::create(server)?;
    let url = PostgresUrl::parse(&database.url).ok_or("MOAT_TEST_POSTGRES is no URL")?;
    let (first_dir, second_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let first = AuditLog::open_postgres(&url, &first_dir.path().join("audit.key"))?;
    std::fs::copy(
        first_dir.path().join("audit.key"),
        second_dir.path().join("audit.key"),
    )?;
    let second = AuditLog::open_postgres(&url, &second_dir.path().join("audit.key"))?;
    let start = Instant::now();
    let (a, b) = runtime.block_on(async {
        tokio::join!(
            run(&first, tasks, events / 2),
            run(&second, tasks, events - events / 2)
        )
    });
    let elapsed = start.elapsed();
    let mut latencies = a?.1;
    latencies.extend(b?.1);
    latencies.sort_unstable();
    let percentile = |p: usize| latencies[(latencies.len() - 1) * p / 100].as_secs_f64() * 1e3;
    let batches = first.stats().batches + second.stats().batches;
    println!(
        "pg 2 gates {:>3}  {events:>6}  {:>9.3}  {:>8.0}  {:>11.1}  {:>6.2}  {:>6.2}",
        tasks * 2,
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        events as f64 / batches as f64,
        percentile(50),
        percentile(99),
    );
    let report = first.verify(&first.verifier()?, None)?;
    assert!(
        report.is_clean() && report.size == events as u64,
        "{report:?}"
    );
    runtime.block_on(first.shutdown());
    runtime.block_on(second.shutdown());
    Ok(())
}

/// A PostgreSQL database of its own for one run, dropped afterwards.
struct Database {
    server: String,
    name: String,
    url: String,
}

impl Database {
    fn create(server: &str) -> Result<Database, Box<dyn Error>> {
        let name = format!("moat_audit_bench_{}", std::process::id());
        let mut admin = postgres::Client::connect(server, postgres::NoTls)?;
        // One statement per call: neither may run inside a transaction block.
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let url = moat_test_support::postgres::with_database(server, &name);
        Ok(Database {
            server: server.to_owned(),
            name,
            url,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Fill a log with `events` from `tasks` concurrent appenders, then time its verification.
fn verify(
    runtime: &tokio::runtime::Runtime,
    tasks: usize,
    events: usize,
) -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.db");
    let log = AuditLog::open(&path)?;
    let (elapsed, _) = runtime.block_on(run(&log, tasks, events))?;
    let stats = log.stats();
    println!(
        "\nfilled a log of {events} events from {tasks} tasks in {:.1} s ({:.0} events/s, {} \
         checkpoints)",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        stats.batches
    );
    runtime.block_on(log.shutdown());
    drop(log);
    let size_mib = std::fs::metadata(&path)?.len() as f64 / (1024.0 * 1024.0);

    let reader = AuditLog::open_read_only(&path)?;
    let key = reader.verifier()?;
    let start = Instant::now();
    let report = reader.verify(&key, None)?;
    let seconds = start.elapsed().as_secs_f64();
    assert!(report.is_clean(), "{report:?}");
    println!(
        "verify: {} events, {} checkpoints, {size_mib:.0} MiB store: {seconds:.2} s",
        report.size, report.checkpoints
    );

    let size = report.size;
    let inclusion = reader.inclusion_proof(size / 3, None)?;
    let consistency = reader.consistency_proof(size / 3, size)?;
    let checkpoint = reader.checkpoint()?.map(|c| c.note.len()).unwrap_or(0);
    println!(
        "proof sizes at {size} events: inclusion {} hashes ({} bytes), consistency from {} \
         {} hashes ({} bytes), signed checkpoint {checkpoint} bytes",
        inclusion.proof.len(),
        inclusion.proof.len() * 32,
        size / 3,
        consistency.proof.len(),
        consistency.proof.len() * 32,
    );
    Ok(())
}

async fn run(
    log: &AuditLog,
    tasks: usize,
    events: usize,
) -> Result<(Duration, Vec<Duration>), Box<dyn Error>> {
    let start = Instant::now();
    let mut handles = Vec::new();
    for task in 0..tasks {
        let log = log.clone();
        let count = events / tasks + usize::from(task < events % tasks);
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(count);
            for i in 0..count {
                let begin = Instant::now();
                log.append(decision(task, i)).await?;
                latencies.push(begin.elapsed());
            }
            Ok::<_, moat_audit::AuditError>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(events);
    for handle in handles {
        latencies.extend(handle.await??);
    }
    Ok((start.elapsed(), latencies))
}

fn decision(task: usize, i: usize) -> Event {
    Event::Decision(DecisionEvent {
        time: jiff::Timestamp::now(),
        identity: "anonymous@127.0.0.1".to_owned(),
        ecosystem: "npm".to_owned(),
        package: format!("package-{task}"),
        version: Some(format!("1.0.{i}")),
        request: "artifact".to_owned(),
        action: if i % 10 == 0 { "block" } else { "allow" }.to_owned(),
        rules: if i % 10 == 0 {
            vec!["moat.vulnerable".to_owned()]
        } else {
            Vec::new()
        },
        advisories: Vec::new(),
        approved: Vec::new(),
        message: None,
        repeats: None,
    })
}

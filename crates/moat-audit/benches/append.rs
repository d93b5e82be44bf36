//! Append throughput: concurrent tasks appending decision events to a fresh store in a temporary
//! directory, as a gate under load would. Prints events/s, the mean batch (events per fsync) and
//! append latency. Run with `cargo bench -p moat-audit`.

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::{Duration, Instant};

use moat_audit::{AuditLog, DecisionEvent, Event};

/// (concurrent tasks, events in total)
const RUNS: [(usize, usize); 3] = [(1, 2_000), (64, 20_000), (256, 50_000)];

fn main() -> Result<(), Box<dyn Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("tasks  events    seconds  events/s   mean batch  p50 ms  p99 ms");
    for (tasks, events) in RUNS {
        let dir = tempfile::tempdir()?;
        let log = AuditLog::open(&dir.path().join("audit.db"))?;
        let (elapsed, mut latencies) = runtime.block_on(run(&log, tasks, events))?;
        let stats = log.stats();
        latencies.sort_unstable();
        let percentile = |p: usize| latencies[(latencies.len() - 1) * p / 100].as_secs_f64() * 1e3;
        println!(
            "{tasks:>5}  {events:>6}  {:>9.3}  {:>8.0}  {:>11.1}  {:>6.2}  {:>6.2}",
            elapsed.as_secs_f64(),
            events as f64 / elapsed.as_secs_f64(),
            stats.events as f64 / stats.batches as f64,
            percentile(50),
            percentile(99),
        );
        runtime.block_on(log.shutdown());
    }
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
    })
}

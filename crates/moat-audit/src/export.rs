//! Streaming exports of the log for a SIEM: JSON Lines a SIEM can verify, or OCSF events.
//!
//! Both formats read the log in pages through [`AuditLog::leaves_after`] (each event with its
//! stored leaf, so `leaf` below is the stored bytes, never a re-encoding) and
//! [`AuditLog::checkpoints_after`], never the whole log at once, and write one JSON object per
//! line to any [`Write`]. An export covers the log up to its newest checkpoint when the export
//! starts: events appended meanwhile belong to the next export.
//!
//! # JSON Lines (`Format::Jsonl`)
//!
//! Three kinds of line, told apart by `type`:
//!
//! - `{"type":"event","seq":S,"index":S-1,"leaf_hash":H,"leaf":L,"event":{…}}`: one event.
//!   `leaf` is the event exactly as the tree hashes it (canonical JSON, RFC 8785); its leaf hash
//!   is `SHA-256(0x00 || UTF-8 bytes of leaf)`, base64 in `leaf_hash`. `event` is the same event
//!   as an object, for indexing; `leaf` is the authoritative form.
//! - `{"type":"checkpoint","size":N,"root":R,"origin":O,"note":T}`: the signed checkpoint the
//!   log wrote at the end of a batch, right after the batch's last event. `note` is the full C2SP
//!   signed note (check it with the log's public key, `moat audit key`); `size`, `root` and
//!   `origin` repeat its body.
//! - `{"type":"frontier","size":K,"hashes":[…]}`: the tree of the first `K` leaves, as the root
//!   hashes of its complete subtrees, largest (leftmost) first. It stands in for leaves the
//!   export leaves out (see below).
//!
//! A SIEM recomputes every root: start with an empty tree; on a `frontier` line replace the tree
//! with the one given; on an `event` line append the leaf hash of `leaf` (its `index` must be
//! the tree's size); on a `checkpoint` line the tree's size must be `size`, its root (fold the
//! subtree hashes from the right with `SHA-256(0x01 || left || right)`) must be `root`, and
//! `note` must verify with the public key. A frontier needs no trust of its own: the signed root
//! that follows commits to it.
//!
//! Without `--since` the export starts at the first event and has no `frontier` line: every
//! event is followed, at the end of its batch, by the checkpoint of that batch. With `since`,
//! events before that time are left out. A batch none of whose events are exported has no
//! checkpoint line either; a checkpoint line follows the last event of every batch with at least
//! one exported event, and wherever events were left out before it (before the first exported
//! event, inside a batch, in skipped batches) a `frontier` line carries the tree over the gap.
//!
//! Before writing a checkpoint line the exporter checks that the leaves it has written (and the
//! frontier it carried) reproduce the checkpoint's root; an export that would not verify stops
//! with [`ExportError::Inconsistent`] instead.
//!
//! # OCSF (`Format::Ocsf`)
//!
//! One OCSF 1.5.0 event per line, following the schema at <https://schema.ocsf.io/1.5.0/>:
//! a gate decision is an API Activity (`class_uid` 6003, category 6 Application Activity,
//! activity 2 Read) with the Security Control profile (`action_id`, `disposition_id`,
//! `is_alert`); a session start is a Process Activity (`class_uid` 1007, category 1 System
//! Activity) Launch, a session end a Terminate. `metadata.uid` is the event's `seq`, so an OCSF
//! event can be matched with its leaf in a JSON Lines export. Attributes OCSF has no place for
//! (the rules, advisories and approved versions of a verdict; a session's workspace, limits and
//! resource usage) are under `unmapped`.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};

use serde_json::{Value, json};

use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::{
    AuditError, AuditLog, DecisionEvent, Event, SessionEnd, SessionStart, SignedCheckpoint,
    StoredEvent,
};

/// Events and checkpoints read per query.
pub const PAGE_SIZE: usize = 1000;

/// The OCSF schema version the OCSF export follows.
pub const OCSF_VERSION: &str = "1.5.0";

/// What an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Events, checkpoints and frontiers as JSON Lines, verifiable against the signed roots.
    Jsonl,
    /// OCSF events, one per line.
    Ocsf,
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The output format.
    pub format: Format,
    /// Leave out events older than this.
    pub since: Option<jiff::Timestamp>,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportSummary {
    /// The log's size the export covers (its newest checkpoint when the export started).
    pub size: u64,
    /// Events written.
    pub events: u64,
    /// Checkpoint lines written (JSON Lines only).
    pub checkpoints: u64,
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading the log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Writing the output failed (a closed pipe included, see [`ExportError::is_broken_pipe`]).
    #[error("cannot write the export: {0}")]
    Write(#[from] io::Error),
    /// The log does not hang together: a gap in the sequence numbers, a checkpoint between
    /// events, or leaves that do not reproduce a checkpoint's root.
    #[error("{0}; run `moat audit verify`")]
    Inconsistent(String),
}

impl ExportError {
    /// The reader went away (`moat audit export | head`): not worth an error message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, ExportError::Write(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// Write `log` to `out` as `options` say, and flush it.
pub fn export(
    log: &AuditLog,
    options: &ExportOptions,
    out: &mut dyn Write,
) -> Result<ExportSummary, ExportError> {
    let Some(end) = log.checkpoint()? else {
        out.flush()?;
        return Ok(ExportSummary::default());
    };
    let end = end.checkpoint.size;
    let mut sink: Box<dyn Sink + '_> = match options.format {
        Format::Jsonl => Box::new(Jsonl::new(out, options.since)),
        Format::Ocsf => Box::new(Ocsf::new(out, options.since)),
    };
    walk(log, end, sink.as_mut())?;
    let mut summary = sink.finish()?;
    summary.size = end;
    Ok(summary)
}

/// What an output format does with the log, read in order.
trait Sink {
    /// One event and its leaf (the stored canonical JSON the tree hashes).
    fn event(&mut self, stored: &StoredEvent, leaf: &str) -> Result<(), ExportError>;
    /// The checkpoint of the batch whose last event was the one before.
    fn checkpoint(&mut self, signed: &SignedCheckpoint) -> Result<(), ExportError>;
    fn finish(&mut self) -> Result<ExportSummary, ExportError>;
}

/// Feed events `1..=end` and their checkpoints to `sink`, each checkpoint after its batch's
/// last event, reading both in pages.
fn walk(log: &AuditLog, end: u64, sink: &mut dyn Sink) -> Result<(), ExportError> {
    let mut checkpoints = Checkpoints::new(log);
    let mut last = 0;
    while last < end {
        let page = log.leaves_after(last, PAGE_SIZE)?;
        if page.is_empty() {
            return Err(ExportError::Inconsistent(format!(
                "the log ends at event {last} but its checkpoint says {end}"
            )));
        }
        for (stored, leaf) in page.iter().take_while(|(stored, _)| stored.seq <= end) {
            if stored.seq != last + 1 {
                return Err(ExportError::Inconsistent(format!(
                    "event {} follows event {last}",
                    stored.seq
                )));
            }
            last = stored.seq;
            sink.event(stored, leaf)?;
            while let Some(signed) = checkpoints.take_at(last)? {
                sink.checkpoint(&signed)?;
            }
        }
    }
    Ok(())
}

/// The log's checkpoints, smallest first, read a page at a time.
struct Checkpoints<'a> {
    log: &'a AuditLog,
    queue: VecDeque<SignedCheckpoint>,
    read_up_to: u64,
}

impl<'a> Checkpoints<'a> {
    fn new(log: &'a AuditLog) -> Self {
        Checkpoints {
            log,
            queue: VecDeque::new(),
            read_up_to: 0,
        }
    }

    /// The next checkpoint if its size is `size`; an error if one was skipped.
    fn take_at(&mut self, size: u64) -> Result<Option<SignedCheckpoint>, ExportError> {
        if self.queue.is_empty() {
            self.queue
                .extend(self.log.checkpoints_after(self.read_up_to, PAGE_SIZE)?);
            if let Some(newest) = self.queue.back() {
                self.read_up_to = newest.checkpoint.size;
            }
        }
        match self.queue.front() {
            Some(next) if next.checkpoint.size == size => Ok(self.queue.pop_front()),
            Some(next) if next.checkpoint.size < size => Err(ExportError::Inconsistent(format!(
                "checkpoint of size {} was not found after its batch's last event",
                next.checkpoint.size
            ))),
            Some(_) | None => Ok(None),
        }
    }
}

fn write_line(out: &mut dyn Write, value: &impl serde::Serialize) -> Result<(), ExportError> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

fn is_exported(since: Option<jiff::Timestamp>, event: &Event) -> bool {
    since.is_none_or(|since| event.time() >= since)
}

/// The JSON Lines format (see the module docs).
struct Jsonl<'a> {
    out: &'a mut dyn Write,
    since: Option<jiff::Timestamp>,
    /// The whole tree so far, exported or not.
    tree: Frontier,
    /// The tree size a reader of the lines written so far is at.
    reader: u64,
    /// An event line was written since the last checkpoint line.
    pending: bool,
    summary: ExportSummary,
}

#[derive(serde::Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Line<'a> {
    Event {
        seq: u64,
        index: u64,
        leaf_hash: Hash,
        leaf: &'a str,
        event: &'a Event,
    },
    Checkpoint {
        size: u64,
        root: Hash,
        origin: &'a str,
        note: &'a str,
    },
    Frontier {
        size: u64,
        hashes: &'a [Hash],
    },
}

impl<'a> Jsonl<'a> {
    fn new(out: &'a mut dyn Write, since: Option<jiff::Timestamp>) -> Self {
        Jsonl {
            out,
            since,
            tree: Frontier::default(),
            reader: 0,
            pending: false,
            summary: ExportSummary::default(),
        }
    }

    /// Bring the reader to the tree as it is now, over leaves it was not given.
    fn catch_up(&mut self) -> Result<(), ExportError> {
        if self.reader != self.tree.size() {
            let line = Line::Frontier {
                size: self.tree.size(),
                hashes: self.tree.hashes(),
            };
            write_line(self.out, &line)?;
            self.reader = self.tree.size();
        }
        Ok(())
    }
}

impl Sink for Jsonl<'_> {
    fn event(&mut self, stored: &StoredEvent, leaf: &str) -> Result<(), ExportError> {
        let hash = leaf_hash(leaf.as_bytes());
        if is_exported(self.since, &stored.event) {
            self.catch_up()?;
            let line = Line::Event {
                seq: stored.seq,
                index: stored.seq - 1,
                leaf_hash: hash,
                leaf,
                event: &stored.event,
            };
            write_line(self.out, &line)?;
            self.reader += 1;
            self.pending = true;
            self.summary.events += 1;
        }
        self.tree.append(hash);
        Ok(())
    }

    fn checkpoint(&mut self, signed: &SignedCheckpoint) -> Result<(), ExportError> {
        let checkpoint = &signed.checkpoint;
        if checkpoint.size != self.tree.size() || checkpoint.root != self.tree.root() {
            return Err(ExportError::Inconsistent(format!(
                "the events up to {} do not reproduce the root of the checkpoint of size {}",
                self.tree.size(),
                checkpoint.size
            )));
        }
        if !self.pending {
            return Ok(());
        }
        self.catch_up()?;
        let line = Line::Checkpoint {
            size: checkpoint.size,
            root: checkpoint.root,
            origin: &checkpoint.origin,
            note: &signed.note,
        };
        write_line(self.out, &line)?;
        self.pending = false;
        self.summary.checkpoints += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<ExportSummary, ExportError> {
        self.out.flush()?;
        Ok(self.summary)
    }
}

/// What a session start said, for its end's Terminate event.
struct SessionFacts {
    operator: String,
    agent: String,
    host: String,
}

/// The OCSF format (see the module docs).
struct Ocsf<'a> {
    out: &'a mut dyn Write,
    since: Option<jiff::Timestamp>,
    /// Sessions started and not yet ended, exported or not.
    sessions: HashMap<String, SessionFacts>,
    summary: ExportSummary,
}

impl<'a> Ocsf<'a> {
    fn new(out: &'a mut dyn Write, since: Option<jiff::Timestamp>) -> Self {
        Ocsf {
            out,
            since,
            sessions: HashMap::new(),
            summary: ExportSummary::default(),
        }
    }
}

impl Sink for Ocsf<'_> {
    fn event(&mut self, stored: &StoredEvent, _leaf: &str) -> Result<(), ExportError> {
        let facts = match &stored.event {
            Event::SessionStart(start) => {
                let facts = SessionFacts {
                    operator: start.operator.clone(),
                    agent: start.agent.clone(),
                    host: start.host.clone(),
                };
                self.sessions.insert(start.session.clone(), facts);
                None
            }
            Event::SessionEnd(end) => self.sessions.remove(&end.session),
            Event::Decision(_) => None,
        };
        if !is_exported(self.since, &stored.event) {
            return Ok(());
        }
        let value = match &stored.event {
            Event::Decision(decision) => api_activity(stored.seq, decision),
            Event::SessionStart(start) => process_launch(stored.seq, start),
            Event::SessionEnd(end) => process_terminate(stored.seq, end, facts.as_ref()),
        };
        write_line(self.out, &value)?;
        self.summary.events += 1;
        Ok(())
    }

    fn checkpoint(&mut self, _signed: &SignedCheckpoint) -> Result<(), ExportError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<ExportSummary, ExportError> {
        self.out.flush()?;
        Ok(self.summary)
    }
}

/// OCSF `metadata`: the product, the schema version and the event's `seq` as its uid.
fn metadata(seq: u64, time: jiff::Timestamp, profiles: &[&str]) -> Value {
    json!({
        "version": OCSF_VERSION,
        "product": { "name": "moat", "vendor_name": "moat" },
        "uid": seq.to_string(),
        "log_name": "audit",
        "original_time": time.to_string(),
        "profiles": profiles,
    })
}

/// OCSF `severity_id` and its caption for a verdict.
fn decision_severity(decision: &DecisionEvent) -> (u8, &'static str) {
    let malicious = decision.rules.iter().any(|rule| rule == "moat.malicious");
    match decision.action.as_str() {
        "block" if malicious => (5, "Critical"),
        "block" => (4, "High"),
        "warn" => (3, "Medium"),
        "allow" => (1, "Informational"),
        _ => (0, "Unknown"),
    }
}

/// A gate decision as an OCSF API Activity: Read of a package, allowed or denied by policy.
fn api_activity(seq: u64, decision: &DecisionEvent) -> Value {
    const CLASS_UID: u32 = 6003;
    const READ: u32 = 2;
    let (severity_id, severity) = decision_severity(decision);
    let blocked = decision.action == "block";
    let (status_id, status) = if blocked {
        (2, "Failure")
    } else {
        (1, "Success")
    };
    let (action_id, action, disposition_id, disposition) = match decision.action.as_str() {
        "block" => (2, "Denied", 2, "Blocked"),
        "warn" => (1, "Allowed", 15, "Detected"),
        "allow" => (1, "Allowed", 1, "Allowed"),
        _ => (0, "Unknown", 0, "Unknown"),
    };
    let target = match &decision.version {
        Some(version) => format!("{}@{version}", decision.package),
        None => decision.package.clone(),
    };
    let mut actor = json!({ "user": { "name": decision.identity } });
    let src_endpoint = match decision.identity.split_once('@') {
        Some(("anonymous", ip)) => json!({ "ip": ip }),
        _ => json!({ "name": decision.identity }),
    };
    if let Some(session) = decision.identity.strip_prefix("session:") {
        actor["session"] = json!({ "uid": session });
    }
    let mut resource = json!({
        "name": decision.package,
        "type": format!("{} package", decision.ecosystem),
        "uid": format!("{}:{target}", decision.ecosystem),
    });
    if let Some(version) = &decision.version {
        resource["version"] = json!(version);
    }
    let mut value = json!({
        "class_uid": CLASS_UID,
        "class_name": "API Activity",
        "category_uid": 6,
        "category_name": "Application Activity",
        "activity_id": READ,
        "activity_name": "Read",
        "type_uid": CLASS_UID * 100 + READ,
        "type_name": "API Activity: Read",
        "time": decision.time.as_millisecond(),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "message": format!("{} {} {} {target}", decision.action, decision.ecosystem, decision.request),
        "metadata": metadata(seq, decision.time, &["security_control"]),
        "actor": actor,
        "src_endpoint": src_endpoint,
        "api": {
            "operation": decision.request,
            "service": { "name": format!("moat gate ({})", decision.ecosystem) },
        },
        "resources": [resource],
        "action_id": action_id,
        "action": action,
        "disposition_id": disposition_id,
        "disposition": disposition,
        "is_alert": blocked,
        "unmapped": {
            "verdict": decision.action,
            "rules": decision.rules,
            "advisories": decision.advisories,
            "approved": decision.approved,
        },
    });
    if let Some(message) = &decision.message {
        value["status_detail"] = json!(message);
    }
    // A tally: OCSF's aggregate attributes, the answers it stands for between two times.
    if let Some(repeats) = &decision.repeats {
        value["count"] = json!(repeats.count);
        value["start_time"] = json!(decision.time.as_millisecond());
        value["end_time"] = json!(repeats.last.as_millisecond());
        value["unmapped"]["repeats_of"] = json!(repeats.of);
    }
    value
}

/// The OCSF `device` a session ran on.
fn device(host: Option<&str>) -> Value {
    let mut device = json!({ "type_id": 0, "type": "Unknown" });
    if let Some(host) = host {
        device["hostname"] = json!(host);
    }
    device
}

/// A session start as an OCSF Process Activity: Launch of the agent by its operator.
fn process_launch(seq: u64, start: &SessionStart) -> Value {
    const CLASS_UID: u32 = 1007;
    const LAUNCH: u32 = 1;
    let time = start.time.as_millisecond();
    json!({
        "class_uid": CLASS_UID,
        "class_name": "Process Activity",
        "category_uid": 1,
        "category_name": "System Activity",
        "activity_id": LAUNCH,
        "activity_name": "Launch",
        "type_uid": CLASS_UID * 100 + LAUNCH,
        "type_name": "Process Activity: Launch",
        "time": time,
        "severity_id": 1,
        "severity": "Informational",
        "status_id": 1,
        "status": "Success",
        "message": format!("session {} started agent {}", start.session, start.agent),
        "metadata": metadata(seq, start.time, &[]),
        "actor": { "user": { "name": start.operator } },
        "device": device(Some(&start.host)),
        "process": {
            "name": start.agent,
            "cmd_line": start.command.join(" "),
            "uid": start.session,
            "created_time": time,
        },
        "unmapped": {
            "session": start.session,
            "command": start.command,
            "workspace": start.workspace,
            "read_only": start.read_only,
            "backend": start.backend,
            "policy": start.policy,
            "enforced": start.enforced,
            "waived": start.waived,
        },
    })
}

/// A session end as an OCSF Process Activity: Terminate, with the agent's exit code.
fn process_terminate(seq: u64, end: &SessionEnd, facts: Option<&SessionFacts>) -> Value {
    const CLASS_UID: u32 = 1007;
    const TERMINATE: u32 = 2;
    let mut process = json!({ "uid": end.session });
    let mut actor = json!({ "app_name": "moat" });
    if let Some(facts) = facts {
        process["name"] = json!(facts.agent);
        actor = json!({ "user": { "name": facts.operator } });
    }
    let mut value = json!({
        "class_uid": CLASS_UID,
        "class_name": "Process Activity",
        "category_uid": 1,
        "category_name": "System Activity",
        "activity_id": TERMINATE,
        "activity_name": "Terminate",
        "type_uid": CLASS_UID * 100 + TERMINATE,
        "type_name": "Process Activity: Terminate",
        "time": end.time.as_millisecond(),
        "severity_id": 1,
        "severity": "Informational",
        "status_id": 1,
        "status": "Success",
        "message": format!("session {} ended", end.session),
        "metadata": metadata(seq, end.time, &[]),
        "actor": actor,
        "device": device(facts.map(|facts| facts.host.as_str())),
        "process": process,
        "unmapped": {
            "session": end.session,
            "signal": end.signal,
            "duration_ms": end.duration_ms,
            "user_cpu_ms": end.user_cpu_ms,
            "system_cpu_ms": end.system_cpu_ms,
            "max_rss_kib": end.max_rss_kib,
            "reason": end.reason,
        },
    });
    if let Some(code) = end.exit_code {
        value["exit_code"] = json!(code);
    }
    if let Some(reason) = &end.reason {
        value["status_detail"] = json!(reason);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VerifierKey;
    use crate::merkle::root_of;
    use crate::note::Checkpoint;

    #[test]
    fn frontier_root_matches_the_reference_root() {
        let leaves: Vec<Hash> = (0u8..20).map(|i| leaf_hash(&[i])).collect();
        let mut frontier = Frontier::default();
        assert_eq!(frontier.root(), root_of(&[]));
        for (count, leaf) in leaves.iter().enumerate() {
            frontier.append(*leaf);
            assert_eq!(frontier.root(), root_of(&leaves[..=count]), "{count}");
        }
    }

    fn decision(package: &str, time: &str, action: &str) -> Event {
        let blocked = action == "block";
        Event::Decision(DecisionEvent {
            time: time.parse().unwrap(),
            identity: "anonymous@127.0.0.1".to_owned(),
            ecosystem: "npm".to_owned(),
            package: package.to_owned(),
            version: Some("1.0.0".to_owned()),
            request: "artifact".to_owned(),
            action: action.to_owned(),
            rules: blocked
                .then(|| "moat.vulnerable".to_owned())
                .into_iter()
                .collect(),
            advisories: Vec::new(),
            approved: Vec::new(),
            message: blocked.then(|| format!("moat: blocked {package}@1.0.0")),
            repeats: None,
        })
    }

    const OLD: &str = "2020-01-01T00:00:00Z";
    const NEW: &str = "2026-01-01T00:00:00Z";

    /// A log of `waves` batches of concurrent appends, one event in three from long ago.
    fn log_in_batches(waves: usize, per_wave: usize) -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.db")).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        runtime.block_on(async {
            for wave in 0..waves {
                let mut tasks = Vec::new();
                for i in 0..per_wave {
                    let time = if (wave + i) % 3 == 0 { OLD } else { NEW };
                    let event = decision(&format!("p{wave}-{i}"), time, "allow");
                    let log = log.clone();
                    tasks.push(tokio::spawn(async move { log.append(event).await }));
                }
                for task in tasks {
                    task.await.unwrap().unwrap();
                }
            }
            log.shutdown().await;
        });
        (dir, log)
    }

    fn export_text(log: &AuditLog, format: Format, since: Option<&str>) -> String {
        let options = ExportOptions {
            format,
            since: since.map(|since| since.parse().unwrap()),
        };
        let mut out = Vec::new();
        export(log, &options, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// What a SIEM does with a JSON Lines export (see the module docs), with a tree of its own;
    /// returns the exported events' seqs.
    fn recompute_roots(text: &str, key: &VerifierKey) -> Vec<u64> {
        let mut tree = Frontier::default();
        let mut seqs = Vec::new();
        let mut last_type = String::new();
        for line in text.lines() {
            let value: Value = serde_json::from_str(line).unwrap();
            let kind = value["type"].as_str().unwrap().to_owned();
            match kind.as_str() {
                "event" => {
                    assert_eq!(value["index"].as_u64().unwrap(), tree.size(), "{line}");
                    let leaf = value["leaf"].as_str().unwrap();
                    let hash = leaf_hash(leaf.as_bytes());
                    assert_eq!(value["leaf_hash"], hash.to_base64());
                    let event: Value = serde_json::from_str(leaf).unwrap();
                    assert_eq!(event, value["event"]);
                    tree.append(hash);
                    seqs.push(value["seq"].as_u64().unwrap());
                }
                "frontier" => {
                    let hashes = value["hashes"].as_array().unwrap().iter();
                    tree = Frontier::from_parts(
                        value["size"].as_u64().unwrap(),
                        hashes
                            .map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap())
                            .collect(),
                    );
                }
                "checkpoint" => {
                    let note = value["note"].as_str().unwrap();
                    let checkpoint = Checkpoint::open(note, key).unwrap();
                    assert_eq!(checkpoint.size, tree.size(), "{line}");
                    assert_eq!(checkpoint.root, tree.root(), "{line}");
                    assert_eq!(value["root"], checkpoint.root.to_base64());
                }
                other => panic!("unknown line type {other}"),
            }
            last_type = kind;
        }
        if !text.is_empty() {
            assert_eq!(last_type, "checkpoint", "an export ends with a checkpoint");
        }
        seqs
    }

    #[test]
    fn jsonl_lets_a_siem_recompute_every_checkpoint() {
        let (_dir, log) = log_in_batches(6, 50);
        let text = export_text(&log, Format::Jsonl, None);
        let seqs = recompute_roots(&text, &log.verifier().unwrap());
        assert_eq!(seqs, (1..=300).collect::<Vec<u64>>());
        let checkpoints = log.checkpoints_after(0, usize::MAX).unwrap();
        let lines = text
            .lines()
            .filter(|l| l.contains(r#""type":"checkpoint""#));
        assert_eq!(lines.count(), checkpoints.len());
        assert!(!text.contains(r#""type":"frontier""#), "{text}");
        // Checkpoints sit right after their batch's last event.
        let mut previous_seq = 0;
        for line in text.lines() {
            let value: Value = serde_json::from_str(line).unwrap();
            match value["type"].as_str().unwrap() {
                "event" => previous_seq = value["seq"].as_u64().unwrap(),
                _ => assert_eq!(value["size"].as_u64().unwrap(), previous_seq),
            }
        }
    }

    #[test]
    fn since_leaves_out_older_events_and_roots_still_verify() {
        let (_dir, log) = log_in_batches(6, 50);
        let text = export_text(&log, Format::Jsonl, Some("2025-01-01T00:00:00Z"));
        let seqs = recompute_roots(&text, &log.verifier().unwrap());
        let newer: Vec<u64> = log
            .events_after(0, usize::MAX)
            .unwrap()
            .into_iter()
            .filter(|stored| stored.event.time() >= NEW.parse().unwrap())
            .map(|stored| stored.seq)
            .collect();
        assert_eq!(seqs, newer);
        assert!(text.contains(r#""type":"frontier""#), "{text}");
        assert!(!text.contains(OLD), "an old event was exported");

        let nothing = export_text(&log, Format::Jsonl, Some("2027-01-01T00:00:00Z"));
        assert_eq!(nothing, "");
    }

    #[test]
    fn an_empty_log_exports_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.db")).unwrap();
        assert_eq!(export_text(&log, Format::Jsonl, None), "");
        assert_eq!(export_text(&log, Format::Ocsf, None), "");
    }

    #[test]
    fn ocsf_maps_a_blocked_decision_to_a_failed_api_activity() {
        let stored = decision("event-stream", "2026-01-02T03:04:05Z", "block");
        let Event::Decision(decision) = &stored else {
            unreachable!()
        };
        let value = api_activity(7, decision);
        let text = serde_json::to_string_pretty(&value).unwrap();
        insta::assert_snapshot!(text, @r#"
        {
          "class_uid": 6003,
          "class_name": "API Activity",
          "category_uid": 6,
          "category_name": "Application Activity",
          "activity_id": 2,
          "activity_name": "Read",
          "type_uid": 600302,
          "type_name": "API Activity: Read",
          "time": 1767323045000,
          "severity_id": 4,
          "severity": "High",
          "status_id": 2,
          "status": "Failure",
          "message": "block npm artifact event-stream@1.0.0",
          "metadata": {
            "version": "1.5.0",
            "product": {
              "name": "moat",
              "vendor_name": "moat"
            },
            "uid": "7",
            "log_name": "audit",
            "original_time": "2026-01-02T03:04:05Z",
            "profiles": [
              "security_control"
            ]
          },
          "actor": {
            "user": {
              "name": "anonymous@127.0.0.1"
            }
          },
          "src_endpoint": {
            "ip": "127.0.0.1"
          },
          "api": {
            "operation": "artifact",
            "service": {
              "name": "moat gate (npm)"
            }
          },
          "resources": [
            {
              "name": "event-stream",
              "type": "npm package",
              "uid": "npm:event-stream@1.0.0",
              "version": "1.0.0"
            }
          ],
          "action_id": 2,
          "action": "Denied",
          "disposition_id": 2,
          "disposition": "Blocked",
          "is_alert": true,
          "unmapped": {
            "verdict": "block",
            "rules": [
              "moat.vulnerable"
            ],
            "advisories": [],
            "approved": []
          },
          "status_detail": "moat: blocked event-stream@1.0.0"
        }
        "#);
    }

    #[test]
    fn ocsf_maps_sessions_to_process_launch_and_terminate() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.db")).unwrap();
        let start = Event::SessionStart(SessionStart {
            time: "2026-01-02T03:00:00Z".parse().unwrap(),
            session: "s1".to_owned(),
            operator: "alice".to_owned(),
            agent: "claude".to_owned(),
            command: vec!["claude".to_owned(), "-p".to_owned(), "hi".to_owned()],
            workspace: "/work".to_owned(),
            read_only: vec!["/srv/docs".to_owned()],
            backend: "embedded".to_owned(),
            policy: "abc".to_owned(),
            host: "build-1".to_owned(),
            enforced: vec!["landlock".to_owned()],
            waived: Vec::new(),
        });
        let end = Event::SessionEnd(SessionEnd {
            time: "2026-01-02T03:05:00Z".parse().unwrap(),
            session: "s1".to_owned(),
            exit_code: Some(3),
            signal: None,
            duration_ms: 300_000,
            user_cpu_ms: 1,
            system_cpu_ms: 2,
            max_rss_kib: 3,
            reason: None,
        });
        for event in [start, decision("lodash", NEW, "allow"), end] {
            log.append_blocking(event).unwrap();
        }
        let text = export_text(&log, Format::Ocsf, None);
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        let (launch, allowed, terminate) = (&lines[0], &lines[1], &lines[2]);
        assert_eq!(launch["type_uid"], 100701);
        assert_eq!(launch["category_uid"], 1);
        assert_eq!(launch["actor"]["user"]["name"], "alice");
        assert_eq!(launch["process"]["cmd_line"], "claude -p hi");
        assert_eq!(launch["device"]["hostname"], "build-1");
        assert_eq!(launch["time"], 1_767_322_800_000_i64);
        assert_eq!(launch["metadata"]["uid"], "1");
        assert_eq!(launch["unmapped"]["workspace"], "/work");
        assert_eq!(launch["unmapped"]["read_only"], json!(["/srv/docs"]));
        assert_eq!(allowed["type_uid"], 600302);
        assert_eq!(allowed["status_id"], 1);
        assert_eq!(allowed["severity_id"], 1);
        assert!(allowed.get("status_detail").is_none(), "{allowed}");
        assert_eq!(terminate["type_uid"], 100702);
        assert_eq!(terminate["exit_code"], 3);
        assert_eq!(terminate["actor"]["user"]["name"], "alice");
        assert_eq!(terminate["process"]["name"], "claude");
        assert_eq!(terminate["metadata"]["uid"], "3");

        // The start is left out, but the end still knows who ran the session.
        let since = export_text(&log, Format::Ocsf, Some("2026-01-02T03:01:00Z"));
        let ended: Vec<Value> = since
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(ended.len(), 1, "{since}");
        assert_eq!(ended[0]["actor"]["user"]["name"], "alice");
    }
}

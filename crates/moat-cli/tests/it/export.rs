//! `moat audit export`: a SIEM recomputes every signed root from a JSON Lines export with only
//! the public key; OCSF lines; `--since`, `--output`, a closed pipe.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use moat_audit::merkle::{Hash, leaf_hash, node_hash};
use moat_audit::{AuditLog, Checkpoint, DecisionEvent, Event, VerifierKey};
use moat_test_support::gate::{MoatOutput, run_moat};
use serde_json::Value;

use crate::MOAT;

const OLD: &str = "2020-01-01T00:00:00Z";
const NEW: &str = "2026-01-01T00:00:00Z";

fn moat_in(data: &Path, args: &[&str]) -> MoatOutput {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--data-dir", data.to_str().expect("utf-8 path")]);
    run_moat(Path::new(MOAT), &all)
}

fn decision(package: &str, time: &str, action: &str) -> Event {
    let blocked = action == "block";
    Event::Decision(DecisionEvent {
        time: time.parse().expect("timestamp"),
        identity: "anonymous@127.0.0.1".to_owned(),
        ecosystem: "npm".to_owned(),
        package: package.to_owned(),
        version: Some("1.0.0".to_owned()),
        request: "artifact".to_owned(),
        action: action.to_owned(),
        rules: if blocked {
            vec!["moat.denied".to_owned()]
        } else {
            Vec::new()
        },
        advisories: Vec::new(),
        approved: Vec::new(),
        message: blocked.then(|| format!("moat: blocked {package}@1.0.0 (moat.denied)")),
        repeats: None,
    })
}

/// A log in `data` of `waves` batches of `per_wave` concurrent appends; one event in three is
/// from 2020, the others from 2026.
fn write_log(data: &Path, waves: usize, per_wave: usize) {
    std::fs::create_dir_all(data).expect("data dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let log = AuditLog::open(&data.join("audit.db")).expect("open");
        for wave in 0..waves {
            let mut tasks = Vec::new();
            for i in 0..per_wave {
                let time = if (wave + i) % 3 == 0 { OLD } else { NEW };
                let event = decision(&format!("p{wave}-{i}"), time, "allow");
                let log = log.clone();
                tasks.push(tokio::spawn(async move { log.append(event).await }));
            }
            for task in tasks {
                task.await.expect("task").expect("append");
            }
        }
        log.shutdown().await;
    });
}

/// The tree a SIEM keeps: the roots of its complete subtrees, largest first.
#[derive(Default)]
struct Tree {
    size: u64,
    subtrees: Vec<Hash>,
}

impl Tree {
    fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self.subtrees.pop().expect("a subtree per set bit");
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.subtrees.push(hash);
        self.size += 1;
    }

    fn root(&self) -> Hash {
        let mut subtrees = self.subtrees.iter().rev();
        let last = *subtrees.next().expect("a non-empty tree");
        subtrees.fold(last, |right, left| node_hash(left, &right))
    }
}

/// What a SIEM does with a JSON Lines export, with only the log's public key: recompute every
/// leaf hash and every checkpoint's root, check every signature. Returns the exported seqs and
/// the number of checkpoints checked.
fn recompute_roots(export: &str, key: &VerifierKey) -> (Vec<u64>, usize) {
    let mut tree = Tree::default();
    let mut seqs = Vec::new();
    let mut checked = 0;
    let mut last_type = String::new();
    for line in export.lines() {
        let value: Value = serde_json::from_str(line).expect("a JSON line");
        let kind = value["type"].as_str().expect("type").to_owned();
        match kind.as_str() {
            "event" => {
                assert_eq!(value["index"].as_u64(), Some(tree.size), "{line}");
                let leaf = value["leaf"].as_str().expect("leaf");
                let hash = leaf_hash(leaf.as_bytes());
                assert_eq!(value["leaf_hash"], hash.to_base64(), "{line}");
                tree.push(hash);
                seqs.push(value["seq"].as_u64().expect("seq"));
            }
            "frontier" => {
                let subtrees = value["hashes"].as_array().expect("hashes").iter();
                tree = Tree {
                    size: value["size"].as_u64().expect("size"),
                    subtrees: subtrees
                        .map(|hash| Hash::from_base64(hash.as_str().expect("text")).expect("hash"))
                        .collect(),
                };
            }
            "checkpoint" => {
                let note = value["note"].as_str().expect("note");
                let checkpoint = Checkpoint::open(note, key).expect("signed by the log's key");
                assert_eq!(checkpoint.size, tree.size, "{line}");
                assert_eq!(checkpoint.root, tree.root(), "{line}");
                assert_eq!(value["root"], checkpoint.root.to_base64(), "{line}");
                checked += 1;
            }
            other => panic!("unknown line type {other}: {line}"),
        }
        last_type = kind;
    }
    assert_eq!(last_type, "checkpoint", "the export ends with a checkpoint");
    (seqs, checked)
}

fn public_key(data: &Path) -> VerifierKey {
    let key = moat_in(data, &["audit", "key"]);
    key.assert_success();
    VerifierKey::parse(key.stdout.trim()).expect("verifier key")
}

#[test]
fn a_siem_recomputes_every_root_of_a_jsonl_export() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    write_log(&data, 8, 40);
    let key = public_key(&data);

    let export = moat_in(&data, &["audit", "export", "--format", "jsonl"]);
    export.assert_success();
    let (seqs, checked) = recompute_roots(&export.stdout, &key);
    assert_eq!(seqs, (1..=320).collect::<Vec<u64>>());
    let verified = moat_in(&data, &["audit", "verify", "--json"]);
    verified.assert_success();
    assert_eq!(
        verified.json()["checkpoints"].as_u64(),
        Some(checked as u64),
        "every checkpoint of the log is in the export"
    );
    assert!(checked < 320, "appends were batched: {checked} checkpoints");

    // --output writes the same lines to a file.
    let file = dir.path().join("export.jsonl");
    let written = moat_in(
        &data,
        &["audit", "export", "--output", file.to_str().expect("utf-8")],
    );
    written.assert_success();
    assert_eq!(written.stdout, "");
    let text = std::fs::read_to_string(&file).expect("export file");
    assert_eq!(text, export.stdout);
}

#[test]
fn since_leaves_out_older_events_and_every_root_still_verifies() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    write_log(&data, 8, 40);
    let key = public_key(&data);

    let export = moat_in(
        &data,
        &["audit", "export", "--since", "2025-06-01T00:00:00Z"],
    );
    export.assert_success();
    let (seqs, checked) = recompute_roots(&export.stdout, &key);
    assert!(checked > 0);
    assert!(!export.stdout.contains(OLD), "an older event was exported");
    assert!(export.stdout.contains(r#""type":"frontier""#));
    let listed = moat_in(&data, &["audit", "list", "--json"]);
    let newer: Vec<u64> = listed
        .json()
        .as_array()
        .expect("array")
        .iter()
        .filter(|stored| stored["event"]["time"] == NEW)
        .map(|stored| stored["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, newer);

    // An age: every event of the log is older than a day.
    let recent = moat_in(&data, &["audit", "export", "--since", "24h"]);
    recent.assert_success();
    assert_eq!(recent.stdout, "");

    let bad = moat_in(&data, &["audit", "export", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(1), "{bad}");
    assert!(bad.stderr.contains("hint: "), "{bad}");
}

#[test]
fn ocsf_export_has_one_api_activity_per_decision() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let log = AuditLog::open(&data.join("audit.db")).expect("open");
        for (name, action) in [("lodash", "allow"), ("event-stream", "block")] {
            log.append(decision(name, NEW, action))
                .await
                .expect("append");
        }
        log.shutdown().await;
    });

    let export = moat_in(&data, &["audit", "export", "--format", "ocsf"]);
    export.assert_success();
    let lines: Vec<Value> = export
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{export}");
    for (seq, line) in (1..).zip(&lines) {
        assert_eq!(line["class_uid"], 6003, "{line}");
        assert_eq!(line["category_uid"], 6, "{line}");
        assert_eq!(line["type_uid"], 600302, "{line}");
        assert_eq!(line["metadata"]["uid"], seq.to_string(), "{line}");
        assert_eq!(line["metadata"]["product"]["name"], "moat", "{line}");
        assert_eq!(line["time"], 1_767_225_600_000_i64, "{line}");
    }
    assert_eq!(lines[0]["status"], "Success");
    assert_eq!(lines[1]["status"], "Failure");
    assert_eq!(lines[1]["status_id"], 2);
    assert_eq!(
        lines[1]["status_detail"],
        "moat: blocked event-stream@1.0.0 (moat.denied)"
    );
    assert_eq!(lines[1]["resources"][0]["uid"], "npm:event-stream@1.0.0");
    assert_eq!(lines[1]["unmapped"]["rules"][0], "moat.denied");
}

/// `moat audit export | head -1`: the reader leaves early; the export stops without a panic or
/// an error message.
#[test]
fn export_into_a_closed_pipe_stops_quietly() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    // About 1 MB of lines: far more than a pipe buffers.
    write_log(&data, 4, 500);
    let mut child = Command::new(MOAT)
        .args(["audit", "export", "--data-dir"])
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn moat");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("first line");
    assert!(first.starts_with(r#"{"type":"event","seq":1,"#), "{first}");
    drop(stdout);
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert_eq!(stderr, "");
}

#[test]
fn export_help_documents_the_line_format() {
    let help = run_moat(Path::new(MOAT), &["audit", "export", "--help"]);
    help.assert_success();
    for needle in [
        r#"{"type":"event","seq":S,"index":S-1,"leaf_hash":H,"leaf":L,"event":{…}}"#,
        r#"{"type":"checkpoint","size":N,"root":R,"origin":O,"note":T}"#,
        r#"{"type":"frontier","size":K,"hashes":[…]}"#,
        "OCSF 1.5.0",
        "--since <TIME>",
        "--output <FILE>",
    ] {
        assert!(help.stdout.contains(needle), "{needle} missing:\n{help}");
    }
}

//! `verify`: recompute the whole tree from the stored events and hold every stored node and
//! checkpoint against it; optionally prove the log extends a checkpoint saved elsewhere.

use crate::merkle::{self, Hash};
use crate::note::{Checkpoint, VerifierKey, note_hash, note_text};
use crate::store::Read;
use crate::{AuditError, AuditLog};

/// At most this many problems are reported (the lowest indexes first).
const MAX_PROBLEMS: usize = 20;

/// Checkpoint signatures verified together (a failed batch is redone one by one).
const SIGNATURE_BATCH: usize = 4096;

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The first leaf index (0-based) the problem puts in doubt, when there is one.
    pub index: Option<u64>,
    /// Stable id: `event-missing`, `leaf-mismatch`, `node-mismatch`, `node-missing`,
    /// `node-extra`, `checkpoint-signature`, `checkpoint-chain`, `checkpoint-root`,
    /// `checkpoint-beyond-log`, `unsigned-events`, `against-signature`, `against-truncated`, `against-inconsistent`.
    pub kind: &'static str,
    /// What was found, for people.
    pub message: String,
}

/// The outcome of [`AuditLog::verify`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Events in the log.
    pub size: u64,
    /// Root of the tree recomputed from the events.
    pub root: Hash,
    /// Stored checkpoints checked.
    pub checkpoints: u64,
    /// The checkpoint saved elsewhere that the log was compared with, when given and valid.
    pub against: Option<Checkpoint>,
    /// The lowest index among the problems.
    pub first_bad_index: Option<u64>,
    /// Problems, lowest index first (at most 20).
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// No problem found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl AuditLog {
    /// Verify the whole log with `key`: recompute every leaf hash and the tree, compare every
    /// stored node, check every stored checkpoint's signature and root (each checkpoint matching
    /// the recomputed root of its prefix also makes consecutive checkpoints consistent), and
    /// that every event is covered by a checkpoint. With `against` (a signed checkpoint note
    /// saved elsewhere), prove the log is an extension of it: this is what catches truncation
    /// and rollback to an older copy, which leave a self-consistent log behind.
    ///
    /// `Err` only when the store cannot be read; tampering is reported in the [`VerifyReport`].
    pub fn verify(
        &self,
        key: &VerifierKey,
        against: Option<&str>,
    ) -> Result<VerifyReport, AuditError> {
        let key = key.clone();
        let against = against.map(str::to_owned);
        self.read_snapshot(move |store| verify(store, &key, against.as_deref()))
    }
}

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, index: Option<u64>, kind: &'static str, message: String) {
        self.0.push(Problem {
            index,
            kind,
            message,
        });
    }
}

fn verify(
    store: &mut dyn Read,
    key: &VerifierKey,
    against: Option<&str>,
) -> Result<VerifyReport, AuditError> {
    let mut problems = Problems(Vec::new());
    let levels = recompute(store, &mut problems)?;
    let size = levels.first().map_or(0, |leaves| leaves.len() as u64);
    compare_nodes(store, &levels, size, &mut problems)?;
    let root = root_at(&levels, size);
    let checkpoints = check_checkpoints(store, key, &levels, size, &mut problems)?;

    let mut saved = None;
    if let Some(note) = against {
        match Checkpoint::open(note, key) {
            Err(e) => problems.add(
                None,
                "against-signature",
                format!("the saved checkpoint does not verify: {e}"),
            ),
            Ok(checkpoint) if checkpoint.size > size => problems.add(
                Some(size),
                "against-truncated",
                format!(
                    "the log has {size} events but a checkpoint saved elsewhere has {}: events \
                     from index {size} on are gone (truncated or rolled back)",
                    checkpoint.size
                ),
            ),
            Ok(checkpoint) => {
                let lookup = &mut |level: u32, index: u64| {
                    Ok::<_, std::convert::Infallible>(levels[level as usize][index as usize])
                };
                let consistent = match merkle::consistency_proof(checkpoint.size, size, lookup) {
                    Ok(Ok(proof)) => merkle::verify_consistency(
                        checkpoint.size,
                        size,
                        &checkpoint.root,
                        &root,
                        &proof,
                    ),
                    Ok(Err(e)) => Err(e),
                    Err(never) => match never {},
                };
                if let Err(e) = consistent {
                    problems.add(
                        None,
                        "against-inconsistent",
                        format!(
                            "the log is not an extension of the saved checkpoint of size {}: {e} \
                             (history before index {} was rewritten)",
                            checkpoint.size, checkpoint.size
                        ),
                    );
                }
                saved = Some(checkpoint);
            }
        }
    }

    let mut problems = problems.0;
    problems.sort_by_key(|problem| problem.index.unwrap_or(u64::MAX));
    problems.truncate(MAX_PROBLEMS);
    Ok(VerifyReport {
        size,
        root,
        checkpoints,
        against: saved,
        first_bad_index: problems.iter().filter_map(|problem| problem.index).min(),
        problems,
    })
}

/// Every level of the tree recomputed from the stored events (level 0: leaf hashes).
fn recompute(store: &mut dyn Read, problems: &mut Problems) -> Result<Vec<Vec<Hash>>, AuditError> {
    let mut leaves = Vec::new();
    let mut gap_reported = false;
    store.each_event(&mut |seq, body| {
        let index = leaves.len() as u64;
        if !gap_reported && seq != (index + 1) as i64 {
            gap_reported = true;
            problems.add(
                Some(index),
                "event-missing",
                format!(
                    "expected seq {} at index {index}, found seq {seq}: events were deleted or \
                     renumbered",
                    index + 1
                ),
            );
        }
        leaves.push(merkle::leaf_hash(body));
    })?;
    let mut levels = vec![leaves];
    while levels.last().is_some_and(|level| level.len() > 1) {
        let below = levels.last().map(Vec::as_slice).unwrap_or_default();
        let above: Vec<Hash> = below
            .chunks_exact(2)
            .map(|pair| merkle::node_hash(&pair[0], &pair[1]))
            .collect();
        levels.push(above);
    }
    Ok(levels)
}

/// The root of the first `size` leaves, from the recomputed complete subtrees.
fn root_at(levels: &[Vec<Hash>], size: u64) -> Hash {
    let mut lookup = |level: u32, index: u64| {
        Ok::<_, std::convert::Infallible>(levels[level as usize][index as usize])
    };
    match merkle::range_hash(0, size, &mut lookup) {
        Ok(root) => root,
        Err(never) => match never {},
    }
}

fn compare_nodes(
    store: &mut dyn Read,
    levels: &[Vec<Hash>],
    size: u64,
    problems: &mut Problems,
) -> Result<(), AuditError> {
    // Rows seen per level, to find missing ones.
    let mut seen = vec![0u64; levels.len()];
    let mut first_mismatch: Option<u64> = None;
    let mut first_leaf_mismatch: Option<u64> = None;
    // Leaf indexes whose stored hash differs (ascending: level 0 comes first). A node above one
    // of them differs as a consequence; only a node whose leaves all match was itself changed.
    let mut bad_leaves: Vec<u64> = Vec::new();
    let mut first_extra: Option<u64> = None;
    let mut first_missing: Option<u64> = None;
    store.each_node(&mut |level, index, hash| {
        let (Ok(level), Ok(index)) = (usize::try_from(level), u64::try_from(index)) else {
            first_extra = Some(first_extra.map_or(size, |i| i.min(size)));
            return;
        };
        let first_leaf = if level < 64 { index << level } else { u64::MAX };
        let Some(expected) = levels.get(level).and_then(|l| l.get(index as usize)) else {
            first_extra = Some(first_extra.map_or(first_leaf.min(size), |i| i.min(size)));
            return;
        };
        if index > seen[level] {
            let missing = seen[level] << level;
            first_missing = Some(first_missing.map_or(missing, |i| i.min(missing)));
        }
        seen[level] = index + 1;
        if Hash::from_slice(hash).as_ref() != Some(expected) {
            if level == 0 {
                bad_leaves.push(index);
                first_leaf_mismatch = Some(first_leaf_mismatch.map_or(index, |i| i.min(index)));
            } else {
                let end = (index + 1) << level;
                let below = bad_leaves.partition_point(|&leaf| leaf < first_leaf);
                let explained = bad_leaves.get(below).is_some_and(|&leaf| leaf < end);
                if !explained {
                    first_mismatch = Some(first_mismatch.map_or(first_leaf, |i| i.min(first_leaf)));
                }
            }
        }
    })?;
    for (level, nodes) in levels.iter().enumerate() {
        if seen[level] < nodes.len() as u64 {
            let missing = seen[level] << level;
            first_missing = Some(first_missing.map_or(missing, |i| i.min(missing)));
        }
    }
    if let Some(index) = first_leaf_mismatch {
        problems.add(
            Some(index),
            "leaf-mismatch",
            format!(
                "the event at index {index} (seq {}) does not hash to its stored leaf hash: \
                 it was edited, replaced or moved",
                index + 1
            ),
        );
    }
    if let Some(index) = first_mismatch {
        problems.add(
            Some(index),
            "node-mismatch",
            format!(
                "a stored tree node covering index {index} differs from the hash of the events"
            ),
        );
    }
    if let Some(index) = first_missing {
        problems.add(
            Some(index),
            "node-missing",
            format!("the tree node covering index {index} is missing"),
        );
    }
    if let Some(index) = first_extra {
        problems.add(
            Some(index),
            "node-extra",
            format!("tree nodes exist beyond the events (from index {index}): events were removed"),
        );
    }
    Ok(())
}

fn check_checkpoints(
    store: &mut dyn Read,
    key: &VerifierKey,
    levels: &[Vec<Hash>],
    size: u64,
    problems: &mut Problems,
) -> Result<u64, AuditError> {
    let stored = store.checkpoints()?;
    let opened = open_chained(&stored, key, problems);

    let mut previous = 0u64;
    let mut covered = 0u64;
    for ((stored_size, _), opened) in stored.iter().zip(opened) {
        let first_new = previous;
        let checkpoint = match opened {
            Ok(checkpoint) => checkpoint,
            Err(message) => {
                problems.add(
                    Some(first_new),
                    "checkpoint-signature",
                    format!("checkpoint at size {stored_size}: {message}"),
                );
                previous = u64::try_from(*stored_size).unwrap_or(previous);
                continue;
            }
        };
        previous = checkpoint.size;
        if *stored_size != checkpoint.size as i64 {
            problems.add(
                Some(first_new),
                "checkpoint-signature",
                format!(
                    "checkpoint stored at size {stored_size} signs size {}",
                    checkpoint.size
                ),
            );
        }
        if checkpoint.size > size {
            problems.add(
                Some(size),
                "checkpoint-beyond-log",
                format!(
                    "a checkpoint signs {} events but the log has {size}: events from index \
                     {size} on are gone",
                    checkpoint.size
                ),
            );
            continue;
        }
        if root_at(levels, checkpoint.size) != checkpoint.root {
            problems.add(
                Some(first_new),
                "checkpoint-root",
                format!(
                    "the events up to size {} do not have the root its checkpoint signs \
                     (changed at or after index {first_new})",
                    checkpoint.size
                ),
            );
        }
        covered = covered.max(checkpoint.size);
    }
    if covered < size {
        problems.add(
            Some(covered),
            "unsigned-events",
            format!(
                "events from index {covered} to {} are covered by no valid checkpoint",
                size - 1
            ),
        );
    }
    Ok(stored.len() as u64)
}

/// Open every stored checkpoint note (oldest first). Each note names the hash of the one
/// before it (`previous`), so an authentic note vouches for its predecessor's every byte: only
/// the notes no authentic successor vouches for have their signatures checked — the newest one,
/// and those around a broken link (or every note of a log written before checkpoints were
/// chained). A link that names another note than the one stored before it is a
/// `checkpoint-chain` problem: a checkpoint was removed, inserted or altered there.
fn open_chained(
    stored: &[(i64, String)],
    key: &VerifierKey,
    problems: &mut Problems,
) -> Vec<Result<Checkpoint, String>> {
    let parsed: Vec<Result<Checkpoint, String>> = stored
        .iter()
        .map(|(_, note)| Checkpoint::parse(note_text(note)).map_err(|e| e.to_string()))
        .collect();
    let hashes: Vec<Hash> = stored.iter().map(|(_, note)| note_hash(note)).collect();
    // `linked[k]`: the note after note k names note k as its previous.
    let linked: Vec<bool> = (0..stored.len())
        .map(|k| {
            parsed
                .get(k + 1)
                .is_some_and(|next| matches!(next, Ok(next) if next.previous == Some(hashes[k])))
        })
        .collect();
    for (k, checkpoint) in parsed.iter().enumerate() {
        let Ok(checkpoint) = checkpoint else { continue };
        let expected = k.checked_sub(1).map(|before| hashes[before]);
        let (index, what) = match (checkpoint.previous, expected) {
            (Some(previous), Some(expected)) if previous != expected => (
                u64::try_from(stored[k - 1].0).unwrap_or(0),
                format!("the checkpoint stored before it (size {})", stored[k - 1].0),
            ),
            (Some(_), None) => (0, "no checkpoint: it is the first one stored".to_owned()),
            _ => continue,
        };
        problems.add(
            Some(index),
            "checkpoint-chain",
            format!(
                "the checkpoint at size {} follows a checkpoint that is not {what}: a checkpoint \
                 was removed, inserted or altered there",
                checkpoint.size
            ),
        );
    }

    let unvouched: Vec<usize> = (0..stored.len()).filter(|&k| !linked[k]).collect();
    let notes: Vec<&str> = unvouched.iter().map(|&k| stored[k].1.as_str()).collect();
    let mut opened: Vec<Option<Result<Checkpoint, String>>> = vec![None; stored.len()];
    for (k, result) in unvouched.into_iter().zip(open_all(&notes, key)) {
        opened[k] = Some(result);
    }
    // Backwards: a linked note is authentic when its successor is; otherwise its own signature
    // decides (checked one by one here, which happens only where the chain is broken above it).
    let mut next_authentic = false;
    for k in (0..stored.len()).rev() {
        let result = match opened[k].take() {
            Some(result) => result,
            None if next_authentic => match &parsed[k] {
                Ok(checkpoint) if checkpoint.origin != key.name() => Err(format!(
                    "origin {} is not the key's log {}",
                    checkpoint.origin,
                    key.name()
                )),
                parsed => parsed.clone(),
            },
            None => Checkpoint::open(&stored[k].1, key).map_err(|e| e.to_string()),
        };
        next_authentic = result.is_ok();
        opened[k] = Some(result);
    }
    opened
        .into_iter()
        .map(|result| result.unwrap_or_else(|| Err("not opened".to_owned())))
        .collect()
}

/// Verify each note's signature, in batches, on all cores.
fn open_all(stored: &[&str], key: &VerifierKey) -> Vec<Result<Checkpoint, String>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = stored.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = stored
            .chunks(chunk)
            .map(|notes| {
                scope.spawn(move || {
                    notes
                        .chunks(SIGNATURE_BATCH)
                        .flat_map(|batch| Checkpoint::open_many(batch, key))
                        .map(|opened| opened.map_err(|e| e.to_string()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| vec![Err("verification thread panicked".to_owned())])
            })
            .collect()
    })
}

//! The stored tree: node lookups, the head check on open, checkpoints and proofs.

use rusqlite::{Connection, OptionalExtension as _, params};

use crate::merkle::{self, Frontier, Hash, ProofError};
use crate::note::{Checkpoint, NoteError, VerifierKey};
use crate::{AuditError, AuditLog, schema};

fn store_error(what: &str) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
    move |e| AuditError::Store(format!("{what}: {e}"))
}

fn to_i64(value: u64) -> Result<i64, AuditError> {
    i64::try_from(value).map_err(|_| AuditError::OutOfRange(format!("{value} is too large")))
}

/// The stored hash of complete subtree `(level, index)`.
pub(crate) fn node(conn: &Connection, level: u32, index: u64) -> Result<Hash, AuditError> {
    let hash: Option<Vec<u8>> = conn
        .prepare_cached("SELECT hash FROM nodes WHERE level = ?1 AND idx = ?2")
        .and_then(|mut statement| {
            statement
                .query_row(params![level, to_i64(index).unwrap_or(-1)], |row| {
                    row.get(0)
                })
                .optional()
        })
        .map_err(store_error("cannot read a tree node"))?;
    hash.as_deref().and_then(Hash::from_slice).ok_or_else(|| {
        AuditError::Store(format!(
            "tree node ({level}, {index}) is missing or malformed; run `moat audit verify`"
        ))
    })
}

/// The frontier of the stored tree of `size` leaves.
pub(crate) fn load_frontier(conn: &Connection, size: u64) -> Result<Frontier, AuditError> {
    Frontier::load(size, &mut |level, index| node(conn, level, index))
}

/// The newest checkpoint: `(size, note)`.
pub(crate) fn last_checkpoint(conn: &Connection) -> Result<Option<(u64, String)>, AuditError> {
    conn.query_row(
        "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1",
        [],
        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
    )
    .optional()
    .map_err(store_error("cannot read the last checkpoint"))?
    .map(|(size, note)| {
        u64::try_from(size)
            .map(|size| (size, note))
            .map_err(|_| AuditError::Store(format!("checkpoint has a negative size {size}")))
    })
    .transpose()
}

/// On open: the stored tree must be the one the last checkpoint signs, or the writer would go on
/// signing on top of a tampered history. Returns the tree to continue from.
pub(crate) fn check_head(conn: &Connection, key: &VerifierKey) -> Result<Frontier, AuditError> {
    let size = schema::last_seq(conn).map_err(store_error("cannot count events"))?;
    let refuse = |why: String| {
        AuditError::Store(format!(
            "the audit log does not match its last signed checkpoint: {why}; \
             run `moat audit verify` to find the first bad event"
        ))
    };
    let frontier = load_frontier(conn, size)?;
    match last_checkpoint(conn)? {
        None if size == 0 => {}
        None => return Err(refuse(format!("{size} events and no checkpoint"))),
        Some((checkpoint_size, note)) => {
            let checkpoint = Checkpoint::open(&note, key)
                .map_err(|e| refuse(format!("checkpoint {checkpoint_size}: {e}")))?;
            if checkpoint.size != size || checkpoint_size != size {
                return Err(refuse(format!(
                    "{size} events, last checkpoint at size {}",
                    checkpoint.size
                )));
            }
            if checkpoint.root != frontier.root() {
                return Err(refuse("the stored tree has another root".to_owned()));
            }
        }
    }
    Ok(frontier)
}

/// The newest signed checkpoint of the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedCheckpoint {
    /// What it says.
    pub checkpoint: Checkpoint,
    /// The signed note, as stored and served.
    pub note: String,
}

/// An inclusion proof of one leaf in the tree of `size` leaves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InclusionProof {
    /// Leaf index, 0-based (the event's `seq` is `index + 1`).
    pub index: u64,
    /// Tree size the proof is for.
    pub size: u64,
    /// `SHA-256(0x00 || leaf)`.
    pub leaf_hash: Hash,
    /// Sibling hashes, innermost first (RFC 9162 §2.1.3).
    pub proof: Vec<Hash>,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsistencyProof {
    /// The smaller size.
    pub from: u64,
    /// The larger size.
    pub to: u64,
    /// RFC 9162 §2.1.4 proof.
    pub proof: Vec<Hash>,
}

/// Everything needed to check one event offline with only the log's public key: the event as
/// stored (canonical JSON, the leaf), its inclusion proof and the signed checkpoint it leads to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProofBundle {
    /// Leaf index, 0-based.
    pub index: u64,
    /// The event's sequence number (`index + 1`).
    pub seq: u64,
    /// The leaf: the event as canonical JSON.
    pub leaf: String,
    /// Inclusion proof against the checkpoint's tree.
    pub proof: Vec<Hash>,
    /// Tree size of the checkpoint.
    pub size: u64,
    /// The signed checkpoint note.
    pub checkpoint: String,
}

/// Why an offline proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The checkpoint is not signed by the key, or malformed.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] NoteError),
    /// The proof does not put the leaf in the checkpoint's tree.
    #[error("proof: {0}")]
    Proof(#[from] ProofError),
}

/// Check a [`ProofBundle`] with only the log's public key: the checkpoint's signature, then the
/// leaf's inclusion in the tree it signs. Returns the verified checkpoint.
pub fn verify_bundle(bundle: &ProofBundle, key: &VerifierKey) -> Result<Checkpoint, BundleError> {
    let checkpoint = Checkpoint::open(&bundle.checkpoint, key)?;
    if checkpoint.size != bundle.size {
        return Err(ProofError::Mismatch(format!(
            "proof is for size {} but the checkpoint has size {}",
            bundle.size, checkpoint.size
        ))
        .into());
    }
    if bundle.seq != bundle.index + 1 {
        return Err(ProofError::Mismatch("seq is not index + 1".into()).into());
    }
    let leaf = merkle::leaf_hash(bundle.leaf.as_bytes());
    merkle::verify_inclusion(
        bundle.index,
        checkpoint.size,
        &leaf,
        &bundle.proof,
        &checkpoint.root,
    )?;
    Ok(checkpoint)
}

/// A stored checkpoint note with its body parsed (the signature is checked by `verify`).
fn signed(note: String) -> Result<SignedCheckpoint, AuditError> {
    let checkpoint = Checkpoint::parse(note.split("\n\n").next().unwrap_or(""))
        .map_err(|e| AuditError::Store(format!("stored checkpoint: {e}")))?;
    Ok(SignedCheckpoint { checkpoint, note })
}

impl AuditLog {
    /// The log's public key: the writer's own, or, for a read-only handle, derived from the key
    /// file beside the store.
    pub fn verifier(&self) -> Result<VerifierKey, AuditError> {
        if let Some(key) = &self.inner.verifier {
            return Ok(key.clone());
        }
        let key = crate::note::SignerKey::load(&crate::key_path(&self.inner.path))
            .map_err(|e| AuditError::Key(e.to_string()))?;
        Ok(key.verifier())
    }

    /// The newest signed checkpoint, `None` for an empty log.
    pub fn checkpoint(&self) -> Result<Option<SignedCheckpoint>, AuditError> {
        let Some((_, note)) = last_checkpoint(&self.reader())? else {
            return Ok(None);
        };
        signed(note).map(Some)
    }

    /// Up to `limit` signed checkpoints of a tree size above `after`, smallest first (one per
    /// committed batch).
    pub fn checkpoints_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SignedCheckpoint>, AuditError> {
        let error = store_error("cannot read checkpoints");
        let conn = self.reader();
        let mut statement = conn
            .prepare_cached("SELECT note FROM checkpoints WHERE size > ?1 ORDER BY size LIMIT ?2")
            .map_err(&error)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let notes = statement
            .query_map(params![to_i64(after)?, limit], |row| {
                row.get::<_, String>(0)
            })
            .map_err(&error)?;
        let mut checkpoints = Vec::new();
        for note in notes {
            checkpoints.push(signed(note.map_err(&error)?)?);
        }
        Ok(checkpoints)
    }

    /// The inclusion proof of leaf `index` (0-based) in the tree of `size` leaves (default: the
    /// newest checkpoint's size), from stored node hashes.
    pub fn inclusion_proof(
        &self,
        index: u64,
        size: Option<u64>,
    ) -> Result<InclusionProof, AuditError> {
        let conn = self.reader();
        let size = self.proof_size(&conn, size)?;
        let proof = merkle::inclusion_proof(index, size, &mut |level, i| node(&conn, level, i))?
            .map_err(|e| AuditError::OutOfRange(e.to_string()))?;
        Ok(InclusionProof {
            index,
            size,
            leaf_hash: node(&conn, 0, index)?,
            proof,
        })
    }

    /// The consistency proof from the tree of `from` leaves to the tree of `to` leaves.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<ConsistencyProof, AuditError> {
        let conn = self.reader();
        let to = self.proof_size(&conn, Some(to))?;
        let proof = merkle::consistency_proof(from, to, &mut |level, i| node(&conn, level, i))?
            .map_err(|e| AuditError::OutOfRange(e.to_string()))?;
        Ok(ConsistencyProof { from, to, proof })
    }

    /// Leaf `index` with its inclusion proof against the newest checkpoint, and that checkpoint.
    pub fn prove(&self, index: u64) -> Result<ProofBundle, AuditError> {
        let conn = self.reader();
        let Some((size, note)) = last_checkpoint(&conn)? else {
            return Err(AuditError::OutOfRange("the log is empty".into()));
        };
        if index >= size {
            return Err(AuditError::OutOfRange(format!(
                "index {index} is not in the log of {size} events (indexes are 0-based)"
            )));
        }
        let leaf: String = conn
            .query_row(
                "SELECT body FROM events WHERE seq = ?1",
                [to_i64(index + 1)?],
                |row| row.get(0),
            )
            .map_err(store_error("cannot read the event"))?;
        let proof = merkle::inclusion_proof(index, size, &mut |level, i| node(&conn, level, i))?
            .map_err(|e| AuditError::OutOfRange(e.to_string()))?;
        Ok(ProofBundle {
            index,
            seq: index + 1,
            leaf,
            proof,
            size,
            checkpoint: note,
        })
    }

    /// A requested proof size, checked against the log; `None` means the newest checkpoint's.
    fn proof_size(&self, conn: &Connection, size: Option<u64>) -> Result<u64, AuditError> {
        let count = schema::last_seq(conn).map_err(store_error("cannot count events"))?;
        match size {
            Some(size) if size > count => Err(AuditError::OutOfRange(format!(
                "size {size} is larger than the log ({count} events)"
            ))),
            Some(size) => Ok(size),
            None => Ok(last_checkpoint(conn)?.map_or(0, |(size, _)| size)),
        }
    }
}

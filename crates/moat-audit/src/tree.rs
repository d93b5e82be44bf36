//! The stored tree: node lookups, the head check on open, checkpoints and proofs.

use crate::merkle::{self, Frontier, Hash, ProofError};
use crate::note::{Checkpoint, NoteError, VerifierKey};
use crate::store::Read;
use crate::{AuditError, AuditLog};

fn to_i64(value: u64) -> Result<i64, AuditError> {
    i64::try_from(value).map_err(|_| AuditError::OutOfRange(format!("{value} is too large")))
}

/// The stored hash of complete subtree `(level, index)`.
pub(crate) fn node(store: &mut dyn Read, level: u32, index: u64) -> Result<Hash, AuditError> {
    let hash = store.node(level, to_i64(index).unwrap_or(-1))?;
    hash.as_deref().and_then(Hash::from_slice).ok_or_else(|| {
        AuditError::Store(format!(
            "tree node ({level}, {index}) is missing or malformed; run `moat audit verify`"
        ))
    })
}

/// The frontier of the stored tree of `size` leaves, its nodes read in one query.
pub(crate) fn load_frontier(store: &mut dyn Read, size: u64) -> Result<Frontier, AuditError> {
    let mut wanted = Vec::new();
    Frontier::load(size, &mut |level, index| {
        wanted.push((level, to_i64(index)?));
        Ok::<_, AuditError>(Hash([0; 32]))
    })?;
    let mut found = store.nodes(&wanted)?.into_iter();
    Frontier::load(size, &mut |level, index| {
        found
            .next()
            .flatten()
            .as_deref()
            .and_then(Hash::from_slice)
            .ok_or_else(|| {
                AuditError::Store(format!(
                    "tree node ({level}, {index}) is missing or malformed; run `moat audit verify`"
                ))
            })
    })
}

/// The newest checkpoint: `(size, note)`.
pub(crate) fn last_checkpoint(store: &mut dyn Read) -> Result<Option<(u64, String)>, AuditError> {
    store
        .last_checkpoint()?
        .map(|(size, note)| {
            u64::try_from(size)
                .map(|size| (size, note))
                .map_err(|_| AuditError::Store(format!("checkpoint has a negative size {size}")))
        })
        .transpose()
}

/// On open: the stored tree must be the one the last checkpoint signs, or the writer would go on
/// signing on top of a tampered history. Returns the tree to continue from.
pub(crate) fn check_head(store: &mut dyn Read, key: &VerifierKey) -> Result<Frontier, AuditError> {
    let size = store.last_seq()?;
    let refuse = |why: String| {
        AuditError::Store(format!(
            "the audit log does not match its last signed checkpoint: {why}; \
             run `moat audit verify` to find the first bad event"
        ))
    };
    let frontier = load_frontier(store, size)?;
    match last_checkpoint(store)? {
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
    /// The log's public key: the writer's own, or, for a read-only handle, derived from the
    /// signing key file.
    pub fn verifier(&self) -> Result<VerifierKey, AuditError> {
        if let Some(key) = &self.inner.verifier {
            return Ok(key.clone());
        }
        let key = crate::note::SignerKey::load(&self.inner.key_path)
            .map_err(|e| AuditError::Key(e.to_string()))?;
        Ok(key.verifier())
    }

    /// The newest signed checkpoint, `None` for an empty log.
    pub fn checkpoint(&self) -> Result<Option<SignedCheckpoint>, AuditError> {
        let Some((_, note)) = self.read(last_checkpoint)? else {
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
        let after = to_i64(after)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let notes = self.read(move |store| store.checkpoints_after(after, limit))?;
        notes.into_iter().map(signed).collect()
    }

    /// The inclusion proof of leaf `index` (0-based) in the tree of `size` leaves (default: the
    /// newest checkpoint's size), from stored node hashes.
    pub fn inclusion_proof(
        &self,
        index: u64,
        size: Option<u64>,
    ) -> Result<InclusionProof, AuditError> {
        self.read(move |store| {
            let size = proof_size(store, size)?;
            let proof =
                merkle::inclusion_proof(index, size, &mut |level, i| node(store, level, i))?
                    .map_err(|e| AuditError::OutOfRange(e.to_string()))?;
            Ok(InclusionProof {
                index,
                size,
                leaf_hash: node(store, 0, index)?,
                proof,
            })
        })
    }

    /// The consistency proof from the tree of `from` leaves to the tree of `to` leaves.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<ConsistencyProof, AuditError> {
        self.read(move |store| {
            let to = proof_size(store, Some(to))?;
            let proof = merkle::consistency_proof(from, to, &mut |level, i| node(store, level, i))?
                .map_err(|e| AuditError::OutOfRange(e.to_string()))?;
            Ok(ConsistencyProof { from, to, proof })
        })
    }

    /// Leaf `index` with its inclusion proof against the newest checkpoint, and that checkpoint.
    pub fn prove(&self, index: u64) -> Result<ProofBundle, AuditError> {
        self.read(move |store| {
            let Some((size, note)) = last_checkpoint(store)? else {
                return Err(AuditError::OutOfRange("the log is empty".into()));
            };
            if index >= size {
                return Err(AuditError::OutOfRange(format!(
                    "index {index} is not in the log of {size} events (indexes are 0-based)"
                )));
            }
            let leaf = store.event(to_i64(index + 1)?)?.ok_or_else(|| {
                AuditError::Store(format!(
                    "cannot read the event: seq {} is missing",
                    index + 1
                ))
            })?;
            let proof =
                merkle::inclusion_proof(index, size, &mut |level, i| node(store, level, i))?
                    .map_err(|e| AuditError::OutOfRange(e.to_string()))?;
            Ok(ProofBundle {
                index,
                seq: index + 1,
                leaf,
                proof,
                size,
                checkpoint: note,
            })
        })
    }
}

/// A requested proof size, checked against the log; `None` means the newest checkpoint's.
fn proof_size(store: &mut dyn Read, size: Option<u64>) -> Result<u64, AuditError> {
    let count = store.last_seq()?;
    match size {
        Some(size) if size > count => Err(AuditError::OutOfRange(format!(
            "size {size} is larger than the log ({count} events)"
        ))),
        Some(size) => Ok(size),
        None => Ok(last_checkpoint(store)?.map_or(0, |(size, _)| size)),
    }
}

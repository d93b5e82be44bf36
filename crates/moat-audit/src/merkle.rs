//! The RFC 6962 / RFC 9162 Merkle tree: SHA-256 with a `0x00` prefix for leaves and `0x01` for
//! interior nodes, inclusion and consistency proofs and their verification.
//!
//! Stored trees are addressed by complete subtrees: node `(level, index)` is the hash of leaves
//! `index·2^level .. (index+1)·2^level`. Every hash a proof needs is either such a node or is
//! recomputed from a few of them (the ragged right edge of a tree whose size is not a power of
//! two), so proofs are built from a node lookup function and never from the leaves.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

/// A SHA-256 hash in the tree: a leaf hash, a node hash or a root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The hash as standard base64, the form checkpoints and proofs carry.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// Parse standard base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Option<Hash> {
        let bytes = BASE64.decode(text).ok()?;
        Some(Hash(bytes.try_into().ok()?))
    }

    /// Exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        Some(Hash(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Hash::from_base64(&text)
            .ok_or_else(|| serde::de::Error::custom("expected base64 of a 32-byte hash"))
    }
}

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(data);
    Hash(hasher.finalize().into())
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left.0);
    hasher.update(right.0);
    Hash(hasher.finalize().into())
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// The root of a tree of these leaf hashes, by the RFC's recursive definition (reference
/// implementation for tests and small trees).
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [leaf] => *leaf,
        _ => {
            let k = split_point(leaves.len() as u64) as usize;
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// The largest power of two smaller than `n` (`n > 1`).
fn split_point(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Why a proof cannot be made or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The index or sizes are outside the tree.
    #[error("{0}")]
    OutOfRange(String),
    /// The proof does not lead to the expected root(s).
    #[error("{0}")]
    Mismatch(String),
}

/// The hash of leaves `start..end`, a range the RFC's recursion produces (its start aligned to
/// the largest power of two not above its length), from complete subtrees fetched by `node`.
pub fn range_hash<E>(
    start: u64,
    end: u64,
    node: &mut impl FnMut(u32, u64) -> Result<Hash, E>,
) -> Result<Hash, E> {
    let mut parts = Vec::new();
    let mut position = start;
    let length = end - start;
    for level in (0..64u32).rev() {
        if length >> level & 1 == 1 {
            parts.push(node(level, position >> level)?);
            position += 1 << level;
        }
    }
    let Some(mut hash) = parts.pop() else {
        return Ok(empty_root());
    };
    while let Some(left) = parts.pop() {
        hash = node_hash(&left, &hash);
    }
    Ok(hash)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1), from
/// the innermost sibling outwards.
pub fn inclusion_proof<E>(
    index: u64,
    size: u64,
    node: &mut impl FnMut(u32, u64) -> Result<Hash, E>,
) -> Result<Result<Vec<Hash>, ProofError>, E> {
    if index >= size {
        return Ok(Err(ProofError::OutOfRange(format!(
            "index {index} is not in a tree of size {size}"
        ))));
    }
    let mut proof = Vec::new();
    path(index, 0, size, node, &mut proof)?;
    Ok(Ok(proof))
}

fn path<E>(
    m: u64,
    start: u64,
    n: u64,
    node: &mut impl FnMut(u32, u64) -> Result<Hash, E>,
    proof: &mut Vec<Hash>,
) -> Result<(), E> {
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(m, start, k, node, proof)?;
        proof.push(range_hash(start + k, start + n, node)?);
    } else {
        path(m - k, start + k, n - k, node, proof)?;
        proof.push(range_hash(start, start + k, node)?);
    }
    Ok(())
}

/// The consistency proof between the trees of `first` and `second` leaves (RFC 9162
/// §2.1.4.1); empty when `first` is 0 or equals `second`.
pub fn consistency_proof<E>(
    first: u64,
    second: u64,
    node: &mut impl FnMut(u32, u64) -> Result<Hash, E>,
) -> Result<Result<Vec<Hash>, ProofError>, E> {
    if first > second {
        return Ok(Err(ProofError::OutOfRange(format!(
            "size {first} is larger than size {second}"
        ))));
    }
    let mut proof = Vec::new();
    if first > 0 && first < second {
        subproof(first, 0, second, true, node, &mut proof)?;
    }
    Ok(Ok(proof))
}

fn subproof<E>(
    m: u64,
    start: u64,
    n: u64,
    complete: bool,
    node: &mut impl FnMut(u32, u64) -> Result<Hash, E>,
    proof: &mut Vec<Hash>,
) -> Result<(), E> {
    if m == n {
        if !complete {
            proof.push(range_hash(start, start + n, node)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(m, start, k, complete, node, proof)?;
        proof.push(range_hash(start + k, start + n, node)?);
    } else {
        subproof(m - k, start + k, n - k, false, node, proof)?;
        proof.push(range_hash(start, start + k, node)?);
    }
    Ok(())
}

/// Check that `proof` proves leaf `index` (with hash `leaf`) in the tree of `size` leaves whose
/// root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "index {index} is not in a tree of size {size}"
        )));
    }
    let mut f = index;
    let mut s = size - 1;
    let mut hash = *leaf;
    for sibling in proof {
        if s == 0 {
            return Err(ProofError::Mismatch("inclusion proof is too long".into()));
        }
        if f & 1 == 1 || f == s {
            hash = node_hash(sibling, &hash);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::Mismatch("inclusion proof is too short".into()));
    }
    if hash != *root {
        return Err(ProofError::Mismatch(
            "inclusion proof does not lead to the root".into(),
        ));
    }
    Ok(())
}

/// Check that `proof` proves the tree of `first` leaves with root `first_root` is a prefix of
/// the tree of `second` leaves with root `second_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::OutOfRange(format!(
            "size {first} is larger than size {second}"
        )));
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::Mismatch(
                "consistency proof between equal sizes must be empty".into(),
            ));
        }
        if first_root != second_root {
            return Err(ProofError::Mismatch(
                "equal sizes with different roots".into(),
            ));
        }
        return Ok(());
    }
    if first == 0 {
        if !proof.is_empty() {
            return Err(ProofError::Mismatch(
                "consistency proof from the empty tree must be empty".into(),
            ));
        }
        return Ok(());
    }
    let Some((head, rest)) = proof.split_first() else {
        return Err(ProofError::Mismatch("consistency proof is empty".into()));
    };
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
        path.push(*head);
    } else {
        path.push(*head);
    }
    path.extend_from_slice(rest);

    let mut f = first - 1;
    let mut s = second - 1;
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let mut first_hash = path[0];
    let mut second_hash = path[0];
    for c in &path[1..] {
        if s == 0 {
            return Err(ProofError::Mismatch("consistency proof is too long".into()));
        }
        if f & 1 == 1 || f == s {
            first_hash = node_hash(c, &first_hash);
            second_hash = node_hash(c, &second_hash);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            second_hash = node_hash(&second_hash, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::Mismatch(
            "consistency proof is too short".into(),
        ));
    }
    if first_hash != *first_root {
        return Err(ProofError::Mismatch(format!(
            "consistency proof does not lead to the root of size {first}"
        )));
    }
    if second_hash != *second_root {
        return Err(ProofError::Mismatch(format!(
            "consistency proof does not lead to the root of size {second}"
        )));
    }
    Ok(())
}

/// The right edge of a growing tree: the roots of its maximal complete subtrees, largest first.
/// Appending a leaf yields the nodes that became complete, to be stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the tree of `size` leaves, from its stored complete subtrees.
    pub(crate) fn load<E>(
        size: u64,
        node: &mut impl FnMut(u32, u64) -> Result<Hash, E>,
    ) -> Result<Frontier, E> {
        let mut hashes = Vec::new();
        let mut position = 0;
        for level in (0..64u32).rev() {
            if size >> level & 1 == 1 {
                hashes.push(node(level, position >> level)?);
                position += 1 << level;
            }
        }
        Ok(Frontier { size, hashes })
    }

    /// The frontier of a tree of `size` leaves given by its complete subtrees' roots, largest
    /// first (as an export's `frontier` line carries it).
    #[cfg(test)]
    pub(crate) fn from_parts(size: u64, hashes: Vec<Hash>) -> Frontier {
        Frontier { size, hashes }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The roots of the maximal complete subtrees, largest first.
    pub(crate) fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Append a leaf, keeping nothing of the nodes it completes.
    pub(crate) fn append(&mut self, leaf: Hash) {
        let kept = self.push(leaf, |_, _, _| Ok::<(), std::convert::Infallible>(()));
        if let Err(never) = kept {
            match never {}
        }
    }

    /// Append a leaf; `store` receives `(level, index, hash)` for the leaf and every node it
    /// completes.
    pub(crate) fn push<E>(
        &mut self,
        leaf: Hash,
        mut store: impl FnMut(u32, u64, &Hash) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut hash = leaf;
        let mut level = 0;
        let mut index = self.size;
        store(level, index, &hash)?;
        while self.size >> level & 1 == 1 {
            let Some(left) = self.hashes.pop() else {
                break;
            };
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            store(level, index, &hash)?;
        }
        self.hashes.push(hash);
        self.size += 1;
        Ok(())
    }

    /// The root of the tree so far.
    pub(crate) fn root(&self) -> Hash {
        let mut hashes = self.hashes.iter().rev();
        let Some(mut root) = hashes.next().copied() else {
            return empty_root();
        };
        for left in hashes {
            root = node_hash(left, &root);
        }
        root
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;

    use super::*;

    fn leaves(count: u64) -> Vec<Hash> {
        (0..count)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    /// Build a tree through the frontier, keeping every stored node.
    fn build(leaves: &[Hash]) -> (Frontier, HashMap<(u32, u64), Hash>) {
        let mut frontier = Frontier::default();
        let mut nodes = HashMap::new();
        for leaf in leaves {
            frontier
                .push(*leaf, |level, index, hash| {
                    assert!(nodes.insert((level, index), *hash).is_none());
                    Ok::<_, Infallible>(())
                })
                .unwrap();
        }
        (frontier, nodes)
    }

    #[test]
    fn frontier_roots_and_proofs_agree_with_the_reference_for_every_size() {
        let all = leaves(70);
        let (_, nodes) = build(&all);
        let mut lookup = |level: u32, index: u64| Ok::<_, Infallible>(nodes[&(level, index)]);
        for size in 0..=70u64 {
            let (frontier, _) = build(&all[..size as usize]);
            let root = root_of(&all[..size as usize]);
            assert_eq!(frontier.root(), root, "size {size}");
            assert_eq!(Frontier::load(size, &mut lookup).unwrap(), frontier);
            for index in 0..size {
                let proof = inclusion_proof(index, size, &mut lookup).unwrap().unwrap();
                verify_inclusion(index, size, &all[index as usize], &proof, &root).unwrap();
            }
            for first in 0..=size {
                let proof = consistency_proof(first, size, &mut lookup)
                    .unwrap()
                    .unwrap();
                let first_root = root_of(&all[..first as usize]);
                verify_consistency(first, size, &first_root, &root, &proof)
                    .unwrap_or_else(|e| panic!("{first} -> {size}: {e}"));
                if first > 0 && first < size {
                    let wrong = leaf_hash(b"wrong");
                    assert!(verify_consistency(first, size, &wrong, &root, &proof).is_err());
                }
            }
        }
    }
}

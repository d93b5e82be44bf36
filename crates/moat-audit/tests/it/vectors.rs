//! Proofs and signed notes against published vectors (see `vectors/README.md` for sources).

use std::convert::Infallible;

use moat_audit::merkle::{
    Hash, consistency_proof, inclusion_proof, leaf_hash, root_of, verify_consistency,
    verify_inclusion,
};
use moat_audit::{Checkpoint, SignerKey, VerifierKey};
use serde_json::Value;

fn rfc6962() -> Value {
    serde_json::from_str(include_str!("vectors/rfc6962.json")).expect("vector file")
}

fn hex_hash(value: &Value) -> Hash {
    let bytes = hex::decode(value.as_str().expect("hex string")).expect("hex");
    Hash::from_slice(&bytes).expect("32 bytes")
}

fn hashes(value: &Value) -> Vec<Hash> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(hex_hash)
        .collect()
}

fn leaves(vectors: &Value) -> Vec<Hash> {
    vectors["leaf_inputs"]
        .as_array()
        .expect("leaves")
        .iter()
        .map(|input| leaf_hash(&hex::decode(input.as_str().expect("hex")).expect("hex")))
        .collect()
}

fn node_table(vectors: &Value) -> Vec<Vec<Hash>> {
    vectors["node_hashes"]
        .as_array()
        .expect("levels")
        .iter()
        .map(hashes)
        .collect()
}

#[test]
fn leaf_node_and_root_hashes_match_the_rfc6962_reference() {
    let vectors = rfc6962();
    let leaves = leaves(&vectors);
    assert_eq!(node_table(&vectors)[0], leaves);
    let roots = hashes(&vectors["root_hashes"]);
    for (size, root) in roots.iter().enumerate() {
        assert_eq!(root_of(&leaves[..size]), *root, "size {size}");
    }
}

#[test]
fn proofs_built_from_stored_nodes_equal_the_published_ones() {
    let vectors = rfc6962();
    let nodes = node_table(&vectors);
    let roots = hashes(&vectors["root_hashes"]);
    let leaves = leaves(&vectors);
    let mut lookup =
        |level: u32, index: u64| Ok::<_, Infallible>(nodes[level as usize][index as usize]);
    for case in vectors["inclusion_proofs"].as_array().expect("cases") {
        let index = case["leaf"].as_u64().expect("leaf") - 1;
        let size = case["size"].as_u64().expect("size");
        let expected = hashes(&case["proof"]);
        let proof = inclusion_proof(index, size, &mut lookup).unwrap().unwrap();
        assert_eq!(proof, expected, "inclusion {index} in {size}");
        let root = roots[size as usize];
        verify_inclusion(index, size, &leaves[index as usize], &proof, &root).unwrap();
        // The published corruptions: wrong index, wrong size, flipped bits, extra or missing
        // elements, wrong leaf or root.
        let leaf = leaves[index as usize];
        assert!(verify_inclusion(index + 1, size, &leaf, &proof, &root).is_err());
        assert!(verify_inclusion(index, size * 2, &leaf, &proof, &root).is_err());
        assert!(verify_inclusion(index, size, &leaf_hash(b"WrongLeaf"), &proof, &root).is_err());
        assert!(verify_inclusion(index, size, &leaf, &proof, &roots[0]).is_err());
        let mut longer = proof.clone();
        longer.push(root);
        assert!(verify_inclusion(index, size, &leaf, &longer, &root).is_err());
        for i in 0..proof.len() {
            let mut flipped = proof.clone();
            flipped[i].0[0] ^= 8;
            assert!(verify_inclusion(index, size, &leaf, &flipped, &root).is_err());
        }
        if !proof.is_empty() {
            let shorter = &proof[..proof.len() - 1];
            assert!(verify_inclusion(index, size, &leaf, shorter, &root).is_err());
        }
    }
    for case in vectors["consistency_proofs"].as_array().expect("cases") {
        let first = case["size1"].as_u64().expect("size1");
        let second = case["size2"].as_u64().expect("size2");
        let expected = hashes(&case["proof"]);
        let proof = consistency_proof(first, second, &mut lookup)
            .unwrap()
            .unwrap();
        assert_eq!(proof, expected, "consistency {first} -> {second}");
        let (root1, root2) = (roots[first as usize], roots[second as usize]);
        verify_consistency(first, second, &root1, &root2, &proof).unwrap();
        if proof.is_empty() {
            continue;
        }
        assert!(verify_consistency(first, second, &root2, &root1, &proof).is_err());
        assert!(verify_consistency(first - 1, second, &root1, &root2, &proof).is_err());
        assert!(verify_consistency(first, second * 2, &root1, &root2, &proof).is_err());
        assert!(verify_consistency(first, second, &root1, &root2, &[]).is_err());
        assert!(
            verify_consistency(first, second, &root1, &root2, &proof[..proof.len() - 1]).is_err()
        );
        for i in 0..proof.len() {
            let mut flipped = proof.clone();
            flipped[i].0[0] ^= 16;
            assert!(verify_consistency(first, second, &root1, &root2, &flipped).is_err());
        }
    }
}

#[test]
fn transparency_dev_testdata_verify() {
    let vectors = rfc6962();
    let b64 = |value: &Value| Hash::from_base64(value.as_str().expect("string")).expect("hash");
    let hashes =
        |list: &Value| -> Vec<Hash> { list.as_array().expect("proof").iter().map(b64).collect() };
    for case in vectors["testdata"]["inclusion"].as_array().expect("cases") {
        let proof = hashes(&case["proof"]);
        let result = verify_inclusion(
            case["leafIdx"].as_u64().expect("index"),
            case["treeSize"].as_u64().expect("size"),
            &b64(&case["leafHash"]),
            &proof,
            &b64(&case["root"]),
        );
        assert_eq!(
            result.is_err(),
            case["wantErr"].as_bool().expect("bool"),
            "{case}"
        );
    }
    for case in vectors["testdata"]["consistency"]
        .as_array()
        .expect("cases")
    {
        let proof = hashes(&case["proof"]);
        let result = verify_consistency(
            case["size1"].as_u64().expect("size1"),
            case["size2"].as_u64().expect("size2"),
            &b64(&case["root1"]),
            &b64(&case["root2"]),
            &proof,
        );
        assert_eq!(
            result.is_err(),
            case["wantErr"].as_bool().expect("bool"),
            "{case}"
        );
    }
}

#[test]
fn signed_note_matches_the_go_reference_byte_for_byte() {
    let vectors: Value =
        serde_json::from_str(include_str!("vectors/signed_note.json")).expect("vector file");
    let field = |name: &str| vectors[name].as_str().expect("string").to_owned();
    let signer = SignerKey::parse(&field("signer")).unwrap();
    let verifier = VerifierKey::parse(&field("verifier")).unwrap();
    assert_eq!(signer.verifier(), verifier);
    assert_eq!(verifier.to_string(), field("verifier"));
    // Ed25519 is deterministic: the same key and text give the published note.
    assert_eq!(signer.sign(&field("text")), field("note"));
    assert_eq!(verifier.open(&field("note")).unwrap(), field("text"));
    let forged = field("note").replace("cryptography", "cryptographY");
    assert!(verifier.open(&forged).is_err());
    // Not a checkpoint, though: the text has no size and root.
    assert!(Checkpoint::open(&field("note"), &verifier).is_err());
}

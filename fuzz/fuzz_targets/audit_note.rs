//! Untrusted audit input from people and files: a signed checkpoint note (`moat audit verify
//! --against FILE`), a verifier key (`--key`) and a proof bundle (`moat audit verify-proof FILE`).
//! Nothing may panic; a checkpoint body that parses prints back to a body that parses to the
//! same checkpoint; nothing verifies against a key that did not sign it.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use moat_audit::note::{Checkpoint, SignerKey, note_hash, note_text};
use moat_audit::{ProofBundle, VerifierKey, verify_bundle};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A key made for this process: no input can carry a valid signature by it.
    static KEY: OnceLock<Option<VerifierKey>> = OnceLock::new();
    let key = KEY.get_or_init(|| SignerKey::generate().ok().map(|key| key.verifier()));
    let _ = VerifierKey::parse(text);
    let _ = note_hash(text);
    if let Ok(checkpoint) = Checkpoint::parse(note_text(text)) {
        let again = Checkpoint::parse(&checkpoint.to_text()).expect("a printed body parses");
        assert_eq!(again, checkpoint);
    }
    if let Some(key) = key {
        assert!(
            Checkpoint::open(text, key).is_err(),
            "an input verified against a key nobody used to sign it"
        );
        if let Ok(bundle) = serde_json::from_str::<ProofBundle>(text) {
            assert!(verify_bundle(&bundle, key).is_err());
        }
    }
});

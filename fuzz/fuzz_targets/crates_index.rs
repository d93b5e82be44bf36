//! Untrusted cargo input: a request path from a client, an index file and a `config.json` from
//! an upstream. Nothing may panic; an index that parses must render with any version blocked,
//! and the rendering must parse back to the same versions, the blocked ones yanked.

#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use moat_registry::crates::{IndexFile, parse_config, parse_segments};
use moat_registry::npm::canonical_segments;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        if let Ok(segments) = canonical_segments(path) {
            let _ = parse_segments(&segments);
        }
    }
    let _ = parse_config(data);
    let Ok(index) = IndexFile::parse(data, "fuzz") else {
        return;
    };
    let blocked: BTreeSet<String> = index
        .entries()
        .iter()
        .step_by(2)
        .map(|entry| entry.vers.clone())
        .collect();
    let rendered = index.render(&blocked);
    let again = IndexFile::parse(&rendered, "fuzz").expect("the gate's own index parses");
    assert_eq!(index.entries().len(), again.entries().len());
    for entry in again.entries() {
        if blocked.contains(&entry.vers) {
            assert!(entry.yanked, "{} not yanked", entry.vers);
        }
    }
});

//! Arbitrary bytes as OSV JSON: parsing must never panic, and whatever it accepts must answer
//! queries without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_advisories::{AdvisoryDb, Ecosystem};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // One record, and the same text split into several records (exercises alias merging).
    let (db, _report) = AdvisoryDb::from_osv_json(&[text]);
    let parts: Vec<&str> = text.split('\u{1e}').collect();
    let (merged, _report) = AdvisoryDb::from_osv_json(&parts);
    for db in [&db, &merged] {
        for ecosystem in Ecosystem::ALL {
            for name in ["a", "minimist", "@scope/name", "Foo_Bar"] {
                for version in ["0", "1.0.0", "1.0.0-rc.1", "1.0.0+build", "1.0.post1", "x"] {
                    let _ = db.matches(ecosystem, name, version);
                }
                let _ = db.malicious_package(ecosystem, name);
            }
        }
        let _ = db.status();
        let _ = db.revision();
    }
});

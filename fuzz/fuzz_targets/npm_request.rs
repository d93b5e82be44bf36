//! Untrusted npm input: a request path from a client, and a packument from an upstream.
//! Neither may panic; a packument that parses must survive every rewrite.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use moat_registry::npm::{Packument, RewritePlan, parse_npm_path};

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        let _ = parse_npm_path(path);
    }
    let Ok(packument) = Packument::parse(data, "fuzz") else {
        return;
    };
    // Block every other version, as an evaluation might, then render every form.
    let versions = packument.version_infos();
    let blocked: BTreeMap<String, String> = versions
        .iter()
        .step_by(2)
        .map(|info| (info.version.clone(), format!("moat: blocked fuzz@{}", info.version)))
        .collect();
    let newest = versions.last().map(|info| info.version.clone());
    let plan = RewritePlan::from_blocked(&packument, blocked, newest.as_deref(), "http://127.0.0.1:7070");
    let _ = packument.render_full(&plan);
    let _ = packument.render_abbreviated(&plan);
    let _ = packument.render_dist_tags(&plan);
    for info in &versions {
        let _ = packument.render_version(&info.version, &plan);
        let _ = packument.dist(&info.version);
        let _ = packument.resolve_spec(&info.version, &plan);
    }
    let _ = packument.resolve_spec("latest", &plan);
});

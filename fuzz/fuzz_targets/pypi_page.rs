//! Untrusted PyPI input: a request path from a client, and a project page (PEP 691 JSON or
//! PEP 503 HTML) from an upstream. Nothing may panic; a page that parses must render in both
//! formats, and the HTML rendering must parse back to the same files.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use moat_registry::npm::canonical_segments;
use moat_registry::pypi::{PagePlan, ProjectPage, parse_segments};

const PAGE_URL: &str = "https://upstream.invalid/simple/fuzz/";

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        if let Ok(segments) = canonical_segments(path) {
            let _ = parse_segments(&segments);
        }
    }
    for page in [
        ProjectPage::parse_json(data, PAGE_URL, "fuzz"),
        ProjectPage::parse_html(data, PAGE_URL, "fuzz"),
    ]
    .into_iter()
    .flatten()
    {
        let blocked: BTreeMap<String, String> = page
            .version_infos()
            .iter()
            .step_by(2)
            .map(|info| (info.version.clone(), format!("moat: blocked fuzz@{}", info.version)))
            .collect();
        let plan = PagePlan {
            files_base: "http://127.0.0.1:7070/pypi".to_owned(),
            blocked,
        };
        let _ = page.render_json(&plan);
        let html = page.render_html(&plan);
        let again = ProjectPage::parse_html(&html, "http://127.0.0.1:7070/pypi/simple/fuzz/", "fuzz")
            .expect("the gate's own HTML parses");
        let names = |p: &ProjectPage| p.files.iter().map(|f| f.filename.clone()).collect::<Vec<_>>();
        assert_eq!(names(&page), names(&again));
    }
});

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::PathError;

fn packument(name: &str) -> NpmRequest {
    NpmRequest::Packument { name: name.into() }
}

fn tarball(name: &str, version: &str) -> NpmRequest {
    NpmRequest::Tarball {
        name: name.into(),
        version: version.into(),
    }
}

#[test]
fn every_spelling_of_a_scoped_name_parses_the_same() {
    let expected = packument("@scope/name");
    for spelling in [
        "/@scope/name",
        "/@scope%2fname",
        "/@scope%2Fname",
        "/%40scope%2fname",
        "/%40scope%2Fname",
        "/%40scope/name",
        "//@scope//name",
        "/@scope/name/",
        "/@scope%2f%2fname",
        "/./@scope/name",
    ] {
        assert_eq!(parse_npm_path(spelling), Ok(expected.clone()), "{spelling}");
    }
}

#[test]
fn path_table() {
    let cases: &[(&str, Result<NpmRequest, PathError>)] = &[
        ("/-/ping", Ok(NpmRequest::Ping)),
        ("/lodash", Ok(packument("lodash"))),
        ("//lodash", Ok(packument("lodash"))),
        ("/%6codash", Ok(packument("lodash"))),
        ("/JSONStream", Ok(packument("JSONStream"))),
        (
            "/lodash/4.17.21",
            Ok(NpmRequest::Version {
                name: "lodash".into(),
                spec: "4.17.21".into(),
            }),
        ),
        (
            "/lodash/latest",
            Ok(NpmRequest::Version {
                name: "lodash".into(),
                spec: "latest".into(),
            }),
        ),
        (
            "/lodash/=v1.0.0",
            Ok(NpmRequest::Version {
                name: "lodash".into(),
                spec: "=v1.0.0".into(),
            }),
        ),
        (
            "/lodash/-/lodash-4.17.21.tgz",
            Ok(tarball("lodash", "4.17.21")),
        ),
        (
            "/lodash//-//lodash-4.17.21.tgz",
            Ok(tarball("lodash", "4.17.21")),
        ),
        (
            "/lodash/-/LODASH-4.17.21.tgz",
            Ok(tarball("lodash", "4.17.21")),
        ),
        (
            "/lodash%2f-%2flodash-4.17.21.tgz",
            Ok(tarball("lodash", "4.17.21")),
        ),
        (
            "/@scope/name/-/name-1.0.0-beta.1.tgz",
            Ok(tarball("@scope/name", "1.0.0-beta.1")),
        ),
        (
            "/@scope%2Fname/-/name-1.0.0.tgz",
            Ok(tarball("@scope/name", "1.0.0")),
        ),
        (
            "/-/package/lodash/dist-tags",
            Ok(NpmRequest::DistTags {
                name: "lodash".into(),
            }),
        ),
        (
            "/-/package/@scope%2fname/dist-tags",
            Ok(NpmRequest::DistTags {
                name: "@scope/name".into(),
            }),
        ),
        (
            "/lodash/-/other-1.0.0.tgz",
            Err(PathError::InvalidSpec("other-1.0.0.tgz".into())),
        ),
        (
            "/lodash/-/lodash-1.0.0.tar",
            Err(PathError::InvalidSpec("lodash-1.0.0.tar".into())),
        ),
        (
            "/lodash/-/lodash-.tgz",
            Err(PathError::InvalidSpec("".into())),
        ),
        ("/lodash/../evil", Err(PathError::Forbidden(".."))),
        ("/lodash/%2e%2e/evil", Err(PathError::Forbidden(".."))),
        ("/lodash/-/lodash-1..0.tgz", Err(PathError::Forbidden(".."))),
        ("/lodash%5c1.0.0", Err(PathError::Forbidden("backslash"))),
        ("/lodash\\1.0.0", Err(PathError::Forbidden("backslash"))),
        ("/lodash%00", Err(PathError::Forbidden("control character"))),
        ("/lodash%0a", Err(PathError::Forbidden("control character"))),
        ("/lodash%7f", Err(PathError::Forbidden("control character"))),
        ("/@scope%252fname", Err(PathError::DoubleEncoded)),
        ("/lodash%25", Err(PathError::DoubleEncoded)),
        ("/lodash%2", Err(PathError::BadEncoding)),
        ("/lodash%zz", Err(PathError::BadEncoding)),
        ("/%ff", Err(PathError::NotUtf8)),
        ("/", Err(PathError::NoRoute)),
        ("/-/whoami", Err(PathError::NoRoute)),
        ("/lodash/1.0.0/extra", Err(PathError::NoRoute)),
        ("/@scope", Err(PathError::InvalidName("@scope".into()))),
        ("/@/name", Err(PathError::InvalidName("@/name".into()))),
        ("/.hidden", Err(PathError::InvalidName(".hidden".into()))),
        ("/_private", Err(PathError::InvalidName("_private".into()))),
        ("/a@b", Err(PathError::InvalidName("a@b".into()))),
        (
            "/lodash/1.0.0%20",
            Err(PathError::InvalidSpec("1.0.0 ".into())),
        ),
    ];
    for (path, expected) in cases {
        assert_eq!(&parse_npm_path(path), expected, "{path}");
    }
}

#[test]
fn clean_version_spellings() {
    assert_eq!(clean_version("v1.2.3"), Some("1.2.3"));
    assert_eq!(clean_version("=1.2.3"), Some("1.2.3"));
    assert_eq!(clean_version("=v1.2.3"), Some("1.2.3"));
    assert_eq!(clean_version("1.2.3"), None);
    assert_eq!(clean_version("v"), None);
}

fn sample() -> Packument {
    let doc = json!({
        "_id": "demo",
        "name": "demo",
        "description": "a demo package",
        "readme": "long readme",
        "dist-tags": {"latest": "1.2.5", "next": "2.0.0-rc.1", "stable": "1.2.4"},
        "time": {
            "modified": "2024-01-03T00:00:00.000Z",
            "1.2.4": "2023-01-01T00:00:00.000Z",
            "1.2.5": "2024-01-01T00:00:00.000Z",
            "2.0.0-rc.1": "bogus"
        },
        "versions": {
            "1.2.4": {
                "name": "demo", "version": "1.2.4", "description": "x", "scripts": {"test": "t"},
                "dependencies": {"a": "^1"}, "engines": {"node": ">=8"},
                "dist": {"tarball": "https://registry.example/demo/-/demo-1.2.4.tgz", "shasum": "00", "integrity": "sha512-x"}
            },
            "1.2.5": {
                "name": "demo", "version": "1.2.5", "deprecated": "upstream says old",
                "dist": {"tarball": "https://registry.example/demo/-/demo-1.2.5.tgz", "shasum": "11"}
            },
            "2.0.0-rc.1": {
                "name": "demo", "version": "2.0.0-rc.1",
                "dist": {"tarball": "https://registry.example/demo/-/demo-2.0.0-rc.1.tgz"}
            }
        }
    });
    Packument::parse(&serde_json::to_vec(&doc).unwrap(), "Demo").unwrap()
}

fn plan(packument: &Packument) -> RewritePlan {
    let blocked = BTreeMap::from([
        (
            "1.2.5".to_owned(),
            "moat: blocked demo@1.2.5: bad".to_owned(),
        ),
        (
            "2.0.0-rc.1".to_owned(),
            "moat: blocked demo@2.0.0-rc.1: bad".to_owned(),
        ),
    ]);
    RewritePlan::from_blocked(packument, blocked, Some("1.2.4"), "http://gate:7070")
}

#[test]
fn parse_checks_name_and_shape() {
    assert!(matches!(
        Packument::parse(br#"{"name":"other","versions":{}}"#, "demo"),
        Err(crate::MetadataError::NameMismatch { .. })
    ));
    for bad in [
        &b"not json"[..],
        b"[]",
        b"{}",
        br#"{"name":"demo","versions":[]}"#,
        br#"{"name":"demo","versions":{"1.0.0":3}}"#,
    ] {
        assert!(
            matches!(
                Packument::parse(bad, "demo"),
                Err(crate::MetadataError::Malformed(_))
            ),
            "{bad:?}"
        );
    }
    let infos = sample().version_infos();
    assert_eq!(infos.len(), 3);
    assert_eq!(
        infos[0].published,
        Some("2023-01-01T00:00:00Z".parse().unwrap())
    );
    assert_eq!(infos[2].published, None);
}

#[test]
fn full_rewrite_deprecates_moves_latest_and_rewrites_tarballs() {
    let packument = sample();
    let plan = plan(&packument);
    let doc: Value = serde_json::from_slice(&packument.render_full(&plan)).unwrap();
    assert_eq!(doc["dist-tags"]["latest"], "1.2.4");
    assert_eq!(
        doc["dist-tags"]["next"], "2.0.0-rc.1",
        "other tags are kept"
    );
    assert_eq!(
        doc["versions"]["1.2.5"]["deprecated"],
        "moat: blocked demo@1.2.5: bad"
    );
    assert_eq!(doc["versions"]["1.2.4"].get("deprecated"), None);
    assert_eq!(
        doc["versions"]["1.2.4"]["dist"]["tarball"],
        "http://gate:7070/npm/demo/-/demo-1.2.4.tgz"
    );
    assert_eq!(
        doc["versions"]["1.2.5"]["dist"]["tarball"],
        "http://gate:7070/npm/demo/-/demo-1.2.5.tgz"
    );
    assert_eq!(
        doc["readme"], "long readme",
        "full document keeps everything else"
    );
    assert_eq!(
        doc["versions"]["1.2.4"]["dist"]["integrity"], "sha512-x",
        "integrity untouched"
    );
}

#[test]
fn abbreviated_keeps_only_install_fields() {
    let packument = sample();
    let plan = plan(&packument);
    let doc: Value = serde_json::from_slice(&packument.render_abbreviated(&plan)).unwrap();
    let keys: Vec<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["name", "modified", "dist-tags", "versions"]);
    assert_eq!(doc["modified"], "2024-01-03T00:00:00.000Z");
    assert_eq!(doc["dist-tags"]["latest"], "1.2.4");
    let v124 = doc["versions"]["1.2.4"].as_object().unwrap();
    let keys: Vec<&str> = v124.keys().map(String::as_str).collect();
    assert_eq!(keys, ["name", "version", "dependencies", "dist", "engines"]);
    assert_eq!(
        v124["dist"]["tarball"],
        "http://gate:7070/npm/demo/-/demo-1.2.4.tgz"
    );
    assert_eq!(
        doc["versions"]["1.2.5"]["deprecated"],
        "moat: blocked demo@1.2.5: bad"
    );
}

#[test]
fn latest_stays_when_nothing_is_approved() {
    let packument = sample();
    let blocked = BTreeMap::from([("1.2.5".to_owned(), "m".to_owned())]);
    let plan = RewritePlan::from_blocked(&packument, blocked, None, "http://gate");
    assert_eq!(plan.dist_tags["latest"], "1.2.5");
}

#[test]
fn version_documents_and_spec_resolution() {
    let packument = sample();
    let plan = plan(&packument);
    assert_eq!(
        packument.resolve_spec("1.2.4", &plan).as_deref(),
        Some("1.2.4")
    );
    assert_eq!(
        packument.resolve_spec("latest", &plan).as_deref(),
        Some("1.2.4")
    );
    assert_eq!(
        packument.resolve_spec("next", &plan).as_deref(),
        Some("2.0.0-rc.1")
    );
    assert_eq!(
        packument.resolve_spec("v1.2.5", &plan).as_deref(),
        Some("1.2.5")
    );
    assert_eq!(
        packument.resolve_spec("=1.2.5", &plan).as_deref(),
        Some("1.2.5")
    );
    assert_eq!(packument.resolve_spec("9.9.9", &plan), None);
    let doc: Value =
        serde_json::from_slice(&packument.render_version("1.2.4", &plan).unwrap()).unwrap();
    assert_eq!(
        doc["dist"]["tarball"],
        "http://gate:7070/npm/demo/-/demo-1.2.4.tgz"
    );
    assert!(packument.render_version("9.9.9", &plan).is_none());
    let tags: Value = serde_json::from_slice(&packument.render_dist_tags(&plan)).unwrap();
    assert_eq!(tags["latest"], "1.2.4");
}

#[test]
fn scoped_tarball_url_uses_the_basename() {
    let body = br#"{"name":"@scope/name","versions":{"1.0.0":{"dist":{"tarball":"https://x/@scope/name/-/name-1.0.0.tgz"}}}}"#;
    let packument = Packument::parse(body, "@Scope/Name").unwrap();
    let plan = RewritePlan::from_blocked(&packument, BTreeMap::new(), None, "http://gate");
    assert_eq!(
        packument.gate_tarball_url("1.0.0", &plan),
        "http://gate/npm/@scope/name/-/name-1.0.0.tgz"
    );
    let dist = packument.dist("1.0.0").unwrap();
    assert_eq!(dist.tarball, "https://x/@scope/name/-/name-1.0.0.tgz");
    assert_eq!(dist.integrity, Err(crate::IntegrityError::Missing));
}

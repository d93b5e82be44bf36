use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;
use crate::npm::canonical_segments;
use crate::{MetadataError, PathError};

fn segments(path: &str) -> Vec<String> {
    path.split('/').map(str::to_owned).collect()
}

fn parse(path: &str) -> Result<CratesRequest, PathError> {
    parse_segments(&segments(path))
}

fn index_file(name: &str) -> CratesRequest {
    CratesRequest::IndexFile { name: name.into() }
}

fn download(name: &str, version: &str) -> CratesRequest {
    CratesRequest::Download {
        name: name.into(),
        version: version.into(),
    }
}

#[test]
fn index_paths() {
    for (name, path) in [
        ("a", "1/a"),
        ("A", "1/a"),
        ("ab", "2/ab"),
        ("abc", "3/a/abc"),
        ("Abc", "3/a/abc"),
        ("itoa", "it/oa/itoa"),
        ("serde", "se/rd/serde"),
        ("serde_json", "se/rd/serde_json"),
        ("Inflector", "in/fl/inflector"),
        ("SERDE-JSON", "se/rd/serde-json"),
    ] {
        assert_eq!(index_path(name), path, "{name}");
    }
}

#[test]
fn prefixes_keep_the_spelling() {
    assert_eq!(prefix("a"), "1");
    assert_eq!(prefix("ab"), "2");
    assert_eq!(prefix("Abc"), "3/A");
    assert_eq!(prefix("Inflector"), "In/fl");
}

#[test]
fn index_path_never_panics_on_odd_names() {
    assert_eq!(index_path(""), "1/");
    assert_eq!(index_path("é"), "1/é");
    assert_eq!(index_path("日本"), "2/日本");
    assert_eq!(index_path("日本語"), "3/日/日本語");
    assert_eq!(index_path("日本語x"), "日本/語x/日本語x");
}

#[test]
fn every_valid_spelling_parses() {
    let cases: &[(&str, CratesRequest)] = &[
        ("index/config.json", CratesRequest::Config),
        ("index/1/a", index_file("a")),
        ("index/1/A", index_file("A")),
        ("index/2/ab", index_file("ab")),
        ("index/3/a/abc", index_file("abc")),
        ("index/3/A/abc", index_file("abc")),
        ("index/3/a/ABC", index_file("ABC")),
        ("index/it/oa/itoa", index_file("itoa")),
        ("index/se/rd/serde_json", index_file("serde_json")),
        ("index/se/rd/serde-json", index_file("serde-json")),
        ("index/SE/Rd/serde", index_file("serde")),
        ("index/in/fl/Inflector", index_file("Inflector")),
        ("index/a-/b_/a-b_c", index_file("a-b_c")),
        ("dl/serde/1.0.219/download", download("serde", "1.0.219")),
        (
            "dl/Inflector/0.11.4/download",
            download("Inflector", "0.11.4"),
        ),
        (
            "dl/serde/1.0.0-alpha.1+build.5/download",
            download("serde", "1.0.0-alpha.1+build.5"),
        ),
    ];
    for (path, expected) in cases {
        assert_eq!(&parse(path), &Ok(expected.clone()), "{path}");
    }
}

#[test]
fn url_spellings_parse_the_same() {
    for raw in [
        "/index/se/rd/serde",
        "//index//se/rd/serde/",
        "/index/se%2Frd%2fserde",
        "/index/./se/rd/serde",
        "/%69ndex/se/rd/serde",
    ] {
        let parsed = canonical_segments(raw).and_then(|s| parse_segments(&s));
        assert_eq!(parsed, Ok(index_file("serde")), "{raw}");
    }
}

#[test]
fn wrong_shapes_are_refused() {
    let long = "a".repeat(65);
    let longest = "a".repeat(64);
    let cases: Vec<(String, Result<CratesRequest, PathError>)> = vec![
        // Prefix directories that do not belong to the name.
        ("index/2/abc".into(), Err(PathError::NoRoute)),
        ("index/1/ab".into(), Err(PathError::NoRoute)),
        ("index/3/b/abc".into(), Err(PathError::NoRoute)),
        ("index/3/ab/abc".into(), Err(PathError::NoRoute)),
        ("index/3/a/abcd".into(), Err(PathError::NoRoute)),
        ("index/ab/ce/abcd".into(), Err(PathError::NoRoute)),
        ("index/se/rd/abcd".into(), Err(PathError::NoRoute)),
        ("index/ab/cd/abc".into(), Err(PathError::NoRoute)),
        ("index/ab/abcd".into(), Err(PathError::NoRoute)),
        ("index/config.json/x".into(), Err(PathError::NoRoute)),
        // Extra or missing segments.
        ("index".into(), Err(PathError::NoRoute)),
        ("index/serde".into(), Err(PathError::NoRoute)),
        ("index/x/se/rd/serde".into(), Err(PathError::NoRoute)),
        ("dl/serde/1.0.0".into(), Err(PathError::NoRoute)),
        ("dl/serde/1.0.0/download/x".into(), Err(PathError::NoRoute)),
        ("dl/serde/1.0.0/Download".into(), Err(PathError::NoRoute)),
        ("dl/serde".into(), Err(PathError::NoRoute)),
        ("config.json".into(), Err(PathError::NoRoute)),
        ("api/v1/crates/serde".into(), Err(PathError::NoRoute)),
        ("".into(), Err(PathError::NoRoute)),
        // Bad names.
        ("index/1/1".into(), Err(PathError::InvalidName("1".into()))),
        ("index/1/-".into(), Err(PathError::InvalidName("-".into()))),
        (
            "index/3/_/_ab".into(),
            Err(PathError::InvalidName("_ab".into())),
        ),
        (
            "index/se/r./ser.de".into(),
            Err(PathError::InvalidName("ser.de".into())),
        ),
        ("index/1/é".into(), Err(PathError::InvalidName("é".into()))),
        (
            format!("index/aa/aa/{long}"),
            Err(PathError::InvalidName(long.clone())),
        ),
        (format!("index/aa/aa/{longest}"), Ok(index_file(&longest))),
        (
            "dl/ser$de/1.0.0/download".into(),
            Err(PathError::InvalidName("ser$de".into())),
        ),
        (
            "dl/9lives/1.0.0/download".into(),
            Err(PathError::InvalidName("9lives".into())),
        ),
        // Bad versions.
        (
            "dl/serde/1.0/download".into(),
            Err(PathError::InvalidSpec("1.0".into())),
        ),
        (
            "dl/serde/v1.0.0/download".into(),
            Err(PathError::InvalidSpec("v1.0.0".into())),
        ),
        (
            "dl/serde/01.0.0/download".into(),
            Err(PathError::InvalidSpec("01.0.0".into())),
        ),
        (
            "dl/serde/ 1.0.0/download".into(),
            Err(PathError::InvalidSpec(" 1.0.0".into())),
        ),
        (
            "dl/serde/latest/download".into(),
            Err(PathError::InvalidSpec("latest".into())),
        ),
    ];
    for (path, expected) in &cases {
        assert_eq!(&parse(path), expected, "{path}");
    }
}

#[test]
fn request_names() {
    assert_eq!(CratesRequest::Config.name(), None);
    assert_eq!(index_file("serde").name(), Some("serde"));
    assert_eq!(download("serde", "1.0.0").name(), Some("serde"));
}

#[test]
fn crate_name_rules() {
    assert!(same_name("serde_json", "Serde-JSON"));
    assert!(same_name("Inflector", "inflector"));
    assert!(!same_name("serde", "serde2"));
    assert!(!same_name("serde", "serd"));
    assert!(is_valid_name("a"));
    assert!(is_valid_name("a-b_C9"));
    assert!(!is_valid_name(""));
    assert!(!is_valid_name("_a"));
    assert!(!is_valid_name("-a"));
    assert!(!is_valid_name("a b"));
}

const CKSUM: &str = "8fe390286ad3ad1b175ad07a638c83463c86cbdb5e38075c2ef44e10c694702b";

#[test]
fn download_urls_follow_cargo() {
    let cases = [
        // No marker: cargo appends /{crate}/{version}/download.
        (
            "https://static.crates.io/crates",
            "serde",
            "https://static.crates.io/crates/serde/1.0.0/download",
        ),
        (
            "http://127.0.0.1:7070/crates/dl",
            "Inflector",
            "http://127.0.0.1:7070/crates/dl/Inflector/1.0.0/download",
        ),
        (
            "https://r.example/{crate}/{crate}-{version}.crate",
            "serde",
            "https://r.example/serde/serde-1.0.0.crate",
        ),
        (
            "https://r.example/{prefix}/{crate}/{version}",
            "Inflector",
            "https://r.example/In/fl/Inflector/1.0.0",
        ),
        (
            "https://r.example/{lowerprefix}/{crate}/{version}",
            "Inflector",
            "https://r.example/in/fl/Inflector/1.0.0",
        ),
        (
            "https://r.example/{lowerprefix}/{crate}",
            "Abc",
            "https://r.example/3/a/Abc",
        ),
        (
            "https://r.example/{prefix}/{crate}",
            "a",
            "https://r.example/1/a",
        ),
        (
            "https://r.example/{prefix}/{crate}",
            "ab",
            "https://r.example/2/ab",
        ),
        (
            "https://r.example/{prefix}/{crate}",
            "Abc",
            "https://r.example/3/A/Abc",
        ),
    ];
    for (dl, name, expected) in cases {
        assert_eq!(download_url(dl, name, "1.0.0", CKSUM), expected, "{dl}");
    }
    // The checksum marker alone counts as a marker: nothing is appended.
    assert_eq!(
        download_url(
            "https://r.example/by-hash/{sha256-checksum}",
            "serde",
            "1.0.0",
            CKSUM
        ),
        format!("https://r.example/by-hash/{CKSUM}")
    );
}

#[test]
fn upstream_config() {
    let crates_io = br#"{"dl":"https://static.crates.io/crates","api":"https://crates.io"}"#;
    assert_eq!(
        parse_config(crates_io),
        Ok(RegistryConfig {
            dl: "https://static.crates.io/crates".into(),
            api: Some("https://crates.io".into()),
        })
    );
    let private = br#"{"dl":"https://r.example/{crate}","api":null,"auth-required":true}"#;
    assert_eq!(
        parse_config(private),
        Ok(RegistryConfig {
            dl: "https://r.example/{crate}".into(),
            api: None,
        })
    );
    for bad in [
        &b"not json"[..],
        b"[]",
        b"{}",
        br#"{"dl":1}"#,
        br#"{"dl":"x","api":1}"#,
    ] {
        assert!(
            matches!(parse_config(bad), Err(MetadataError::Malformed(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn served_config() {
    assert_eq!(
        render_config("http://127.0.0.1:7070/crates/dl", None),
        br#"{"dl":"http://127.0.0.1:7070/crates/dl"}"#
    );
    let with_api = render_config("http://gate/crates/dl", Some("http://gate/crates"));
    assert_eq!(
        parse_config(&with_api),
        Ok(RegistryConfig {
            dl: "http://gate/crates/dl".into(),
            api: Some("http://gate/crates".into()),
        })
    );
    let auth: Value =
        serde_json::from_slice(&render_config_auth_required("http://gate/crates/dl", None))
            .unwrap();
    assert_eq!(
        auth,
        json!({"dl": "http://gate/crates/dl", "auth-required": true})
    );
}

/// Lines shaped like crates.io's `it/oa/itoa` (compact JSON, `pubtime`, `rust_version`), plus a
/// v2 line with `features2`.
const ITOA: &str = concat!(
    r#"{"name":"itoa","vers":"0.1.0","deps":[],"cksum":"8fe390286ad3ad1b175ad07a638c83463c86cbdb5e38075c2ef44e10c694702b","features":{},"yanked":false,"pubtime":"2016-06-25T21:50:33Z"}"#,
    "\n",
    r#"{"name":"itoa","vers":"1.0.17","deps":[{"name":"criterion","req":"^0.8","features":[],"optional":false,"default_features":false,"target":"cfg(not(miri))","kind":"dev"},{"name":"no-panic","req":"^0.1","features":[],"optional":true,"default_features":true,"target":null,"kind":"normal"}],"cksum":"92ecc6618181def0457392ccd0ee51198e065e016d1d527a7ac1b6dc7c1f09d2","features":{},"yanked":false,"rust_version":"1.68","pubtime":"2025-12-27T06:56:40Z"}"#,
    "\n",
    r#"{"name":"itoa","vers":"1.0.18","deps":[{"name":"no-panic","req":"^0.1","features":[],"optional":true,"default_features":true,"target":null,"kind":"normal"}],"cksum":"8f42a60cbdf9a97f5d2305f08a87dc4e09308d1276d28c869c684d7777685682","features":{},"yanked":false,"links":null,"v":2,"features2":{"no-panic":["dep:no-panic"]},"rust_version":"1.68","pubtime":"2026-03-20T00:12:37Z"}"#,
    "\n",
    r#"{"name":"itoa","vers":"2.0.0-rc.1","deps":[],"cksum":"3bd1574e617a9a6c1f8f8181bd7e841e1f20e4277607ef28945765188d6284d4","features":{},"yanked":true}"#,
    "\n",
);

fn itoa() -> IndexFile {
    IndexFile::parse(ITOA.as_bytes(), "itoa").unwrap()
}

fn lines(body: &[u8]) -> Vec<&str> {
    std::str::from_utf8(body).unwrap().lines().collect()
}

fn blocked(versions: &[&str]) -> BTreeSet<String> {
    versions.iter().map(|v| (*v).to_owned()).collect()
}

#[test]
fn parses_a_crates_io_index_file() {
    let file = itoa();
    assert_eq!(file.name(), "itoa");
    let versions: Vec<&str> = file.entries().iter().map(|e| e.vers.as_str()).collect();
    assert_eq!(versions, ["0.1.0", "1.0.17", "1.0.18", "2.0.0-rc.1"]);
    let entry = file.entry("1.0.17").unwrap();
    assert_eq!(entry.name, "itoa");
    assert_eq!(
        entry.cksum,
        "92ecc6618181def0457392ccd0ee51198e065e016d1d527a7ac1b6dc7c1f09d2"
    );
    assert!(!entry.yanked);
    assert_eq!(
        entry.pubtime,
        Some("2025-12-27T06:56:40Z".parse::<jiff::Timestamp>().unwrap())
    );
    let rc = file.entry("2.0.0-rc.1").unwrap();
    assert!(rc.yanked);
    assert_eq!(rc.pubtime, None);
    assert_eq!(file.entry("9.9.9"), None);
    assert_eq!(file.entry("not a version"), None);

    let infos = file.version_infos();
    assert_eq!(infos.len(), 4);
    assert_eq!(infos[0].version, "0.1.0");
    assert_eq!(
        infos[0].published,
        Some("2016-06-25T21:50:33Z".parse::<jiff::Timestamp>().unwrap())
    );
    assert_eq!(infos[3].version, "2.0.0-rc.1");
    assert_eq!(infos[3].published, None);
}

#[test]
fn names_compare_by_crates_io_rules() {
    let body = concat!(
        r#"{"name":"Serde_Json","vers":"1.0.0","cksum":"8fe390286ad3ad1b175ad07a638c83463c86cbdb5e38075c2ef44e10c694702b"}"#,
        "\n"
    );
    let file = IndexFile::parse(body.as_bytes(), "serde-json").unwrap();
    assert_eq!(file.name(), "Serde_Json");
    assert!(IndexFile::parse(ITOA.as_bytes(), "ITOA").is_ok());
}

#[test]
fn a_line_for_another_crate_is_refused() {
    let other = r#"{"name":"itoa2","vers":"1.0.0","cksum":"8fe390286ad3ad1b175ad07a638c83463c86cbdb5e38075c2ef44e10c694702b"}"#;
    let body = format!("{ITOA}{other}\n");
    assert_eq!(
        IndexFile::parse(body.as_bytes(), "itoa"),
        Err(MetadataError::NameMismatch {
            requested: "itoa".into(),
            found: "itoa2".into(),
        })
    );
    assert!(matches!(
        IndexFile::parse(ITOA.as_bytes(), "itoa2"),
        Err(MetadataError::NameMismatch { .. })
    ));
}

#[test]
fn malformed_lines_fail_the_whole_file() {
    let good = format!(r#""name":"itoa","vers":"1.0.0","cksum":"{CKSUM}""#);
    let cases = [
        "not json".to_owned(),
        "[1,2]".to_owned(),
        "\"itoa\"".to_owned(),
        format!("{{{good}}} trailing"),
        format!("{{{good}"),
        r#"{"name":"itoa","vers":"1.0.0"}"#.to_owned(),
        format!(r#"{{"name":"itoa","cksum":"{CKSUM}"}}"#),
        format!(r#"{{"vers":"1.0.0","cksum":"{CKSUM}"}}"#),
        format!(r#"{{"name":"itoa","vers":1,"cksum":"{CKSUM}"}}"#),
        format!(r#"{{"name":["itoa"],"vers":"1.0.0","cksum":"{CKSUM}"}}"#),
        r#"{"name":"itoa","vers":"1.0.0","cksum":"abc"}"#.to_owned(),
        format!(
            r#"{{"name":"itoa","vers":"1.0.0","cksum":"{}"}}"#,
            CKSUM.to_uppercase()
        ),
        format!(r#"{{"name":"itoa","vers":"1.0.0","cksum":"{CKSUM}0"}}"#),
        format!(r#"{{{good},"yanked":"no"}}"#),
        format!(r#"{{{good},"yanked":0}}"#),
        // A repeated key: cargo refuses the line, so the gate cannot read it differently.
        format!(r#"{{{good},"vers":"6.6.6"}}"#),
        format!(r#"{{{good},"yanked":true,"yanked":false}}"#),
    ];
    for line in &cases {
        let body = format!("{ITOA}{line}\n");
        assert!(
            matches!(
                IndexFile::parse(body.as_bytes(), "itoa"),
                Err(MetadataError::Malformed(_))
            ),
            "{line}"
        );
    }
    for empty in ["", "\n", "  \n\n\t\n"] {
        assert!(
            matches!(
                IndexFile::parse(empty.as_bytes(), "itoa"),
                Err(MetadataError::Malformed(_))
            ),
            "{empty:?}"
        );
    }
    let invalid_utf8 = [&br#"{"name":"it"#[..], &[0xff], br#"oa","vers":"1.0.0"}"#].concat();
    assert!(IndexFile::parse(&invalid_utf8, "itoa").is_err());
}

#[test]
fn repeated_versions_keep_the_first_line() {
    let first = format!(r#"{{"name":"itoa","vers":"1.0.0","cksum":"{CKSUM}","yanked":false}}"#);
    let second = r#"{"name":"itoa","vers":"1.0.0","cksum":"0000000000000000000000000000000000000000000000000000000000000000","yanked":false}"#;
    let body = format!("{first}\n{second}\n");
    let file = IndexFile::parse(body.as_bytes(), "itoa").unwrap();
    assert_eq!(file.entries().len(), 1);
    assert_eq!(file.entry("1.0.0").unwrap().cksum, CKSUM);
    assert_eq!(file.version_infos().len(), 1);
    // The repeat is not served, so a blocked version cannot come back through it.
    assert_eq!(
        file.render(&blocked(&[])),
        format!("{first}\n").into_bytes()
    );
    let served = file.render(&blocked(&["1.0.0"]));
    assert_eq!(lines(&served).len(), 1);
    let line: Value = serde_json::from_slice(&served).unwrap();
    assert_eq!(line["yanked"], json!(true));
    assert_eq!(line["cksum"], json!(CKSUM));
}

#[test]
fn render_without_blocks_is_byte_identical() {
    let file = itoa();
    assert_eq!(file.render(&blocked(&[])), ITOA.as_bytes());
    // Versions not in the file change nothing.
    assert_eq!(file.render(&blocked(&["9.9.9"])), ITOA.as_bytes());
}

#[test]
fn render_drops_blank_lines_and_ends_every_line() {
    let body = ITOA.replace('\n', "\n\n  \n");
    let body = body.trim_end();
    let file = IndexFile::parse(body.as_bytes(), "itoa").unwrap();
    assert_eq!(file.render(&blocked(&[])), ITOA.as_bytes());
}

#[test]
fn render_marks_blocked_versions_yanked() {
    let file = itoa();
    let served = file.render(&blocked(&["1.0.17", "2.0.0-rc.1"]));
    let upstream = lines(ITOA.as_bytes());
    let served = lines(&served);
    assert_eq!(served.len(), upstream.len());
    // Unblocked lines, and a blocked line the upstream already yanked: byte-identical.
    assert_eq!(served[0], upstream[0]);
    assert_eq!(served[2], upstream[2]);
    assert_eq!(served[3], upstream[3]);
    // The blocked line: same keys in the same order and the same values, except `yanked`.
    assert_ne!(served[1], upstream[1]);
    let before: serde_json::Map<String, Value> = serde_json::from_str(upstream[1]).unwrap();
    let after: serde_json::Map<String, Value> = serde_json::from_str(served[1]).unwrap();
    let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&before), keys(&after));
    for (key, value) in &before {
        if key == "yanked" {
            assert_eq!(after[key], json!(true));
        } else {
            assert_eq!(&after[key], value, "{key}");
        }
    }
    assert_eq!(
        served[1],
        upstream[1].replace(r#""yanked":false"#, r#""yanked":true"#)
    );
    // The served file still parses, with the version now yanked and its checksum unchanged.
    let reparsed = IndexFile::parse(file.render(&blocked(&["1.0.17"])).as_slice(), "itoa").unwrap();
    let entry = reparsed.entry("1.0.17").unwrap();
    assert!(entry.yanked);
    assert_eq!(
        entry.cksum,
        "92ecc6618181def0457392ccd0ee51198e065e016d1d527a7ac1b6dc7c1f09d2"
    );
}

#[test]
fn render_adds_yanked_when_the_line_has_none() {
    let line = format!(r#"{{"name":"itoa","vers":"1.0.0","cksum":"{CKSUM}","v":2}}"#);
    let file = IndexFile::parse(line.as_bytes(), "itoa").unwrap();
    assert_eq!(
        file.render(&blocked(&["1.0.0"])),
        format!(r#"{{"name":"itoa","vers":"1.0.0","cksum":"{CKSUM}","v":2,"yanked":true}}"#)
            .into_bytes()
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<u8>>()
    );
}

#[test]
fn garbage_never_panics() {
    let tail = b"{\"name\":\"itoa\",\"vers\":\"1.0.0\"\n\xc3\xa9\0\xff\n{\"name\":{\"a\":[[[";
    let bytes = [ITOA.as_bytes(), &tail[..]].concat();
    let all = blocked(&["0.1.0", "1.0.17", "1.0.18", "2.0.0-rc.1"]);
    for end in 0..=bytes.len() {
        for start in [0, 1, end / 2] {
            let slice = &bytes[start.min(end)..end];
            if let Ok(file) = IndexFile::parse(slice, "itoa") {
                let _ = file.render(&all);
                let _ = file.version_infos();
                let _ = file.entry("1.0.17");
            }
        }
    }
    let config = br#"{"dl":"https://static.crates.io/crates","api":"https://crates.io"}"#;
    for end in 0..=config.len() {
        let _ = parse_config(&config[..end]);
    }
    let path = "index/it/oa/itoa/dl/é/1.0.0+b/download/config.json";
    for end in 0..=path.len() {
        if let Some(prefix) = path.get(..end) {
            let _ = parse(prefix);
            let _ = index_path(prefix);
            let _ = download_url("{prefix}{lowerprefix}", prefix, prefix, prefix);
        }
    }
}

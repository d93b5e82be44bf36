use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::npm::canonical_segments;
use crate::{MetadataError, PathError};

const GATE: &str = "http://127.0.0.1:7070/pypi";
const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const SHA_C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const SHA_D: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

// ---------------------------------------------------------------------------------------------
// Negotiation

/// What pip 23–26 sends (`pip/_internal/index/collector.py`).
const PIP_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, \
                          application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
/// What uv sends to a plain index (`uv-client` `MediaType::pypi`).
const UV_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, \
                         application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";
/// What newer uv sends when it also speaks pyx (`MediaType::all`).
const UV_PYX_ACCEPT: &str = "application/vnd.pyx.simple.v1+msgpack, \
                             application/vnd.pyx.simple.v1+json;q=0.9, \
                             application/vnd.pypi.simple.v1+json;q=0.8, \
                             application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";

#[test]
fn negotiation_table() {
    let cases: &[(Option<&str>, Format)] = &[
        (Some(PIP_ACCEPT), Format::Json),
        (Some(UV_ACCEPT), Format::Json),
        (Some(UV_PYX_ACCEPT), Format::Json),
        (None, Format::Html),
        (Some(""), Format::Html),
        (Some("*/*"), Format::Html),
        (Some("text/html"), Format::Html),
        (Some("text/html, */*;q=0.8"), Format::Html),
        (Some("application/vnd.pypi.simple.v1+html"), Format::Html),
        (
            Some("application/vnd.pypi.simple.latest+json"),
            Format::Json,
        ),
        (
            Some("application/vnd.pypi.simple.latest+html"),
            Format::Html,
        ),
        (Some("Application/Vnd.PyPI.Simple.V1+JSON"), Format::Json),
        (Some("application/json"), Format::Html),
        (Some("application/*"), Format::Html),
        // Order does not matter, quality does.
        (
            Some(
                "text/html;q=0.01, application/vnd.pypi.simple.v1+html;q=0.2, \
                 application/vnd.pypi.simple.v1+json",
            ),
            Format::Json,
        ),
        (
            Some("application/vnd.pypi.simple.v1+json;q=0.1, text/html"),
            Format::Html,
        ),
        (
            Some("application/vnd.pypi.simple.v1+json;q=0"),
            Format::Html,
        ),
        (
            Some("application/vnd.pypi.simple.v1+json;q=abc"),
            Format::Html,
        ),
        (
            Some("application/vnd.pypi.simple.v1+json ; Q=0.9 , */*;q=0.1"),
            Format::Json,
        ),
        (
            Some("*/*;q=0.1, application/vnd.pypi.simple.v1+json"),
            Format::Json,
        ),
        // A more specific range overrides a wildcard.
        (
            Some("text/html;q=0.5, */*;q=0.1, application/vnd.pypi.simple.v1+json;q=0.6"),
            Format::Json,
        ),
        (
            Some("application/vnd.pypi.simple.v1+json;q=0, */*"),
            Format::Html,
        ),
        (
            Some("text/*;q=0.5, application/vnd.pypi.simple.v1+json;q=0.4"),
            Format::Html,
        ),
        // Several headers joined with ",".
        (
            Some("text/html;q=0.01,application/vnd.pypi.simple.v1+json"),
            Format::Json,
        ),
        (Some(",,;;,=,q=1"), Format::Html),
    ];
    for (accept, expected) in cases {
        assert_eq!(negotiate(*accept), *expected, "{accept:?}");
    }
    assert_eq!(Format::Json.content_type(), SIMPLE_JSON);
    assert_eq!(Format::Html.content_type(), SIMPLE_HTML);
}

// ---------------------------------------------------------------------------------------------
// Paths

fn parse(raw: &str) -> Result<PypiRequest, PathError> {
    parse_segments(&canonical_segments(raw)?)
}

fn project(name: &str) -> PypiRequest {
    PypiRequest::Project { name: name.into() }
}

fn file(project: &str, filename: &str, metadata: bool) -> PypiRequest {
    PypiRequest::File {
        project: project.into(),
        filename: filename.into(),
        metadata,
    }
}

#[test]
fn path_table() {
    let long_name = "a".repeat(300);
    let cases: Vec<(String, Result<PypiRequest, PathError>)> = vec![
        ("/simple/".into(), Ok(PypiRequest::Root)),
        ("/simple".into(), Ok(PypiRequest::Root)),
        ("/simple/requests/".into(), Ok(project("requests"))),
        ("/simple/requests".into(), Ok(project("requests"))),
        ("//simple//requests//".into(), Ok(project("requests"))),
        ("/simple/%72equests/".into(), Ok(project("requests"))),
        ("/simple/Django/".into(), Ok(project("Django"))),
        (
            "/simple/zope.interface/".into(),
            Ok(project("zope.interface")),
        ),
        ("/simple/Foo__Bar-baz/".into(), Ok(project("Foo__Bar-baz"))),
        ("/simple/a/".into(), Ok(project("a"))),
        (
            "/simple/-foo/".into(),
            Err(PathError::InvalidName("-foo".into())),
        ),
        (
            "/simple/foo-/".into(),
            Err(PathError::InvalidName("foo-".into())),
        ),
        (
            "/simple/foo%20bar/".into(),
            Err(PathError::InvalidName("foo bar".into())),
        ),
        (
            "/simple/foo@1/".into(),
            Err(PathError::InvalidName("foo@1".into())),
        ),
        (
            "/simple/f%C3%B6o/".into(),
            Err(PathError::InvalidName("föo".into())),
        ),
        (
            format!("/simple/{long_name}/"),
            Err(PathError::InvalidName(long_name.clone())),
        ),
        ("/simple/foo%2Fbar/".into(), Err(PathError::NoRoute)),
        ("/simple/..".into(), Err(PathError::Forbidden(".."))),
        ("/simple/foo%252fbar/".into(), Err(PathError::DoubleEncoded)),
        (
            "/files/requests/requests-2.31.0-py3-none-any.whl".into(),
            Ok(file("requests", "requests-2.31.0-py3-none-any.whl", false)),
        ),
        (
            "/files/requests/requests-2.31.0-py3-none-any.whl.metadata".into(),
            Ok(file("requests", "requests-2.31.0-py3-none-any.whl", true)),
        ),
        (
            "/files/requests/requests-2.31.0.tar.gz".into(),
            Ok(file("requests", "requests-2.31.0.tar.gz", false)),
        ),
        (
            "/files/Foo/foo-1.0%2Blocal-py3-none-any.whl".into(),
            Ok(file("Foo", "foo-1.0+local-py3-none-any.whl", false)),
        ),
        (
            "/files/foo/foo-1.0+local-py3-none-any.whl".into(),
            Ok(file("foo", "foo-1.0+local-py3-none-any.whl", false)),
        ),
        (
            "/files/foo/.hidden.whl".into(),
            Err(PathError::InvalidSpec(".hidden.whl".into())),
        ),
        (
            "/files/foo/foo-1.0.exe".into(),
            Err(PathError::InvalidSpec("foo-1.0.exe".into())),
        ),
        (
            "/files/foo/.whl".into(),
            Err(PathError::InvalidSpec(".whl".into())),
        ),
        (
            "/files/foo/foo-1.0.tar.gz.metadata.metadata".into(),
            Err(PathError::InvalidSpec("foo-1.0.tar.gz.metadata".into())),
        ),
        (
            "/files/foo/foo%201.0.tar.gz".into(),
            Err(PathError::InvalidSpec("foo 1.0.tar.gz".into())),
        ),
        (
            "/files/foo/foo%3C1.0.tar.gz".into(),
            Err(PathError::InvalidSpec("foo<1.0.tar.gz".into())),
        ),
        (
            "/files/-foo/foo-1.0.tar.gz".into(),
            Err(PathError::InvalidName("-foo".into())),
        ),
        ("/files/foo".into(), Err(PathError::NoRoute)),
        (
            "/files/foo/a/foo-1.0.tar.gz".into(),
            Err(PathError::NoRoute),
        ),
        ("/simple/foo/foo-1.0.tar.gz".into(), Err(PathError::NoRoute)),
        ("/".into(), Err(PathError::NoRoute)),
        ("/Simple/foo/".into(), Err(PathError::NoRoute)),
        ("/packages/foo".into(), Err(PathError::NoRoute)),
    ];
    for (raw, expected) in cases {
        assert_eq!(parse(&raw), expected, "{raw}");
    }
}

#[test]
fn every_spelling_of_a_project_names_the_same_normalised_project() {
    for spelling in ["Foo-Bar", "foo_bar", "FOO.BAR", "foo--bar", "Foo_.-Bar"] {
        let request = parse(&format!("/simple/{spelling}/")).expect("valid spelling");
        let name = request.project().expect("names a project");
        assert_eq!(normalize_name(name), "foo-bar", "{spelling}");
    }
}

#[test]
fn version_from_filename_table() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "requests",
            "requests-2.31.0-py3-none-any.whl",
            Some("2.31.0"),
        ),
        ("requests", "requests-2.31.0.tar.gz", Some("2.31.0")),
        ("Requests", "requests-2.31.0.TAR.GZ", Some("2.31.0")),
        // Build tag.
        ("foo", "foo-1.0-1-py3-none-any.whl", Some("1.0")),
        (
            "foo",
            "foo-1.0-1build-cp311-cp311-manylinux_2_17_x86_64.whl",
            Some("1.0"),
        ),
        // Dashes, dots and underscores in names.
        ("foo-bar", "foo_bar-1.0-py3-none-any.whl", Some("1.0")),
        ("foo-bar", "foo-bar-1.0.tar.gz", Some("1.0")),
        ("foo-bar", "foo_bar-1.0.tar.gz", Some("1.0")),
        ("foo_bar", "Foo.Bar-2.0rc1.zip", Some("2.0rc1")),
        ("zope.interface", "zope.interface-6.0.tar.gz", Some("6.0")),
        (
            "zope-interface",
            "zope_interface-6.0-cp311-cp311-win_amd64.whl",
            Some("6.0"),
        ),
        ("a-b-c", "a-b-c-1.0-2.tar.gz", Some("1.0-2")),
        // Versions with epochs, locals, post and dev parts.
        (
            "foo",
            "foo-1!2.0+local.7-py3-none-any.whl",
            Some("1!2.0+local.7"),
        ),
        ("foo", "foo-1.0.post1.dev2.tar.bz2", Some("1.0.post1.dev2")),
        ("foo", "foo-1.0.tgz", Some("1.0")),
        ("foo", "foo-1.0.tar.xz", Some("1.0")),
        // Eggs.
        ("foo-bar", "foo_bar-1.0-py2.7.egg", Some("1.0")),
        ("foo", "foo-1.0.egg", Some("1.0")),
        // Another project, or no version to tell.
        ("foo", "foobar-1.0.tar.gz", None),
        ("foo", "bar-1.0-py3-none-any.whl", None),
        ("foo-bar", "foo-1.0.tar.gz", None),
        ("foo", "foo.tar.gz", None),
        ("foo", "foo-.tar.gz", None),
        ("foo", "foo-1.0-py3-none.whl", None),
        ("foo", "foo-1.0-1-2-py3-none-any.whl", None),
        ("foo", "foo--py3-none-any.whl", None),
        ("foo", "foo-1.0.exe", None),
        ("foo", "foo-1.0", None),
        ("foo", "", None),
        ("foo", "foo-<script>.tar.gz", None),
        ("foo", "foo-é.tar.gz", None),
        ("", "-1.0.tar.gz", None),
    ];
    for (project, filename, expected) in cases {
        assert_eq!(
            version_from_filename(project, filename).as_deref(),
            *expected,
            "{project} {filename}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Reading pages

const PAGE_URL: &str = "https://pypi.example/simple/foo-bar/";

fn json_sample() -> String {
    format!(
        r#"{{
  "meta": {{"api-version": "1.3", "_last-serial": 42}},
  "name": "foo-bar",
  "project-status": {{"status": "active"}},
  "versions": ["1.0", "2.0", "3.0"],
  "files": [
    {{
      "filename": "foo_bar-1.0.tar.gz",
      "url": "../../packages/ab/cd/foo_bar-1.0.tar.gz#sha256={SHA_A}",
      "hashes": {{}},
      "requires-python": null,
      "size": 1000,
      "upload-time": "2020-01-01T00:00:00.000000Z",
      "yanked": "broken build",
      "provenance": null
    }},
    {{
      "filename": "foo_bar-1.0-py3-none-any.whl",
      "url": "https://files.example/packages/foo_bar-1.0-py3-none-any.whl",
      "hashes": {{"SHA256": "{}", "md5": "0123456789abcdef0123456789abcdef"}},
      "requires-python": ">=3.7",
      "core-metadata": {{"sha256": "{SHA_C}"}},
      "data-dist-info-metadata": {{"sha256": "{SHA_C}"}},
      "size": 2000,
      "upload-time": "2019-12-31T23:00:00Z",
      "yanked": false
    }},
    {{
      "filename": "foo_bar-2.0-py3-none-any.whl",
      "url": "https://files.example/packages/foo_bar-2.0-py3-none-any.whl",
      "hashes": {{"sha256": "{SHA_D}"}},
      "dist-info-metadata": true,
      "size": 3000,
      "upload-time": "2021-06-01T12:30:00.5Z",
      "yanked": true
    }},
    {{
      "filename": "foo_bar-3.0.tar.gz",
      "url": "ftp://files.example/foo_bar-3.0.tar.gz",
      "hashes": {{"sha256": "{SHA_A}"}},
      "size": 1
    }},
    {{
      "filename": "other-1.0.tar.gz",
      "url": "https://files.example/other-1.0.tar.gz",
      "hashes": {{"sha256": "{SHA_A}"}},
      "size": 1
    }},
    {{
      "filename": "foo_bar-1.0.tar.gz",
      "url": "https://evil.example/foo_bar-1.0.tar.gz",
      "hashes": {{"sha256": "{SHA_B}"}},
      "size": 1
    }}
  ]
}}"#,
        SHA_B.to_uppercase()
    )
}

fn timestamp(text: &str) -> jiff::Timestamp {
    text.parse().expect("valid timestamp")
}

#[test]
fn json_page_is_read() {
    let page =
        ProjectPage::parse_json(json_sample().as_bytes(), PAGE_URL, "Foo_Bar").expect("valid page");
    assert_eq!(page.name, "foo-bar");
    let names: Vec<&str> = page.files.iter().map(|f| f.filename.as_str()).collect();
    assert_eq!(
        names,
        [
            "foo_bar-1.0.tar.gz",
            "foo_bar-1.0-py3-none-any.whl",
            "foo_bar-2.0-py3-none-any.whl"
        ],
        "ftp, other project and repeated file names are dropped"
    );

    let sdist = &page.files[0];
    assert_eq!(
        sdist.url, "https://pypi.example/packages/ab/cd/foo_bar-1.0.tar.gz",
        "relative url resolved, fragment removed"
    );
    assert_eq!(sdist.sha256(), Some(SHA_A), "hash taken from the fragment");
    assert_eq!(sdist.yanked.as_deref(), Some("broken build"));
    assert_eq!(sdist.requires_python, None);
    assert_eq!(sdist.core_metadata, None);
    assert_eq!(sdist.metadata_url(), None);
    assert_eq!(sdist.size, Some(1000));
    assert_eq!(sdist.version.as_deref(), Some("1.0"));
    assert_eq!(sdist.upload_time, Some(timestamp("2020-01-01T00:00:00Z")));

    let wheel = page.file("foo_bar-1.0-py3-none-any.whl").expect("listed");
    assert_eq!(
        wheel.hashes,
        BTreeMap::from([
            (
                "md5".to_owned(),
                "0123456789abcdef0123456789abcdef".to_owned()
            ),
            ("sha256".to_owned(), SHA_B.to_owned()),
        ]),
        "algorithms and digests lowercased"
    );
    assert_eq!(wheel.requires_python.as_deref(), Some(">=3.7"));
    assert_eq!(
        wheel.core_metadata,
        Some(BTreeMap::from([("sha256".to_owned(), SHA_C.to_owned())]))
    );
    assert_eq!(
        wheel.metadata_url().as_deref(),
        Some("https://files.example/packages/foo_bar-1.0-py3-none-any.whl.metadata")
    );
    assert_eq!(wheel.yanked, None);

    let new = page.file("foo_bar-2.0-py3-none-any.whl").expect("listed");
    assert_eq!(new.yanked.as_deref(), Some(""), "yanked without reason");
    assert_eq!(new.core_metadata, Some(BTreeMap::new()), "legacy key read");
    assert_eq!(new.upload_time, Some(timestamp("2021-06-01T12:30:00.5Z")));
    assert_eq!(page.file("foo_bar-3.0.tar.gz"), None);
}

#[test]
fn version_infos_are_distinct_with_the_earliest_upload() {
    let page =
        ProjectPage::parse_json(json_sample().as_bytes(), PAGE_URL, "foo-bar").expect("valid page");
    let infos = page.version_infos();
    let summary: Vec<(&str, Option<jiff::Timestamp>)> = infos
        .iter()
        .map(|info| (info.version.as_str(), info.published))
        .collect();
    assert_eq!(
        summary,
        [
            ("1.0", Some(timestamp("2019-12-31T23:00:00Z"))),
            ("2.0", Some(timestamp("2021-06-01T12:30:00.5Z"))),
        ]
    );
}

#[test]
fn json_pages_that_cannot_be_used_are_refused() {
    let malformed = |body: &str| {
        matches!(
            ProjectPage::parse_json(body.as_bytes(), PAGE_URL, "foo"),
            Err(MetadataError::Malformed(_))
        )
    };
    assert!(malformed("not json"));
    assert!(malformed("[]"));
    assert!(malformed(r#"{"files": []}"#), "no name");
    assert!(malformed(r#"{"name": "foo"}"#), "no files");
    assert!(malformed(r#"{"name": "foo", "files": {}}"#));
    assert!(malformed(r#"{"name": "foo", "files": [1]}"#));
    assert!(malformed(r#"{"name": "foo", "files": [{"url": "x"}]}"#));
    assert!(malformed(
        r#"{"name": "foo", "files": [{"filename": "foo-1.tar.gz"}]}"#
    ));
    for field in [
        r#""size": "12""#,
        r#""size": -1"#,
        r#""hashes": []"#,
        r#""hashes": {"sha256": 1}"#,
        r#""yanked": 1"#,
        r#""requires-python": 3"#,
        r#""core-metadata": "yes""#,
        r#""upload-time": 5"#,
    ] {
        let body = format!(
            r#"{{"name": "foo", "files": [{{"filename": "foo-1.tar.gz", "url": "x", {field}}}]}}"#
        );
        assert!(malformed(&body), "{field}");
    }
    assert!(malformed(
        r#"{"meta": {"api-version": "2.0"}, "name": "foo", "files": []}"#
    ));
    assert!(matches!(
        ProjectPage::parse_json(br#"{"name": "foo", "files": []}"#, "not a url", "foo"),
        Err(MetadataError::Malformed(_))
    ));
    assert_eq!(
        ProjectPage::parse_json(br#"{"name": "bar", "files": []}"#, PAGE_URL, "foo"),
        Err(MetadataError::NameMismatch {
            requested: "foo".into(),
            found: "bar".into()
        })
    );
}

#[test]
fn json_oddities_are_tolerated() {
    let body = format!(
        r#"{{"name": "Foo", "files": [{{
            "filename": "foo-1.0.tar.gz",
            "url": "/f/foo-1.0.tar.gz",
            "hashes": {{"sha256": "not hex", "blake2b": "{SHA_A}"}},
            "yanked": "",
            "upload-time": "yesterday",
            "future-key": {{"anything": [1, 2]}}
        }}]}}"#
    );
    let page = ProjectPage::parse_json(body.as_bytes(), PAGE_URL, "foo").expect("valid page");
    let file = &page.files[0];
    assert_eq!(file.url, "https://pypi.example/f/foo-1.0.tar.gz");
    assert_eq!(
        file.hashes,
        BTreeMap::from([("blake2b".to_owned(), SHA_A.to_owned())])
    );
    assert_eq!(
        file.yanked, None,
        "an empty reason is not a yank, as pip reads it"
    );
    assert_eq!(file.upload_time, None);
}

fn html_sample() -> String {
    format!(
        r#"<!DOCTYPE html>
<html>
  <head>
    <META NAME="pypi:repository-version" CONTENT="1.1">
    <title>Links for Foo_Bar</title>
    <script>var x = '<a href="https://evil.example/foo_bar-6.6.tar.gz">';</script>
  </head>
  <body>
    <h1>Links for foo-bar</h1>
    <!-- <a href="https://evil.example/foo_bar-6.6.tar.gz">hidden</a> -->
    <a href="../../packages/ab/foo_bar-1.0.tar.gz#sha256={SHA_A}" data-requires-python="&gt;=3.7,&lt;4" data-yanked="do &quot;not&quot; use &amp; see &#39;docs&#39; &#x263A;">foo_bar-1.0.tar.gz</a><br/>
    <A HREF='https://files.example/foo_bar-1.0-py3-none-any.whl#sha256={SHA_B}' DATA-DIST-INFO-METADATA='sha256={SHA_C}'>foo_bar-1.0-py3-none-any.whl</A><br/>
    <a href=https://files.example/foo_bar-2.0-py3-none-any.whl?x=1&amp;y=2#md5=0123456789abcdef0123456789abcdef data-core-metadata=true data-yanked>foo_bar-2.0-py3-none-any.whl</a>
    <a href="https://files.example/foo%5Fbar-3.0.zip">percent-encoded name</a>
    <a href="javascript:alert(1)//foo_bar-4.0.tar.gz">js</a>
    <a href="file:///etc/foo_bar-4.0.tar.gz">local</a>
    <a name="no-href">nothing</a>
    <a href="https://files.example/">no file name</a>
    <a href="https://files.example/other-1.0.tar.gz">other project</a>
  </body>
</html>
"#
    )
}

#[test]
fn html_page_is_read() {
    let page =
        ProjectPage::parse_html(html_sample().as_bytes(), PAGE_URL, "foo-bar").expect("valid page");
    assert_eq!(page.name, "Foo_Bar");
    let names: Vec<&str> = page.files.iter().map(|f| f.filename.as_str()).collect();
    assert_eq!(
        names,
        [
            "foo_bar-1.0.tar.gz",
            "foo_bar-1.0-py3-none-any.whl",
            "foo_bar-2.0-py3-none-any.whl",
            "foo_bar-3.0.zip"
        ]
    );
    let sdist = &page.files[0];
    assert_eq!(
        sdist.url,
        "https://pypi.example/packages/ab/foo_bar-1.0.tar.gz"
    );
    assert_eq!(sdist.sha256(), Some(SHA_A));
    assert_eq!(sdist.requires_python.as_deref(), Some(">=3.7,<4"));
    assert_eq!(
        sdist.yanked.as_deref(),
        Some("do \"not\" use & see 'docs' \u{263A}")
    );
    assert_eq!(sdist.core_metadata, None);
    assert_eq!(sdist.upload_time, None);
    assert_eq!(sdist.size, None);

    let wheel = &page.files[1];
    assert_eq!(wheel.sha256(), Some(SHA_B));
    assert_eq!(wheel.yanked, None);
    assert_eq!(
        wheel.core_metadata,
        Some(BTreeMap::from([("sha256".to_owned(), SHA_C.to_owned())]))
    );

    let new = &page.files[2];
    assert_eq!(
        new.url,
        "https://files.example/foo_bar-2.0-py3-none-any.whl?x=1&y=2"
    );
    assert_eq!(
        new.hashes,
        BTreeMap::from([(
            "md5".to_owned(),
            "0123456789abcdef0123456789abcdef".to_owned()
        )])
    );
    assert_eq!(new.core_metadata, Some(BTreeMap::new()));
    assert_eq!(new.yanked.as_deref(), Some(""), "a bare data-yanked yanks");
    assert_eq!(new.version.as_deref(), Some("2.0"));

    assert_eq!(page.files[3].version.as_deref(), Some("3.0"));
}

#[test]
fn html_base_href_resolves_relative_links() {
    let body = format!(
        r#"<html><head><base href="https://mirror.example/files/"><base href="https://evil.example/"></head>
        <body><a href="foo-1.0.tar.gz#sha256={SHA_A}">foo-1.0.tar.gz</a></body></html>"#
    );
    let page = ProjectPage::parse_html(body.as_bytes(), PAGE_URL, "foo").expect("valid page");
    assert_eq!(page.name, "foo", "no title: the requested name");
    assert_eq!(
        page.files[0].url,
        "https://mirror.example/files/foo-1.0.tar.gz"
    );
}

#[test]
fn html_pages_that_cannot_be_used_are_refused() {
    let body =
        br#"<meta name="pypi:repository-version" content="2.0"><a href="/foo-1.0.tar.gz">x</a>"#;
    assert!(matches!(
        ProjectPage::parse_html(body, PAGE_URL, "foo"),
        Err(MetadataError::Malformed(_))
    ));
    assert_eq!(
        ProjectPage::parse_html(b"<title>Links for bar</title>", PAGE_URL, "foo"),
        Err(MetadataError::NameMismatch {
            requested: "foo".into(),
            found: "bar".into()
        })
    );
    let empty = ProjectPage::parse_html(b"", PAGE_URL, "foo").expect("an empty page is a page");
    assert!(empty.files.is_empty());
}

#[test]
fn entities_are_decoded() {
    let cases = [
        (
            "a &lt;b&gt; &amp;&amp; &quot;c&quot; &#39;d&#39; &apos;",
            "a <b> && \"c\" 'd' '",
        ),
        ("&#x41;&#X42;&#67;", "ABC"),
        (
            "&#0; &#xD800; &#x110000; &#99999999999;",
            "\u{FFFD} \u{FFFD} \u{FFFD} \u{FFFD}",
        ),
        (
            "&unknown; &amp &; &#; &#x; &#xzz;",
            "&unknown; &amp &; &#; &#x; &#xzz;",
        ),
        ("tail &", "tail &"),
        ("é&amp;ü", "é&ü"),
    ];
    for (text, expected) in cases {
        assert_eq!(super::html::decode_entities(text), expected, "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering

fn gate_page_url(name: &str) -> String {
    format!("{GATE}/simple/{name}/")
}

fn plan(blocked: &[(&str, &str)]) -> PagePlan {
    PagePlan {
        files_base: GATE.into(),
        blocked: blocked
            .iter()
            .map(|(version, reason)| ((*version).to_owned(), (*reason).to_owned()))
            .collect(),
    }
}

/// What the round trip keeps: everything but the URL, which now points at the gate.
fn without_urls(page: &ProjectPage) -> Vec<DistFile> {
    page.files
        .iter()
        .cloned()
        .map(|file| DistFile {
            url: String::new(),
            ..file
        })
        .collect()
}

#[test]
fn json_round_trip_keeps_what_matters() {
    let upstream =
        ProjectPage::parse_json(json_sample().as_bytes(), PAGE_URL, "foo-bar").expect("valid page");
    let body = upstream.render_json(&plan(&[]));
    let served =
        ProjectPage::parse_json(&body, &gate_page_url("foo-bar"), "foo-bar").expect("readable");
    assert_eq!(without_urls(&served), without_urls(&upstream));
    assert_eq!(
        served.files[0].url,
        format!("{GATE}/files/foo-bar/foo_bar-1.0.tar.gz")
    );

    let doc: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(doc["meta"]["api-version"], "1.1");
    assert_eq!(doc["name"], "foo-bar");
    assert_eq!(doc["versions"], serde_json::json!(["1.0", "2.0"]));
    let wheel = &doc["files"][1];
    assert_eq!(wheel.get("dist-info-metadata"), None);
    assert_eq!(wheel["core-metadata"]["sha256"], SHA_C);
    assert_eq!(wheel["yanked"], false);
    assert_eq!(wheel["upload-time"], "2019-12-31T23:00:00.000000Z");
    assert_eq!(wheel["size"], 2000);
    assert_eq!(doc["files"][0]["core-metadata"], false);
    assert_eq!(doc["files"][2]["yanked"], true);
    assert_eq!(
        doc["files"][2]["upload-time"],
        "2021-06-01T12:30:00.500000Z"
    );
}

#[test]
fn html_round_trip_keeps_what_matters() {
    let upstream =
        ProjectPage::parse_html(html_sample().as_bytes(), PAGE_URL, "foo-bar").expect("valid page");
    let body = upstream.render_html(&plan(&[]));
    let served =
        ProjectPage::parse_html(&body, &gate_page_url("foo-bar"), "foo-bar").expect("readable");
    assert_eq!(without_urls(&served), without_urls(&upstream));
    assert_eq!(served.name, "foo-bar");
    let text = String::from_utf8(body).expect("utf-8");
    assert!(text.starts_with("<!DOCTYPE html>"));
    assert!(text.contains(r#"<meta name="pypi:repository-version" content="1.0">"#));
    assert!(text.contains(&format!(
        r#"href="{GATE}/files/foo-bar/foo_bar-1.0.tar.gz#sha256={SHA_A}""#
    )));
    assert!(text.contains(&format!(r#"data-core-metadata="sha256={SHA_C}">"#)));
}

#[test]
fn json_page_renders_as_html_and_back() {
    let upstream =
        ProjectPage::parse_json(json_sample().as_bytes(), PAGE_URL, "foo-bar").expect("valid page");
    let body = upstream.render_html(&plan(&[]));
    assert!(
        String::from_utf8_lossy(&body).contains(r#"content="1.1""#),
        "every file has a size"
    );
    let served =
        ProjectPage::parse_html(&body, &gate_page_url("foo-bar"), "foo-bar").expect("readable");
    for (served, upstream) in served.files.iter().zip(&upstream.files) {
        assert_eq!(served.filename, upstream.filename);
        assert_eq!(served.sha256(), upstream.sha256());
        assert_eq!(served.yanked, upstream.yanked);
        assert_eq!(served.core_metadata, upstream.core_metadata);
        assert_eq!(served.requires_python, upstream.requires_python);
    }
    assert_eq!(served.files.len(), upstream.files.len());
}

#[test]
fn api_version_falls_back_to_1_0_without_sizes() {
    let mut page =
        ProjectPage::parse_json(json_sample().as_bytes(), PAGE_URL, "foo-bar").expect("valid page");
    page.files[1].size = None;
    let doc: Value = serde_json::from_slice(&page.render_json(&plan(&[]))).expect("json");
    assert_eq!(doc["meta"]["api-version"], "1.0");
    assert!(doc.get("versions").is_none());
    assert!(doc["files"][0].get("size").is_none());
}

#[test]
fn blocked_version_is_served_yanked_with_its_reason() {
    let reason = "moat: blocked foo-bar@1.0: GHSA-xxxx (critical); approved: foo-bar@2.0; why: http://127.0.0.1:7070/-/why/pypi/foo-bar/1.0";
    let upstream =
        ProjectPage::parse_json(json_sample().as_bytes(), PAGE_URL, "foo-bar").expect("valid page");
    let plan = plan(&[("1.0", reason)]);

    let json = upstream.render_json(&plan);
    let served =
        ProjectPage::parse_json(&json, &gate_page_url("foo-bar"), "foo-bar").expect("readable");
    let html = upstream.render_html(&plan);
    let served_html =
        ProjectPage::parse_html(&html, &gate_page_url("foo-bar"), "foo-bar").expect("readable");
    for page in [&served, &served_html] {
        let yanks: Vec<Option<&str>> = page.files.iter().map(|f| f.yanked.as_deref()).collect();
        assert_eq!(
            yanks,
            [Some(reason), Some(reason), Some("")],
            "the block reason overrides the upstream one; other upstream yanks are kept"
        );
    }
    let doc: Value = serde_json::from_slice(&json).expect("json");
    assert_eq!(doc["files"][1]["yanked"], reason);
}

#[test]
fn hostile_upstream_text_cannot_inject_markup() {
    let hostile = r#""><script>alert('x')</script><a href="https://evil.example/x.whl"#;
    let mut page = ProjectPage::synthetic("foo");
    page.name = "foo<script>".into();
    page.files[0].filename = format!("foo-1.0-py3-none-any.whl{hostile}");
    page.files[0].requires_python = Some(hostile.into());
    page.files[0].yanked = Some(hostile.into());
    page.files[0].version = Some("1.0".into());
    page.files[0].hashes.insert("sha256".into(), hostile.into());
    page.files[0].core_metadata = Some(BTreeMap::from([("sha256".into(), hostile.into())]));
    for plan in [plan(&[]), plan(&[("1.0", hostile)])] {
        let html = String::from_utf8(page.render_html(&plan)).expect("utf-8");
        assert!(!html.contains("<script"), "{html}");
        assert_eq!(html.matches("<a ").count(), 1, "{html}");
        let read = ProjectPage::parse_html(html.as_bytes(), &gate_page_url("foo"), "foo<script>")
            .expect("readable");
        assert!(
            read.files.is_empty(),
            "the hostile file name routes nowhere"
        );
    }
    // With a routable name, the hostile texts come back intact, as text.
    page.name = "foo".into();
    page.files[0].filename = "foo-1.0-py3-none-any.whl".into();
    let html = page.render_html(&plan(&[("1.0", hostile)]));
    let read = ProjectPage::parse_html(&html, &gate_page_url("foo"), "foo").expect("readable");
    assert_eq!(read.files[0].yanked.as_deref(), Some(hostile));
    assert_eq!(read.files[0].requires_python.as_deref(), Some(hostile));
}

/// Security invariant: every link a served page carries routes, through the gate's own path
/// parsing, to the same file of the same project, whatever the upstream spelled.
#[test]
fn every_served_link_routes_back_to_its_file() {
    let upstream =
        ProjectPage::parse_html(html_sample().as_bytes(), PAGE_URL, "foo-bar").expect("valid page");
    let mut page = upstream.clone();
    page.files[0].filename = "Foo_Bar-1.0+local~x!y.tar.gz".into();
    page.files[0].version = version_from_filename("foo-bar", &page.files[0].filename);
    let doc: Value = serde_json::from_slice(&page.render_json(&plan(&[]))).expect("json");
    let Some(files) = doc["files"].as_array() else {
        panic!("files array");
    };
    for (served, original) in files.iter().zip(&page.files) {
        let url = served["url"].as_str().expect("url string");
        let path = url.strip_prefix(GATE).expect("points at the gate");
        for (suffix, metadata) in [("", false), (".metadata", true)] {
            let request = parse(&format!("{path}{suffix}")).expect("routable");
            assert_eq!(
                request,
                file("foo-bar", &original.filename, metadata),
                "{url}"
            );
        }
    }
    assert_eq!(
        file_url(GATE, "Foo.Bar", "a+b.whl"),
        format!("{GATE}/files/foo-bar/a%2Bb.whl")
    );
}

#[test]
fn synthetic_page_offers_one_refusable_candidate() {
    let page = ProjectPage::synthetic("Evil_Pkg.Name");
    assert_eq!(page.name, "evil-pkg-name");
    let [file] = page.files.as_slice() else {
        panic!("one file");
    };
    assert_eq!(file.filename, "evil_pkg_name-0.0.0-py3-none-any.whl");
    assert_eq!(file.version.as_deref(), Some("0.0.0"));
    assert_eq!(file.sha256(), Some("0".repeat(64).as_str()));
    assert_eq!(file.core_metadata, Some(BTreeMap::new()));
    assert_eq!(file.yanked, None);
    assert_eq!(
        version_from_filename("Evil_Pkg.Name", &file.filename).as_deref(),
        Some("0.0.0")
    );
    assert_eq!(
        page.version_infos(),
        [moat_policy::VersionInfo {
            version: "0.0.0".into(),
            published: None
        }]
    );
    let html = page.render_html(&plan(&[]));
    let read = ProjectPage::parse_html(&html, &gate_page_url("evil-pkg-name"), "Evil_Pkg.Name")
        .expect("readable");
    assert_eq!(read.files.len(), 1);
    assert_eq!(
        read.files[0].yanked, None,
        "not yanked: pip and uv must pick it"
    );
    assert_eq!(
        read.files[0].url,
        format!("{GATE}/files/evil-pkg-name/evil_pkg_name-0.0.0-py3-none-any.whl")
    );
    let json = page.render_json(&plan(&[]));
    let read = ProjectPage::parse_json(&json, &gate_page_url("evil-pkg-name"), "evil-pkg-name")
        .expect("readable");
    assert_eq!(read.files[0].core_metadata, Some(BTreeMap::new()));
}

#[test]
fn root_page_is_valid() {
    let doc: Value = serde_json::from_slice(&render_root(Format::Json)).expect("json");
    assert_eq!(doc["projects"], serde_json::json!([]));
    let html = String::from_utf8(render_root(Format::Html)).expect("utf-8");
    assert!(html.starts_with("<!DOCTYPE html>"));
}

// ---------------------------------------------------------------------------------------------
// Robustness

#[test]
fn garbage_never_panics() {
    let html = html_sample();
    let json = json_sample();
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for sample in [html.as_bytes(), json.as_bytes()] {
        for end in 0..sample.len() {
            inputs.push(sample[..end].to_vec());
            inputs.push(sample[end..].to_vec());
        }
        for (i, seed) in (0..sample.len()).step_by(7).enumerate() {
            let mut garbled = sample.to_vec();
            garbled[seed] ^= [0x80, 0x3c, 0x22, 0x26, 0xff][i % 5];
            inputs.push(garbled);
        }
    }
    for nasty in [
        "<",
        "<a",
        "<a ",
        "<a href",
        "<a href=",
        "<a href=\"",
        "<a href='x",
        "<a =",
        "<a ==>",
        "<a/ / / href=x>",
        "</",
        "</a",
        "<!",
        "<!--",
        "<!-- -",
        "<?",
        "<script>",
        "<title>",
        "<title>Links for",
        "&",
        "&#",
        "&#x",
        "&#xFFFFFFFFFFFF;",
        "&#00000000000000000065;",
        "<a href=\"&#x0;\">",
        "<a href=\"\u{0}\">",
        "<base href=\"javascript:x\"><a href=\"a.whl\">",
        "<a href=\"//\">",
        "<a href=\"http://[::1\">",
        "<a href=\"http://h/%FF%FE.whl\">",
        "<\u{e9}a href=x>",
        "<a \u{e9}=\u{e9}>",
        "<a href=\u{e9}\u{e9}>",
    ] {
        inputs.push(nasty.as_bytes().to_vec());
    }
    inputs.push(vec![0xff, b'<', 0xfe, b'a', b' ', 0xc3, b'=', 0xc3]);
    for input in &inputs {
        let _ = ProjectPage::parse_html(input, PAGE_URL, "foo-bar");
        let _ = ProjectPage::parse_json(input, PAGE_URL, "foo-bar");
        let _ = negotiate(Some(&String::from_utf8_lossy(input)));
        let text = String::from_utf8_lossy(input);
        let _ = version_from_filename("foo-bar", &text);
        let _ = check_filename(&text);
    }
}

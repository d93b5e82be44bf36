//! pip and uv against the fixture PyPI alone, without a gate.

use moat_test_support::clients::{PyWorkspace, PythonClient};
use moat_test_support::pypi::{FixturePypi, Project, Release};

fn world() -> Vec<Project> {
    vec![
        Project::new("Tiny_Pad")
            .version("1.0.0")
            .version(Release::new("1.1.0").with_sdist())
            .version(Release::new("1.2.0").requires_python(">=3.8"))
            .version(Release::new("1.3.0").yanked("broken build")),
        Project::new("uses-tiny-pad").version(
            Release::new("2.0.0")
                .dependency("tiny.pad>=1.0")
                .file("uses_tiny_pad/extra.txt", "extra\n"),
        ),
        Project::new("future-only")
            .version("1.0.0")
            .version(Release::new("2.0.0").requires_python(">=4")),
    ]
}

fn installs_from_the_fixture(client: PythonClient) {
    let index = FixturePypi::start(world());
    let workspace = PyWorkspace::new();
    client
        .install(
            &workspace,
            &index.index_url(),
            &["TINY-PAD", "uses_tiny_pad", "future-only"],
        )
        .assert_success();
    assert_eq!(
        workspace.installed_version("tiny-pad").as_deref(),
        Some("1.2.0")
    );
    assert_eq!(
        workspace.installed_version("Uses.Tiny.Pad").as_deref(),
        Some("2.0.0")
    );
    assert_eq!(
        workspace.installed_version("future-only").as_deref(),
        Some("1.0.0")
    );
    let init = std::fs::read_to_string(workspace.target().join("tiny_pad/__init__.py"))
        .expect("tiny_pad/__init__.py installed");
    assert_eq!(init, "__version__ = \"1.2.0\"\n");
    assert!(workspace.target().join("uses_tiny_pad/extra.txt").is_file());
    let requests = index.requests();
    let wheels = requests.iter().filter(|r| r.path.ends_with(".whl")).count();
    assert_eq!(wheels, 3, "{requests:?}");
    assert!(
        requests.iter().any(|r| r
            .accept
            .as_deref()
            .is_some_and(|a| a.contains("application/vnd.pypi.simple.v1+json"))),
        "{requests:?}"
    );
}

fn pin_installs_that_version(client: PythonClient) {
    let index = FixturePypi::start(world());
    let workspace = PyWorkspace::new();
    client
        .install(&workspace, &index.index_url(), &["tiny-pad==1.0.0"])
        .assert_success();
    assert_eq!(
        workspace.installed_version("tiny-pad").as_deref(),
        Some("1.0.0")
    );
}

fn html_only_index_works(client: PythonClient) {
    let index = FixturePypi::start(world());
    index.set_html_only(true);
    let workspace = PyWorkspace::new();
    client
        .install(
            &workspace,
            &index.index_url(),
            &["tiny-pad>=1.1,<1.2", "uses-tiny-pad"],
        )
        .assert_success();
    assert_eq!(
        workspace.installed_version("tiny-pad").as_deref(),
        Some("1.1.0")
    );
    assert_eq!(
        workspace.installed_version("uses-tiny-pad").as_deref(),
        Some("2.0.0")
    );
}

fn corrupt_wheel_fails(client: PythonClient, marker: &str) {
    let index = FixturePypi::start(world());
    index.set_corrupt_file("tiny_pad-1.2.0-py3-none-any.whl", true);
    let workspace = PyWorkspace::new();
    client
        .install(&workspace, &index.index_url(), &["tiny-pad"])
        .assert_failure()
        .assert_contains(marker);
    assert_eq!(workspace.installed_version("tiny-pad"), None);
}

#[test]
fn pip_installs_from_the_fixture() {
    installs_from_the_fixture(PythonClient::Pip);
}

#[test]
fn uv_installs_from_the_fixture() {
    installs_from_the_fixture(PythonClient::Uv);
}

#[test]
fn pip_pin_installs_that_version() {
    pin_installs_that_version(PythonClient::Pip);
}

#[test]
fn uv_pin_installs_that_version() {
    pin_installs_that_version(PythonClient::Uv);
}

#[test]
fn pip_installs_from_an_html_only_index() {
    html_only_index_works(PythonClient::Pip);
}

#[test]
fn uv_installs_from_an_html_only_index() {
    html_only_index_works(PythonClient::Uv);
}

#[test]
fn pip_refuses_a_corrupt_wheel() {
    corrupt_wheel_fails(PythonClient::Pip, "DO NOT MATCH THE HASHES");
}

#[test]
fn uv_refuses_a_corrupt_wheel() {
    corrupt_wheel_fails(PythonClient::Uv, "Hash mismatch");
}

//! Parsing PyPI request paths, and the names they carry: project names (PEP 503/508) and
//! distribution file names (wheel, sdist, egg) with the version each one spells.
//!
//! Security invariant: every file a rendered page links to passes [`check_filename`], and every
//! file the gate serves is found on the parsed upstream page by exact file name, so no spelling
//! reaches an artifact that the policy did not see.

use moat_advisories::Ecosystem;

use crate::PathError;

/// Longest project name accepted (PyPI has no hard limit; real names stay far below).
const MAX_NAME_LEN: usize = 256;

/// Longest distribution file name accepted (the usual file-system limit).
const MAX_FILENAME_LEN: usize = 255;

/// The suffix of a PEP 658 core-metadata file, appended to its distribution's file name.
const METADATA_SUFFIX: &str = ".metadata";

/// Source and legacy archive extensions pip can install, matched ASCII case-insensitively.
/// Longer `.tar.*` spellings come before the bare `.tar`.
const SDIST_EXTENSIONS: &[&str] = &[
    ".tar.gz",
    ".tar.bz2",
    ".tar.xz",
    ".tar.lzma",
    ".tar.lz",
    ".tgz",
    ".tbz",
    ".txz",
    ".tlz",
    ".tar",
    ".zip",
];

/// A parsed PyPI request (the part after `/pypi`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PypiRequest {
    /// `/simple/`: the root index (the gate answers it with an empty project list).
    Root,
    /// `/simple/<project>/` (trailing slash optional).
    Project {
        /// The project name as requested (decoded, not normalised).
        name: String,
    },
    /// `/files/<project>/<filename>`, or with `metadata` its PEP 658 `<filename>.metadata`.
    File {
        /// The project name as requested (decoded, not normalised).
        project: String,
        /// The distribution file name, without any `.metadata` suffix.
        filename: String,
        /// Whether the core-metadata sidecar is asked for rather than the file.
        metadata: bool,
    },
}

impl PypiRequest {
    /// The project named by the request, if any.
    pub fn project(&self) -> Option<&str> {
        match self {
            PypiRequest::Root => None,
            PypiRequest::Project { name } => Some(name),
            PypiRequest::File { project, .. } => Some(project),
        }
    }
}

/// Parse the path segments after `/pypi`, as split by [`crate::npm::canonical_segments`]
/// (which already refused `..`, backslashes, control characters and double encoding).
///
/// Unknown shapes give [`PathError::NoRoute`], invalid project names
/// [`PathError::InvalidName`], invalid file names [`PathError::InvalidSpec`].
pub fn parse_segments(segments: &[String]) -> Result<PypiRequest, PathError> {
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["simple"] => Ok(PypiRequest::Root),
        ["simple", name] => {
            check_project_name(name)?;
            Ok(PypiRequest::Project {
                name: (*name).to_owned(),
            })
        }
        ["files", project, file] => {
            check_project_name(project)?;
            let (filename, metadata) = match file.strip_suffix(METADATA_SUFFIX) {
                Some(filename) => (filename, true),
                None => (*file, false),
            };
            check_filename(filename)?;
            Ok(PypiRequest::File {
                project: (*project).to_owned(),
                filename: filename.to_owned(),
                metadata,
            })
        }
        _ => Err(PathError::NoRoute),
    }
}

/// The PEP 503 normal form of a project name: lowercase, each run of `-`, `_`, `.` as one `-`
/// (the same key the policy and the advisories use).
pub fn normalize_name(name: &str) -> String {
    Ecosystem::PyPI.normalize_name(name)
}

/// Check a project name against PEP 508: ASCII letters, digits, `-`, `_`, `.`, starting and
/// ending with a letter or digit.
pub fn check_project_name(name: &str) -> Result<(), PathError> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b));
    if valid {
        Ok(())
    } else {
        Err(PathError::InvalidName(name.to_owned()))
    }
}

/// Check a distribution file name: no separator or leading `.`, only the characters wheel,
/// sdist and egg names use (ASCII letters, digits, `-_.+!~`), and a known distribution
/// extension (`.whl`, `.egg`, `.tar.gz`, `.zip`, `.tar.bz2`, …).
pub fn check_filename(filename: &str) -> Result<(), PathError> {
    let valid = !filename.is_empty()
        && filename.len() <= MAX_FILENAME_LEN
        && !filename.starts_with('.')
        && !filename.starts_with('-')
        && filename
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+!~".contains(&b))
        && has_dist_extension(filename);
    if valid {
        Ok(())
    } else {
        Err(PathError::InvalidSpec(filename.to_owned()))
    }
}

fn has_dist_extension(filename: &str) -> bool {
    [".whl", ".egg"]
        .iter()
        .chain(SDIST_EXTENSIONS)
        .any(|extension| {
            strip_suffix_ignore_case(filename, extension).is_some_and(|s| !s.is_empty())
        })
}

/// The version a distribution file name carries, when it is a distribution of `project`:
///
/// - wheel `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`: the second field;
/// - egg `{name}-{version}(-{python}(-{platform})?)?.egg`: the second field;
/// - sdist `{name}-{version}.tar.gz` (and the other archive extensions): what follows the first
///   `-` before which the name PEP 503-normalises to the project's (names may contain `-`), as
///   pip reads it.
///
/// `None` when the file names another project, has no version, or is not a distribution.
pub fn version_from_filename(project: &str, filename: &str) -> Option<String> {
    let wanted = normalize_name(project);
    if wanted.is_empty() {
        return None;
    }
    let version = if let Some(stem) = strip_suffix_ignore_case(filename, ".whl") {
        let fields: Vec<&str> = stem.split('-').collect();
        match fields.as_slice() {
            [name, version, _, _, _] | [name, version, _, _, _, _] => {
                (normalize_name(name) == wanted).then_some(*version)
            }
            _ => None,
        }
    } else if let Some(stem) = strip_suffix_ignore_case(filename, ".egg") {
        let mut fields = stem.split('-');
        let name = fields.next()?;
        let version = fields.next()?;
        (normalize_name(name) == wanted).then_some(version)
    } else {
        let stem = SDIST_EXTENSIONS
            .iter()
            .find_map(|extension| strip_suffix_ignore_case(filename, extension))?;
        stem.match_indices('-')
            .find(|(at, _)| {
                stem.get(..*at)
                    .is_some_and(|name| normalize_name(name) == wanted)
            })
            .and_then(|(at, _)| stem.get(at + 1..))
    }?;
    plausible_version(version).then(|| version.to_owned())
}

/// A version spelling that can be one: starts alphanumeric, then letters, digits and `.+!_-`.
fn plausible_version(version: &str) -> bool {
    version
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+!_-".contains(&b))
}

fn strip_suffix_ignore_case<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let split = text.len().checked_sub(suffix.len())?;
    let tail = text.get(split..)?;
    tail.eq_ignore_ascii_case(suffix)
        .then(|| text.get(..split))
        .flatten()
}

//! Request paths of the cargo sparse registry the gate serves, and the index layout they follow.
//!
//! Security invariant: a request names at most one crate (and version), spelled the way
//! crates.io accepts it; an index path whose prefix directories do not belong to the file name
//! is not routed, so no two paths serve one crate's index under different prefixes.

use crate::PathError;

/// Longest crate name crates.io accepts.
pub const MAX_NAME_LEN: usize = 64;

/// A parsed cargo registry request (the segments after `/crates`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CratesRequest {
    /// `index/config.json`.
    Config,
    /// `index/1/a`, `index/2/ab`, `index/3/a/abc`, `index/ab/cd/abcd…`: one crate's index file.
    IndexFile {
        /// The crate name as requested (cargo lowercases it; the prefix directories were checked
        /// against it case-insensitively).
        name: String,
    },
    /// `dl/<name>/<version>/download`: one `.crate` file (the gate's config.json says
    /// `dl = "<base>/crates/dl"`, and cargo appends `/{crate}/{version}/download`).
    Download {
        /// The crate name as cargo spells it (from the index line).
        name: String,
        /// The version, valid SemVer (still to be looked up in the index file).
        version: String,
    },
}

impl CratesRequest {
    /// The crate named by the request, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            CratesRequest::Config => None,
            CratesRequest::IndexFile { name } | CratesRequest::Download { name, .. } => Some(name),
        }
    }
}

/// Parse the segments after `/crates`, already percent-decoded and split by
/// [`crate::npm::canonical_segments`] (which refuses `..`, backslashes, control characters and
/// double encoding).
///
/// A name that is not a crates.io crate name is [`PathError::InvalidName`], a version that is not
/// SemVer [`PathError::InvalidSpec`]; any other shape, including index prefix directories that
/// do not match the file name, is [`PathError::NoRoute`].
pub fn parse_segments(segments: &[String]) -> Result<CratesRequest, PathError> {
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["index", "config.json"] => Ok(CratesRequest::Config),
        ["index", rest @ ..] => index_file(rest),
        ["dl", name, version, "download"] => {
            check_name(name)?;
            check_version(version)?;
            Ok(CratesRequest::Download {
                name: (*name).to_owned(),
                version: (*version).to_owned(),
            })
        }
        _ => Err(PathError::NoRoute),
    }
}

/// `<prefix dirs…>/<name>` under `index/`: one or two directories, then the file.
fn index_file(rest: &[&str]) -> Result<CratesRequest, PathError> {
    let [dirs @ .., name] = rest else {
        return Err(PathError::NoRoute);
    };
    if dirs.is_empty() || dirs.len() > 2 {
        return Err(PathError::NoRoute);
    }
    check_name(name)?;
    let expected = prefix(&name.to_ascii_lowercase());
    if dirs.join("/").to_ascii_lowercase() != expected {
        return Err(PathError::NoRoute);
    }
    Ok(CratesRequest::IndexFile {
        name: (*name).to_owned(),
    })
}

/// Whether `name` is a crate name crates.io accepts: 1 to 64 ASCII letters, digits, `-` and `_`,
/// starting with a letter.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    bytes.len() <= MAX_NAME_LEN
        && first.is_ascii_alphabetic()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

/// Whether two crate names are the same crate under crates.io rules: ASCII case-insensitive, with
/// `-` and `_` equivalent.
pub fn same_name(left: &str, right: &str) -> bool {
    let fold = |b: u8| match b {
        b'_' => b'-',
        other => other.to_ascii_lowercase(),
    };
    left.len() == right.len()
        && left
            .bytes()
            .zip(right.bytes())
            .all(|(l, r)| fold(l) == fold(r))
}

fn check_name(name: &str) -> Result<(), PathError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(PathError::InvalidName(name.to_owned()))
    }
}

fn check_version(version: &str) -> Result<(), PathError> {
    match semver::Version::parse(version) {
        Ok(_) => Ok(()),
        Err(_) => Err(PathError::InvalidSpec(version.to_owned())),
    }
}

/// The index path of a crate, lowercased: `1/a`, `2/ab`, `3/a/abc`, `se/rd/serde`.
///
/// Meant for valid crate names; any other string still gets a path (by characters, never
/// panicking), which no valid request matches.
pub fn index_path(name: &str) -> String {
    let lower = name.to_lowercase();
    format!("{}/{lower}", prefix(&lower))
}

/// The prefix directories of `name` as spelled (cargo's `{prefix}`): `1`, `2`, `3/a`, `ab/cd`.
pub fn prefix(name: &str) -> String {
    let mut chars = name.chars();
    match name.chars().count() {
        0 | 1 => "1".to_owned(),
        2 => "2".to_owned(),
        3 => format!("3/{}", chars.next().unwrap_or_default()),
        _ => {
            let first: String = chars.by_ref().take(2).collect();
            let second: String = chars.take(2).collect();
            format!("{first}/{second}")
        }
    }
}

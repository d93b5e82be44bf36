//! Canonicalising and parsing npm request paths.
//!
//! Security invariant: every URL spelling of one package or version (percent-encoded scope,
//! `%2F` in any case, duplicate slashes) parses to the same [`NpmRequest`], and spellings that
//! could mean something else to another component (`..`, backslashes, control characters,
//! double encoding) are refused outright.

use crate::PathError;

/// A parsed npm registry request (the part after `/npm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NpmRequest {
    /// `GET /-/ping`.
    Ping,
    /// `GET /<pkg>`: the packument.
    Packument {
        /// Package name as requested (scoped names as `@scope/name`).
        name: String,
    },
    /// `GET /<pkg>/<version-or-tag>`: one version document.
    Version {
        /// Package name.
        name: String,
        /// The version or dist-tag as requested.
        spec: String,
    },
    /// `GET /<pkg>/-/<basename>-<version>.tgz`.
    Tarball {
        /// Package name.
        name: String,
        /// The version taken from the file name (still to be checked against the packument).
        version: String,
    },
    /// `GET /-/package/<pkg>/dist-tags`.
    DistTags {
        /// Package name.
        name: String,
    },
}

impl NpmRequest {
    /// The package named by the request, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            NpmRequest::Ping => None,
            NpmRequest::Packument { name }
            | NpmRequest::Version { name, .. }
            | NpmRequest::Tarball { name, .. }
            | NpmRequest::DistTags { name } => Some(name),
        }
    }
}

/// Percent-decode a raw request path once and split it into non-empty segments.
///
/// Refuses `%25` (double encoding), malformed escapes, non-UTF-8, `..`, backslashes, NUL and
/// other control characters. Duplicate slashes collapse; `%2F` becomes a separator.
pub fn canonical_segments(raw_path: &str) -> Result<Vec<String>, PathError> {
    let bytes = raw_path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let high = bytes.get(i + 1).and_then(|b| hex_value(*b));
            let low = bytes.get(i + 2).and_then(|b| hex_value(*b));
            let (Some(high), Some(low)) = (high, low) else {
                return Err(PathError::BadEncoding);
            };
            let value = high * 16 + low;
            if value == b'%' {
                return Err(PathError::DoubleEncoded);
            }
            decoded.push(value);
            i += 3;
        } else {
            decoded.push(byte);
            i += 1;
        }
    }
    let text = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    if text.contains('\\') {
        return Err(PathError::Forbidden("backslash"));
    }
    if text.contains("..") {
        return Err(PathError::Forbidden(".."));
    }
    if text.chars().any(char::is_control) {
        return Err(PathError::Forbidden("control character"));
    }
    Ok(text
        .split('/')
        .filter(|segment| !segment.is_empty() && *segment != ".")
        .map(str::to_owned)
        .collect())
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Parse the path of an npm request, without its `/npm` prefix (`/lodash`, `/@types%2fnode`,
/// `/-/ping`, …). The raw (still percent-encoded) path is expected.
pub fn parse_npm_path(raw_path: &str) -> Result<NpmRequest, PathError> {
    let segments = canonical_segments(raw_path)?;
    parse_segments(&segments)
}

/// Parse already canonical segments (see [`canonical_segments`]).
pub fn parse_segments(segments: &[String]) -> Result<NpmRequest, PathError> {
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["-", "ping"] => Ok(NpmRequest::Ping),
        ["-", "package", rest @ ..] => {
            let (name, rest) = take_name(rest)?;
            match rest {
                ["dist-tags"] => Ok(NpmRequest::DistTags { name }),
                _ => Err(PathError::NoRoute),
            }
        }
        ["-", ..] => Err(PathError::NoRoute),
        _ => {
            let (name, rest) = take_name(&parts)?;
            match rest {
                [] => Ok(NpmRequest::Packument { name }),
                ["-", file] => {
                    let version = tarball_version(&name, file)?;
                    Ok(NpmRequest::Tarball { name, version })
                }
                [spec] => {
                    check_spec(spec)?;
                    Ok(NpmRequest::Version {
                        name,
                        spec: (*spec).to_owned(),
                    })
                }
                _ => Err(PathError::NoRoute),
            }
        }
    }
}

/// Take a package name (one segment, or two when scoped) off the front of `parts`.
fn take_name<'a, 'b>(parts: &'a [&'b str]) -> Result<(String, &'a [&'b str]), PathError> {
    match parts {
        [scope, name, rest @ ..] if scope.starts_with('@') => {
            let full = format!("{scope}/{name}");
            check_name_part(&scope[1..], &full)?;
            check_name_part(name, &full)?;
            Ok((full, rest))
        }
        [scope, ..] if scope.starts_with('@') => Err(PathError::InvalidName((*scope).to_owned())),
        [name, rest @ ..] => {
            check_name_part(name, name)?;
            Ok(((*name).to_owned(), rest))
        }
        [] => Err(PathError::NoRoute),
    }
}

/// npm name rules for one part (scope or bare name): URL-safe characters, no leading `.`/`_`,
/// at most 214 bytes in all.
fn check_name_part(part: &str, full: &str) -> Result<(), PathError> {
    let valid = !part.is_empty()
        && full.len() <= 214
        && !part.starts_with('.')
        && !part.starts_with('_')
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!*'()".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(PathError::InvalidName(full.to_owned()))
    }
}

fn check_spec(spec: &str) -> Result<(), PathError> {
    let valid = !spec.is_empty()
        && spec.len() <= 256
        && spec
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._+=".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(PathError::InvalidSpec(spec.to_owned()))
    }
}

/// The version in a tarball file name `<basename>-<version>.tgz`, where `basename` is the name
/// without its scope (compared ASCII case-insensitively).
fn tarball_version(name: &str, file: &str) -> Result<String, PathError> {
    let basename = name.rsplit('/').next().unwrap_or(name);
    let invalid = || PathError::InvalidSpec(file.to_owned());
    let stem = file.strip_suffix(".tgz").ok_or_else(invalid)?;
    let prefix = stem.get(..basename.len() + 1).ok_or_else(invalid)?;
    if !prefix.eq_ignore_ascii_case(&format!("{basename}-")) {
        return Err(invalid());
    }
    let version = &stem[basename.len() + 1..];
    check_spec(version)?;
    Ok(version.to_owned())
}

/// A version spelling cleaned the way `semver.clean` does: surrounding spaces, a leading `=`
/// and/or `v` removed. Returns `None` when nothing was removed.
pub fn clean_version(spec: &str) -> Option<&str> {
    let trimmed = spec.trim();
    let without_eq = trimmed.strip_prefix('=').unwrap_or(trimmed);
    let without_v = without_eq
        .strip_prefix('v')
        .or_else(|| without_eq.strip_prefix('V'))
        .unwrap_or(without_eq);
    (without_v != spec && !without_v.is_empty()).then_some(without_v)
}

//! The compact on-disk index: one JSON file per ecosystem, `<dir>/<ecosystem>.index.json`.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Advisory;
use super::model::{EcoData, Entry};
use crate::{Ecosystem, Error};

/// Bumped whenever the file layout changes; other versions are refused.
pub(crate) const FORMAT: u32 = 1;

#[derive(Serialize)]
struct IndexRef<'a> {
    format: u32,
    ecosystem: Ecosystem,
    records: usize,
    malicious: usize,
    newest_modified: Option<jiff::Timestamp>,
    advisories: &'a [Advisory],
    packages: Vec<(&'a str, &'a [Entry])>,
}

#[derive(Deserialize)]
struct IndexOwned {
    ecosystem: Ecosystem,
    records: usize,
    malicious: usize,
    newest_modified: Option<jiff::Timestamp>,
    advisories: Vec<Advisory>,
    packages: Vec<(String, Vec<Entry>)>,
}

#[derive(Deserialize)]
struct FormatOnly {
    format: u32,
}

/// The index file of `ecosystem` in `dir`.
pub(crate) fn path(dir: &Path, ecosystem: Ecosystem) -> PathBuf {
    dir.join(format!("{}.index.json", ecosystem.as_str()))
}

/// Serialise one ecosystem deterministically (packages sorted by name).
pub(crate) fn encode(ecosystem: Ecosystem, data: &EcoData) -> Vec<u8> {
    let mut packages: Vec<(&str, &[Entry])> = data
        .packages
        .iter()
        .map(|(name, entries)| (name.as_str(), entries.as_slice()))
        .collect();
    packages.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let index = IndexRef {
        format: FORMAT,
        ecosystem,
        records: data.records,
        malicious: data.malicious,
        newest_modified: data.newest_modified,
        advisories: &data.advisories,
        packages,
    };
    // Serialising plain structs, strings and numbers into a Vec cannot fail.
    serde_json::to_vec(&index).unwrap_or_default()
}

/// Hex SHA-256 of bytes.
pub(crate) fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Parse one index file's bytes.
pub(crate) fn decode(file: &Path, expected: Ecosystem, bytes: &[u8]) -> Result<EcoData, Error> {
    let invalid = |message: String| Error::Index {
        path: file.to_owned(),
        message,
    };
    let format: FormatOnly =
        serde_json::from_slice(bytes).map_err(|error| invalid(error.to_string()))?;
    if format.format != FORMAT {
        return Err(invalid(format!(
            "format version {} where {FORMAT} was expected",
            format.format
        )));
    }
    let index: IndexOwned =
        serde_json::from_slice(bytes).map_err(|error| invalid(error.to_string()))?;
    if index.ecosystem != expected {
        return Err(invalid(format!(
            "holds {} data where {expected} was expected",
            index.ecosystem
        )));
    }
    let count = index.advisories.len();
    let mut packages = HashMap::with_capacity(index.packages.len());
    for (name, entries) in index.packages {
        if entries.iter().any(|entry| entry.advisory as usize >= count) {
            return Err(invalid(format!(
                "entry for `{name}` names a missing advisory"
            )));
        }
        packages.insert(name, entries);
    }
    Ok(EcoData {
        records: index.records,
        malicious: index.malicious,
        newest_modified: index.newest_modified,
        advisories: index.advisories,
        packages,
        digest: digest(bytes),
    })
}

/// Write `bytes` to `target` through a temporary file in the same directory and a rename.
pub(crate) fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let dir = target.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let file_name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&temporary).map_err(io(&temporary))?;
        file.write_all(bytes).map_err(io(&temporary))?;
        file.sync_all().map_err(io(&temporary))?;
        fs::rename(&temporary, target).map_err(io(target))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

//! `config.json` at the root of a sparse index: reading the upstream's, rendering the gate's, and
//! turning a `dl` template into a download URL the way cargo does.

use serde_json::{Map, Value};

use crate::MetadataError;
use crate::crates::path::prefix;

const CRATE_MARKER: &str = "{crate}";
const VERSION_MARKER: &str = "{version}";
const PREFIX_MARKER: &str = "{prefix}";
const LOWER_PREFIX_MARKER: &str = "{lowerprefix}";
const CHECKSUM_MARKER: &str = "{sha256-checksum}";

/// The parts of an upstream `config.json` the gate uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// The download URL template (`dl`).
    pub dl: String,
    /// The web API base URL (`api`), if the registry has one.
    pub api: Option<String>,
}

/// Read `dl` (required string) and `api` (optional string) from an upstream `config.json`.
/// Other keys (`auth-required`, …) are ignored.
pub fn parse_config(body: &[u8]) -> Result<RegistryConfig, MetadataError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| MetadataError::Malformed(format!("config.json is not JSON: {err}")))?;
    let Value::Object(doc) = value else {
        return Err(MetadataError::Malformed(
            "config.json is not a JSON object".into(),
        ));
    };
    let Some(dl) = doc.get("dl").and_then(Value::as_str) else {
        return Err(MetadataError::Malformed(
            "config.json has no `dl` string".into(),
        ));
    };
    let api = match doc.get("api") {
        None | Some(Value::Null) => None,
        Some(Value::String(api)) => Some(api.clone()),
        Some(_) => {
            return Err(MetadataError::Malformed(
                "config.json `api` is not a string".into(),
            ));
        }
    };
    Ok(RegistryConfig {
        dl: dl.to_owned(),
        api,
    })
}

/// The gate's `config.json`: `{"dl": dl}`, plus `"api"` when given.
pub fn render_config(dl: &str, api: Option<&str>) -> Vec<u8> {
    render(dl, api, false)
}

/// The gate's `config.json` for a registry that wants a token on every request:
/// [`render_config`] plus `"auth-required": true` (cargo then sends its registry token with index
/// and download requests, not only with API calls).
pub fn render_config_auth_required(dl: &str, api: Option<&str>) -> Vec<u8> {
    render(dl, api, true)
}

fn render(dl: &str, api: Option<&str>, auth_required: bool) -> Vec<u8> {
    let mut doc = Map::new();
    doc.insert("dl".into(), Value::String(dl.to_owned()));
    if let Some(api) = api {
        doc.insert("api".into(), Value::String(api.to_owned()));
    }
    if auth_required {
        doc.insert("auth-required".into(), Value::Bool(true));
    }
    Value::Object(doc).to_string().into_bytes()
}

/// The download URL of `name`@`version` from a `dl` template, as cargo computes it.
///
/// Without any marker, `/{name}/{version}/download` is appended. Otherwise `{crate}`,
/// `{version}`, `{prefix}` (of the name as spelled), `{lowerprefix}` and `{sha256-checksum}`
/// (`cksum`) are replaced, in that order.
pub fn download_url(dl: &str, name: &str, version: &str, cksum: &str) -> String {
    let markers = [
        CRATE_MARKER,
        VERSION_MARKER,
        PREFIX_MARKER,
        LOWER_PREFIX_MARKER,
        CHECKSUM_MARKER,
    ];
    if !markers.iter().any(|marker| dl.contains(marker)) {
        return format!("{dl}/{name}/{version}/download");
    }
    let prefix = prefix(name);
    dl.replace(CRATE_MARKER, name)
        .replace(VERSION_MARKER, version)
        .replace(PREFIX_MARKER, &prefix)
        .replace(LOWER_PREFIX_MARKER, &prefix.to_lowercase())
        .replace(CHECKSUM_MARKER, cksum)
}

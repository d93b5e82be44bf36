//! An upstream npm packument, as the gate reads it: its name, versions, publish times, dist-tags
//! and each version's `dist`, plus the [`RewritePlan`] that turns a policy evaluation into the
//! changes the gate makes (deprecate blocked versions, move `latest`, point tarballs at the gate).

use std::collections::BTreeMap;

use moat_policy::{Action, PackageEvaluation, VersionInfo};
use serde_json::{Map, Value};

use crate::MetadataError;
use crate::integrity::{Integrity, IntegrityError};
use crate::npm::path::clean_version;

/// A parsed upstream packument (the full document, `Accept: application/json`).
#[derive(Debug, Clone, PartialEq)]
pub struct Packument {
    pub(crate) name: String,
    pub(crate) doc: Map<String, Value>,
}

/// Where a version's tarball lives upstream and what it must hash to.
#[derive(Debug, Clone, PartialEq)]
pub struct Dist {
    /// The upstream `dist.tarball` URL (the only URL an artifact is ever fetched from).
    pub tarball: String,
    /// The expected digest, or why there is none usable.
    pub integrity: Result<Integrity, IntegrityError>,
}

/// The changes the gate makes to a packument, decided once per (packument, evaluation).
#[derive(Debug, Clone, PartialEq)]
pub struct RewritePlan {
    /// Blocked versions and the block message set as their `deprecated` text.
    pub blocked: BTreeMap<String, String>,
    /// The dist-tags as served: `latest` moved to the newest approved version when it points at
    /// a blocked one; other tags are kept (their blocked target is deprecated, and its version
    /// document and tarball answer 403 with the reason).
    pub dist_tags: Map<String, Value>,
    /// Prefix of rewritten tarball URLs: `<public_url>/npm/<name>/-/`.
    pub tarball_base: String,
}

impl Packument {
    /// Parse an upstream body and check that it is the packument of `requested` (npm names
    /// compared ASCII case-insensitively).
    pub fn parse(body: &[u8], requested: &str) -> Result<Packument, MetadataError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|err| MetadataError::Malformed(format!("not JSON: {err}")))?;
        let Value::Object(doc) = value else {
            return Err(MetadataError::Malformed("not a JSON object".into()));
        };
        let Some(name) = doc.get("name").and_then(Value::as_str) else {
            return Err(MetadataError::Malformed("no `name` string".into()));
        };
        if !name.eq_ignore_ascii_case(requested) {
            return Err(MetadataError::NameMismatch {
                requested: requested.to_owned(),
                found: name.to_owned(),
            });
        }
        let name = name.to_owned();
        match doc.get("versions") {
            None => {}
            Some(Value::Object(versions)) => {
                if let Some((version, _)) = versions.iter().find(|(_, v)| !v.is_object()) {
                    return Err(MetadataError::Malformed(format!(
                        "version {version} is not an object"
                    )));
                }
            }
            Some(_) => {
                return Err(MetadataError::Malformed(
                    "`versions` is not an object".into(),
                ));
            }
        }
        for key in ["dist-tags", "time"] {
            if doc.get(key).is_some_and(|v| !v.is_object()) {
                return Err(MetadataError::Malformed(format!(
                    "`{key}` is not an object"
                )));
            }
        }
        Ok(Packument { name, doc })
    }

    /// The package name as the upstream spells it.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn versions(&self) -> Option<&Map<String, Value>> {
        self.doc.get("versions").and_then(Value::as_object)
    }

    pub(crate) fn object(&self, key: &str) -> Option<&Map<String, Value>> {
        self.doc.get(key).and_then(Value::as_object)
    }

    /// Whether `version` is published (exact key).
    pub fn has_version(&self, version: &str) -> bool {
        self.versions().is_some_and(|v| v.contains_key(version))
    }

    /// Every version with its publish time (`time[version]`), for policy evaluation.
    pub fn version_infos(&self) -> Vec<VersionInfo> {
        let time = self.object("time");
        self.versions()
            .into_iter()
            .flat_map(|versions| versions.keys())
            .map(|version| VersionInfo {
                version: version.clone(),
                published: time
                    .and_then(|t| t.get(version))
                    .and_then(Value::as_str)
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok()),
            })
            .collect()
    }

    /// The upstream dist-tags.
    pub fn dist_tags(&self) -> Map<String, Value> {
        self.object("dist-tags").cloned().unwrap_or_default()
    }

    /// A version's upstream `dist`, if the version exists and names a tarball.
    pub fn dist(&self, version: &str) -> Option<Dist> {
        let dist = self.versions()?.get(version)?.get("dist")?;
        let tarball = dist.get("tarball")?.as_str()?.to_owned();
        let integrity = Integrity::from_dist(
            dist.get("integrity").and_then(Value::as_str),
            dist.get("shasum").and_then(Value::as_str),
        );
        Some(Dist { tarball, integrity })
    }

    /// Resolve `GET /<pkg>/<spec>`: an exact version, a (rewritten) dist-tag, or a spelling that
    /// cleans to an exact version (`v1.2.3`, `=1.2.3`).
    pub fn resolve_spec(&self, spec: &str, plan: &RewritePlan) -> Option<String> {
        if self.has_version(spec) {
            return Some(spec.to_owned());
        }
        if let Some(target) = plan.dist_tags.get(spec).and_then(Value::as_str) {
            return self.has_version(target).then(|| target.to_owned());
        }
        clean_version(spec)
            .filter(|cleaned| self.has_version(cleaned))
            .map(str::to_owned)
    }
}

impl RewritePlan {
    /// Decide the rewrite from an evaluation. `public_url` has no trailing slash.
    pub fn new(
        packument: &Packument,
        evaluation: &PackageEvaluation,
        public_url: &str,
    ) -> RewritePlan {
        let name = packument.name();
        let mut blocked = BTreeMap::new();
        for (version, verdict) in &evaluation.versions {
            match verdict.action {
                Action::Block => {
                    let why = format!("{public_url}/-/why/npm/{name}/{version}");
                    blocked.insert(version.clone(), verdict.block_message(&why));
                }
                Action::Allow | Action::Warn => {}
            }
        }
        RewritePlan::from_blocked(
            packument,
            blocked,
            evaluation.newest_approved.as_deref(),
            public_url,
        )
    }

    /// The plan for a given set of blocked versions (and their messages).
    pub fn from_blocked(
        packument: &Packument,
        blocked: BTreeMap<String, String>,
        newest_approved: Option<&str>,
        public_url: &str,
    ) -> RewritePlan {
        let mut dist_tags = packument.dist_tags();
        let latest_blocked = dist_tags
            .get("latest")
            .and_then(Value::as_str)
            .is_some_and(|latest| blocked.contains_key(latest));
        if let (true, Some(approved)) = (latest_blocked, newest_approved) {
            dist_tags.insert("latest".into(), Value::String(approved.to_owned()));
        }
        let tarball_base = format!("{public_url}/npm/{}/-/", packument.name());
        RewritePlan {
            blocked,
            dist_tags,
            tarball_base,
        }
    }

    /// The block message of `version`, if it is blocked.
    pub fn block_message(&self, version: &str) -> Option<&str> {
        self.blocked.get(version).map(String::as_str)
    }
}

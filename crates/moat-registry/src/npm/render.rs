//! Rendering the rewritten documents a client receives: full and abbreviated packuments, one
//! version document, the dist-tags document. Artifact bytes are never altered; only metadata.

use serde_json::{Map, Value};

use crate::npm::{Packument, RewritePlan};

/// The fields of a version kept in the abbreviated ("corgi") packument.
const ABBREVIATED_VERSION_FIELDS: &[&str] = &[
    "name",
    "version",
    "dependencies",
    "optionalDependencies",
    "peerDependencies",
    "peerDependenciesMeta",
    "bundleDependencies",
    "bundledDependencies",
    "bin",
    "directories",
    "dist",
    "engines",
    "os",
    "cpu",
    "deprecated",
    "hasInstallScript",
    "_hasShrinkwrap",
    "funding",
    "license",
    "acceptDependencies",
];

/// The `Content-Type` of the abbreviated packument.
pub const ABBREVIATED_CONTENT_TYPE: &str = "application/vnd.npm.install-v1+json";

impl Packument {
    /// The full packument with the plan applied.
    pub fn render_full(&self, plan: &RewritePlan) -> Vec<u8> {
        let mut doc = self.doc.clone();
        doc.insert("dist-tags".into(), Value::Object(plan.dist_tags.clone()));
        if let Some(Value::Object(versions)) = doc.get_mut("versions") {
            for (version, object) in versions.iter_mut() {
                if let Value::Object(object) = object {
                    self.rewrite_version(version, object, plan);
                }
            }
        }
        to_bytes(&Value::Object(doc))
    }

    /// The abbreviated packument (`application/vnd.npm.install-v1+json`) with the plan applied,
    /// built from the full document.
    pub fn render_abbreviated(&self, plan: &RewritePlan) -> Vec<u8> {
        let mut doc = Map::new();
        doc.insert("name".into(), Value::String(self.name.clone()));
        let modified = self
            .doc
            .get("modified")
            .or_else(|| self.object("time").and_then(|time| time.get("modified")));
        if let Some(modified) = modified {
            doc.insert("modified".into(), modified.clone());
        }
        doc.insert("dist-tags".into(), Value::Object(plan.dist_tags.clone()));
        let mut versions = Map::new();
        for (version, object) in self.versions().into_iter().flatten() {
            let Value::Object(full) = object else {
                continue;
            };
            let mut abbreviated: Map<String, Value> = ABBREVIATED_VERSION_FIELDS
                .iter()
                .filter_map(|field| full.get(*field).map(|v| ((*field).to_owned(), v.clone())))
                .collect();
            self.rewrite_version(version, &mut abbreviated, plan);
            versions.insert(version.clone(), Value::Object(abbreviated));
        }
        doc.insert("versions".into(), Value::Object(versions));
        to_bytes(&Value::Object(doc))
    }

    /// One version document with the plan applied, or `None` when the version does not exist.
    pub fn render_version(&self, version: &str, plan: &RewritePlan) -> Option<Vec<u8>> {
        let Value::Object(object) = self.versions()?.get(version)? else {
            return None;
        };
        let mut object = object.clone();
        self.rewrite_version(version, &mut object, plan);
        Some(to_bytes(&Value::Object(object)))
    }

    /// The dist-tags document (`GET /-/package/<pkg>/dist-tags`) as served.
    pub fn render_dist_tags(&self, plan: &RewritePlan) -> Vec<u8> {
        to_bytes(&Value::Object(plan.dist_tags.clone()))
    }

    /// The tarball URL the gate serves for `version`.
    pub fn gate_tarball_url(&self, version: &str, plan: &RewritePlan) -> String {
        let basename = self.name.rsplit('/').next().unwrap_or(&self.name);
        format!("{}{basename}-{version}.tgz", plan.tarball_base)
    }

    fn rewrite_version(&self, version: &str, object: &mut Map<String, Value>, plan: &RewritePlan) {
        if let Some(message) = plan.block_message(version) {
            object.insert("deprecated".into(), Value::String(message.to_owned()));
        }
        if let Some(Value::Object(dist)) = object.get_mut("dist") {
            dist.insert(
                "tarball".into(),
                Value::String(self.gate_tarball_url(version, plan)),
            );
        }
    }
}

fn to_bytes(value: &Value) -> Vec<u8> {
    // Serialising a `Value` cannot fail (string keys only).
    serde_json::to_vec(value).unwrap_or_default()
}

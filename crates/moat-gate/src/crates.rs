//! The cargo sparse-registry routes: `config.json`, index files, `.crate` downloads.
//!
//! Blocked versions stay in the index marked `"yanked": true` (cargo's resolver skips them);
//! their download answers 403 with a `text/plain` reason, which cargo prints — the line that
//! holds for a `Cargo.lock` that pins a blocked version. A crate blocked as a whole answers 403
//! on its index file. Every decision is recorded before it is answered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use moat_advisories::Ecosystem;
use moat_policy::{Action, PackageEvaluation};
use moat_registry::crates::{CratesRequest, IndexFile, RegistryConfig};
use moat_registry::{Algorithm, Integrity, MetaResponse, PathError};
use sha2::{Digest, Sha256};

use crate::GateError;
use crate::cache::{Cached, Rendered};
use crate::call::{Call, Evaluated, Step, not_found, step};
use crate::gate::{ArtifactSource, Gate, Package, unexpected_not_modified};
use crate::npm::etag_matches;
use crate::respond::{self, JSON, TEXT};

const CRATES: Ecosystem = Ecosystem::CratesIo;

/// One crate's index file as fetched and evaluated, and its rewritten form.
#[derive(Debug)]
pub(crate) struct CrateEntry {
    fetched_at: Instant,
    upstream_etag: Option<String>,
    index: Arc<IndexFile>,
    body_digest: Arc<str>,
    pub(crate) evaluation: PackageEvaluation,
    /// Blocked versions (`vers` as the index spells it) and their block messages.
    blocked: BTreeMap<String, String>,
    identity: String,
    rendered: OnceLock<Rendered>,
}

impl Cached for CrateEntry {
    fn fetched_at(&self) -> Instant {
        self.fetched_at
    }
}

impl CrateEntry {
    fn rendered(&self) -> &Rendered {
        self.rendered.get_or_init(|| {
            let blocked: BTreeSet<String> = self.blocked.keys().cloned().collect();
            Rendered::new(self.index.render(&blocked), "c", &self.identity)
        })
    }
}

impl Gate {
    /// Load and evaluate a crate's index file: name-level blocks first (no upstream contact),
    /// then the upstream index file through the cache.
    pub(crate) async fn crate_index(&self, name: &str) -> Result<Package<CrateEntry>, GateError> {
        let key = name.to_ascii_lowercase();
        let ttl = self.config.metadata_ttl;
        if let Some(entry) = self
            .crate_indexes
            .get(&key)
            .filter(|e| e.fetched_at.elapsed() < ttl)
        {
            return Ok(Package::Found(entry));
        }
        let verdict = self.evaluate_name(CRATES, name);
        if verdict.action == Action::Block {
            return Ok(Package::NameBlocked(verdict));
        }
        let url = self
            .upstream
            .crates_index_url(&moat_registry::crates::index_path(&key));
        let loaded = self
            .cached(&self.crate_indexes, &key, async |stale| {
                let etag = stale.as_ref().and_then(|e| e.upstream_etag.clone());
                let answer = self
                    .upstream_metadata(CRATES, &url, "text/plain", etag.as_deref())
                    .await?;
                let entry = match answer {
                    MetaResponse::NotFound => return Ok(None),
                    MetaResponse::NotModified => match stale {
                        Some(stale) => self.evaluate_crate(
                            stale.upstream_etag.clone(),
                            Arc::clone(&stale.index),
                            Arc::clone(&stale.body_digest),
                        ),
                        None => return Err(unexpected_not_modified(CRATES)),
                    },
                    MetaResponse::Fresh { body, etag, .. } => {
                        let index = IndexFile::parse(&body, &key).map_err(|source| {
                            GateError::Metadata {
                                name: key.clone(),
                                source,
                            }
                        })?;
                        let digest: Arc<str> = hex::encode(Sha256::digest(&body)).into();
                        self.evaluate_crate(etag, Arc::new(index), digest)
                    }
                };
                Ok(Some(entry))
            })
            .await?;
        Ok(match loaded {
            Some(entry) => Package::Found(entry),
            None => Package::NotFound,
        })
    }

    fn evaluate_crate(
        &self,
        upstream_etag: Option<String>,
        index: Arc<IndexFile>,
        body_digest: Arc<str>,
    ) -> CrateEntry {
        let name = index.name().to_owned();
        let evaluation = self.evaluate_versions(CRATES, &name, &index.version_infos());
        let blocked: BTreeMap<String, String> = evaluation
            .versions
            .iter()
            .filter(|(_, verdict)| verdict.action == Action::Block)
            .map(|(version, verdict)| {
                let why = self.why_url(CRATES, &name, Some(version));
                (version.clone(), verdict.block_message(&why))
            })
            .collect();
        let identity = self.identity(
            &body_digest,
            blocked.iter().map(|(v, m)| (v.as_str(), m.as_str())),
        );
        CrateEntry {
            fetched_at: Instant::now(),
            upstream_etag,
            index,
            body_digest,
            evaluation,
            blocked,
            identity,
            rendered: OnceLock::new(),
        }
    }

    /// The upstream registry's `config.json`, fetched once.
    async fn crates_upstream_config(&self) -> Result<&RegistryConfig, GateError> {
        self.crates_config
            .get_or_try_init(async || {
                let url = self.upstream.crates_index_url("config.json");
                match self.upstream_metadata(CRATES, &url, JSON, None).await? {
                    MetaResponse::Fresh { body, .. } => moat_registry::crates::parse_config(&body)
                        .map_err(|source| GateError::Metadata {
                            name: "config.json".to_owned(),
                            source,
                        }),
                    MetaResponse::NotFound => Err(GateError::upstream(CRATES)(
                        moat_registry::UpstreamError::Status(404),
                    )),
                    MetaResponse::NotModified => Err(unexpected_not_modified(CRATES)),
                }
            })
            .await
    }
}

impl Evaluated for CrateEntry {
    fn evaluation(&self) -> &PackageEvaluation {
        &self.evaluation
    }
}

/// The cargo routes, on the segments after `/crates`.
impl Call<'_> {
    pub(crate) async fn crates(&self, segments: &[String]) -> Response {
        let request = match moat_registry::crates::parse_segments(segments) {
            Ok(request) => request,
            Err(PathError::NoRoute) => return not_found(CRATES),
            Err(err) => {
                let reason = format!("moat: bad request: {err}");
                return respond::text_error(StatusCode::BAD_REQUEST, &reason);
            }
        };
        let result = match &request {
            CratesRequest::Config => Ok(self.crates_config()),
            CratesRequest::IndexFile { name } => self.crates_index_file(name).await,
            CratesRequest::Download { name, version } => self.crates_download(name, version).await,
        };
        result.unwrap_or_else(|err| respond::gate_error_text(&err))
    }

    /// The gate's `config.json`: downloads come back through the gate.
    fn crates_config(&self) -> Response {
        let dl = format!("{}/crates/dl", self.gate.config.public_url);
        let body = moat_registry::crates::render_config(&dl, None);
        respond::bytes(StatusCode::OK, JSON, Bytes::from(body))
    }

    /// Load a crate; one blocked as a whole is answered with a recorded 403.
    async fn crates_load(
        &self,
        name: &str,
        version: Option<&str>,
        request: &'static str,
    ) -> Step<Arc<CrateEntry>> {
        let loaded = self.gate.crate_index(name).await?;
        self.admit(CRATES, loaded, name, version, request).await
    }

    async fn crates_index_file(&self, name: &str) -> Result<Response, GateError> {
        let entry = step!(self.crates_load(name, None, "metadata"));
        let rendered = entry.rendered();
        let package = entry.index.name();
        self.record(package, None, "metadata", &entry.evaluation.package, None)
            .await?;
        if etag_matches(self.headers, &rendered.etag) {
            return Ok(respond::not_modified(&rendered.etag));
        }
        Ok(respond::document(
            TEXT,
            rendered.body.clone(),
            Some(&rendered.etag),
        ))
    }

    async fn crates_download(&self, name: &str, version: &str) -> Result<Response, GateError> {
        let entry = step!(self.crates_load(name, Some(version), "artifact"));
        let Some(line) = entry.index.entry(version) else {
            return Ok(not_found(CRATES));
        };
        let crate_name = entry.index.name();
        let version = line.vers.as_str();
        let verdict = step!(self.admit_version(&entry.evaluation, crate_name, version, "artifact"));
        let integrity = Integrity::from_hex(Algorithm::Sha256, &line.cksum).map_err(|source| {
            GateError::Integrity {
                artifact: "crate",
                name: crate_name.to_owned(),
                version: version.to_owned(),
                source: Box::new(source),
            }
        })?;
        let config = self.gate.crates_upstream_config().await?;
        let url = moat_registry::crates::download_url(&config.dl, crate_name, version, &line.cksum);
        let bytes = self
            .gate
            .artifact(ArtifactSource {
                ecosystem: CRATES,
                kind: "crate",
                name: crate_name,
                version,
                integrity,
                url: &url,
            })
            .await?;
        self.record(crate_name, Some(version), "artifact", verdict, None)
            .await?;
        Ok(respond::bytes(StatusCode::OK, "application/x-tar", bytes))
    }
}

//! The gate's shared state and its decisions: load (from cache or upstream) and evaluate a
//! package, fetch and verify an artifact, explain a verdict, record every decision.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use moat_advisories::{AdvisoryDb, Ecosystem, PopularNames};
use moat_audit::{AuditLog, DecisionEvent, Event};
use moat_policy::{Context, Policy, Verdict};
use moat_registry::npm::{Packument, RewritePlan};
use moat_registry::{ArtifactStore, NpmUpstream, PackumentResponse};
use sha2::{Digest, Sha256};

use crate::cache::{ArtifactMemory, MetaCache, PackageEntry, SingleFlight};
use crate::{GateConfig, GateError};

/// The gate's shared state: configuration, policy, advisories, audit log, upstream client and
/// caches. Build once, share as `Arc<Gate>`.
#[derive(Debug)]
pub struct Gate {
    pub(crate) config: GateConfig,
    policy: Policy,
    advisories: AdvisoryDb,
    popular: HashMap<Ecosystem, PopularNames>,
    audit: AuditLog,
    upstream: NpmUpstream,
    store: ArtifactStore,
    packuments: MetaCache,
    packument_flights: SingleFlight,
    artifacts: ArtifactMemory,
    artifact_flights: SingleFlight,
    /// Policy and advisory revisions, part of every metadata ETag.
    revisions: String,
}

/// A package as the gate sees it.
#[derive(Debug)]
pub(crate) enum Package {
    /// Blocked from the name alone (decided before any upstream contact).
    NameBlocked(Verdict),
    /// Fetched and evaluated.
    Found(Arc<PackageEntry>),
    /// The upstream has no such package.
    NotFound,
}

impl Gate {
    /// Build the gate. Fails when the upstream client cannot be configured.
    pub fn new(
        mut config: GateConfig,
        policy: Policy,
        advisories: AdvisoryDb,
        popular: HashMap<Ecosystem, PopularNames>,
        audit: AuditLog,
    ) -> Result<Gate, GateError> {
        config.public_url = config.public_url.trim_end_matches('/').to_owned();
        let upstream =
            NpmUpstream::new(&config.upstream).map_err(|err| GateError::Setup(err.to_string()))?;
        let store = ArtifactStore::new(config.data_dir.join("cache").join("npm"));
        let revisions = format!("{}:{}", policy.revision(), advisories.revision());
        Ok(Gate {
            config,
            policy,
            advisories,
            popular,
            audit,
            upstream,
            store,
            packuments: MetaCache::default(),
            packument_flights: SingleFlight::default(),
            artifacts: ArtifactMemory::default(),
            artifact_flights: SingleFlight::default(),
            revisions,
        })
    }

    /// The verdict on `name` (`version` `None`: the whole package) as the gate would decide it
    /// now: fetches the packument (through the cache) and evaluates. Used by `/-/why/` and
    /// `moat why`.
    pub async fn why(
        &self,
        ecosystem: Ecosystem,
        name: &str,
        version: Option<&str>,
    ) -> Result<Verdict, GateError> {
        match ecosystem {
            Ecosystem::Npm => {}
            Ecosystem::PyPI | Ecosystem::CratesIo => return Err(GateError::Unsupported(ecosystem)),
        }
        let entry = match self.package(name).await? {
            Package::NameBlocked(verdict) => return Ok(verdict),
            Package::NotFound => {
                return Err(GateError::NotFound {
                    name: name.to_owned(),
                });
            }
            Package::Found(entry) => entry,
        };
        let Some(version) = version else {
            return Ok(entry.evaluation.package.clone());
        };
        entry
            .packument
            .resolve_spec(version, &entry.plan)
            .and_then(|resolved| entry.evaluation.versions.get(&resolved))
            .cloned()
            .ok_or_else(|| GateError::VersionNotFound {
                name: name.to_owned(),
                version: version.to_owned(),
            })
    }

    /// The `why` URL of a package or version.
    pub(crate) fn why_url(&self, name: &str, version: Option<&str>) -> String {
        match version {
            Some(version) => format!("{}/-/why/npm/{name}/{version}", self.config.public_url),
            None => format!("{}/-/why/npm/{name}", self.config.public_url),
        }
    }

    fn context(&self) -> Context<'_> {
        Context {
            advisories: &self.advisories,
            popular: self.popular.get(&Ecosystem::Npm),
            now: jiff::Timestamp::now(),
        }
    }

    /// Load and evaluate a package. A fresh cached entry is the warm path; otherwise the name is
    /// judged first (a name-level block never contacts the upstream), then the packument is
    /// fetched (revalidated with the upstream ETag when a stale copy exists), one fetch per name.
    pub(crate) async fn package(&self, name: &str) -> Result<Package, GateError> {
        let ttl = self.config.metadata_ttl;
        if let Some(entry) = self
            .packuments
            .get(name)
            .filter(|e| e.fetched_at.elapsed() < ttl)
        {
            return Ok(Package::Found(entry));
        }
        let verdict = self
            .policy
            .evaluate_name(&self.context(), Ecosystem::Npm, name);
        if verdict.action == moat_policy::Action::Block {
            return Ok(Package::NameBlocked(verdict));
        }
        let _flight = self.packument_flights.begin(name).await;
        let stale = self.packuments.get(name);
        if let Some(entry) = stale.as_ref().filter(|e| e.fetched_at.elapsed() < ttl) {
            return Ok(Package::Found(Arc::clone(entry)));
        }
        let etag = stale.as_ref().and_then(|e| e.upstream_etag.as_deref());
        let max = self.config.limits.max_packument_bytes;
        let entry = match self.upstream.packument(name, etag, max).await? {
            PackumentResponse::NotFound => {
                self.packuments.remove(name);
                return Ok(Package::NotFound);
            }
            PackumentResponse::NotModified => match stale {
                Some(stale) => self.evaluate(
                    stale.upstream_etag.clone(),
                    Arc::clone(&stale.packument),
                    Arc::clone(&stale.body_digest),
                ),
                None => {
                    return Err(GateError::Upstream(moat_registry::UpstreamError::Status(
                        304,
                    )));
                }
            },
            PackumentResponse::Fresh { body, etag } => {
                let packument =
                    Packument::parse(&body, name).map_err(|source| GateError::Metadata {
                        name: name.to_owned(),
                        source,
                    })?;
                let digest: Arc<str> = hex::encode(Sha256::digest(&body)).into();
                self.evaluate(etag, Arc::new(packument), digest)
            }
        };
        let entry = Arc::new(entry);
        let max_entries = self.config.limits.max_cached_packuments;
        self.packuments
            .insert(name, Arc::clone(&entry), max_entries, ttl);
        Ok(Package::Found(entry))
    }

    fn evaluate(
        &self,
        etag: Option<String>,
        packument: Arc<Packument>,
        digest: Arc<str>,
    ) -> PackageEntry {
        let versions = packument.version_infos();
        let evaluation = self.policy.evaluate_package(
            &self.context(),
            Ecosystem::Npm,
            packument.name(),
            &versions,
        );
        let plan = RewritePlan::new(&packument, &evaluation, &self.config.public_url);
        PackageEntry::new(etag, packument, digest, evaluation, plan, &self.revisions)
    }

    /// The verified bytes of an allowed version's tarball: from memory, the disk cache, or the
    /// upstream `dist.tarball` URL (verified before it is cached or served).
    pub(crate) async fn artifact(
        &self,
        entry: &PackageEntry,
        version: &str,
    ) -> Result<Bytes, GateError> {
        let name = entry.packument.name();
        let integrity_error = |source| GateError::Integrity {
            name: name.to_owned(),
            version: version.to_owned(),
            source,
        };
        let Some(dist) = entry.packument.dist(version) else {
            let message = format!("version {version} has no dist.tarball");
            let source = moat_registry::MetadataError::Malformed(message);
            return Err(GateError::Metadata {
                name: name.to_owned(),
                source,
            });
        };
        let integrity = dist.integrity.map_err(integrity_error)?;
        let key = format!("{}/{}", integrity.algorithm().as_str(), integrity.hex());
        let limits = &self.config.limits;
        if let Some(bytes) = self.artifacts.get(&key) {
            return Ok(bytes);
        }
        let _flight = self.artifact_flights.begin(&key).await;
        if let Some(bytes) = self.artifacts.get(&key) {
            return Ok(bytes);
        }
        let cached = self.store.get(&integrity, limits.max_tarball_bytes).await;
        let bytes = match cached {
            Ok(Some(bytes)) => bytes,
            Ok(None) | Err(_) => {
                if let Err(err) = &cached {
                    tracing::warn!(error = %err, "artifact cache unreadable; fetching upstream");
                }
                let bytes = self
                    .upstream
                    .artifact(&dist.tarball, limits.max_tarball_bytes)
                    .await?;
                integrity.verify(&bytes).map_err(integrity_error)?;
                if let Err(err) = self.store.put(&integrity, &bytes).await {
                    tracing::warn!(error = %err, "cannot write artifact cache");
                }
                bytes
            }
        };
        self.artifacts.insert(
            key,
            bytes.clone(),
            limits.memory_cache_bytes,
            limits.memory_cache_item_bytes,
        );
        Ok(bytes)
    }

    /// Record one decision; `Err` means the gate must not answer.
    pub(crate) async fn record(&self, decision: Decision<'_>) -> Result<(), GateError> {
        let verdict = decision.verdict;
        let event = DecisionEvent {
            time: jiff::Timestamp::now(),
            identity: decision.identity.to_owned(),
            ecosystem: verdict.ecosystem.as_str().to_owned(),
            package: decision.package.to_owned(),
            version: decision.version.map(str::to_owned),
            request: decision.request.to_owned(),
            action: action_str(verdict.action).to_owned(),
            rules: verdict
                .rule_ids()
                .iter()
                .map(|rule| rule.as_str().to_owned())
                .collect(),
            advisories: verdict.advisory_ids(),
            approved: verdict.approved.clone(),
            message: decision.message.map(str::to_owned),
        };
        self.audit
            .append(Event::Decision(event))
            .await
            .map(drop)
            .map_err(GateError::Audit)
    }
}

/// What [`Gate::record`] writes.
pub(crate) struct Decision<'a> {
    pub(crate) identity: &'a str,
    pub(crate) package: &'a str,
    pub(crate) version: Option<&'a str>,
    pub(crate) request: &'static str,
    pub(crate) verdict: &'a Verdict,
    pub(crate) message: Option<&'a str>,
}

fn action_str(action: moat_policy::Action) -> &'static str {
    match action {
        moat_policy::Action::Allow => "allow",
        moat_policy::Action::Warn => "warn",
        moat_policy::Action::Block => "block",
    }
}

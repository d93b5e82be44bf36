//! The gate's shared state and its decisions: load (from cache or upstream) and evaluate a
//! package, fetch and verify an artifact, explain a verdict, record every decision.
//!
//! The ecosystem routes (`npm.rs`, `pypi.rs`, `crates.rs`) share this machinery: a metadata
//! cache per ecosystem with single-flight upstream fetches and ETag revalidation, one
//! content-addressed artifact cache verified against the registry's own digest, and one audit
//! path.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use moat_advisories::{AdvisoryDb, Ecosystem, PopularNames};
use moat_audit::{AuditLog, DecisionEvent};
use moat_policy::{Context, PackageEvaluation, Policy, Verdict, VersionInfo};
use moat_registry::npm::{Packument, RewritePlan};
use moat_registry::{ArtifactStore, Integrity, MetaResponse, PackumentResponse, Upstream};
use sha2::{Digest, Sha256};

use crate::cache::{ArtifactMemory, Cached, MetaCache, PackageEntry, SingleFlight};
use crate::crates::CrateEntry;
use crate::pypi::PypiEntry;
use crate::{GateConfig, GateError};

/// The gate's shared state: configuration, policy, advisories, audit log, upstream client and
/// caches. Build once, share as `Arc<Gate>`.
#[derive(Debug)]
pub struct Gate {
    pub(crate) config: GateConfig,
    policy: Policy,
    advisories: AdvisoryDb,
    popular: HashMap<Ecosystem, PopularNames>,
    pub(crate) audit: AuditLog,
    pub(crate) upstream: Upstream,
    /// The client of the LLM pass-through routes: no redirects, no whole-call timeout (streams
    /// may last minutes), an idle timeout instead.
    pub(crate) llm_client: reqwest::Client,
    /// The authority (`host:port`) of `public_url`: an absolute-form request naming it is a
    /// request to the gate, not one to proxy.
    own_authority: Option<http::uri::Authority>,
    stores: HashMap<Ecosystem, ArtifactStore>,
    packuments: MetaCache<PackageEntry>,
    pub(crate) pypi_pages: MetaCache<PypiEntry>,
    pub(crate) crate_indexes: MetaCache<CrateEntry>,
    /// The upstream crates registry's `config.json` (its `dl` template), read once.
    pub(crate) crates_config: tokio::sync::OnceCell<moat_registry::crates::RegistryConfig>,
    artifacts: ArtifactMemory,
    artifact_flights: SingleFlight,
    /// Policy and advisory revisions, part of every metadata ETag.
    revisions: String,
}

/// A package as the gate sees it.
#[derive(Debug)]
pub(crate) enum Package<E> {
    /// Blocked from the name alone (decided before any upstream contact).
    NameBlocked(Verdict),
    /// Fetched and evaluated.
    Found(Arc<E>),
    /// The upstream has no such package.
    NotFound,
}

/// What an artifact is checked against and where it comes from.
pub(crate) struct ArtifactSource<'a> {
    pub(crate) ecosystem: Ecosystem,
    /// `tarball`, `file`, `crate`: for messages.
    pub(crate) kind: &'static str,
    pub(crate) name: &'a str,
    pub(crate) version: &'a str,
    pub(crate) integrity: Integrity,
    pub(crate) url: &'a str,
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
        let upstream = Upstream::new(&config.upstream)
            .map_err(|err| GateError::Setup(format!("upstream {err}")))?;
        let cache = config.data_dir.join("cache");
        let stores = Ecosystem::ALL
            .into_iter()
            .map(|ecosystem| {
                let dir = cache.join(route_segment(ecosystem));
                (ecosystem, ArtifactStore::new(dir))
            })
            .collect();
        let revisions = format!("{}:{}", policy.revision(), advisories.revision());
        let llm_client = crate::llm::client(&config)?;
        let own_authority = config
            .public_url
            .parse::<http::Uri>()
            .ok()
            .and_then(|uri| uri.authority().cloned());
        Ok(Gate {
            config,
            policy,
            advisories,
            popular,
            audit,
            upstream,
            llm_client,
            own_authority,
            stores,
            packuments: MetaCache::default(),
            pypi_pages: MetaCache::default(),
            crate_indexes: MetaCache::default(),
            crates_config: tokio::sync::OnceCell::new(),
            artifacts: ArtifactMemory::default(),
            artifact_flights: SingleFlight::default(),
            revisions,
        })
    }

    /// The verdict on `name` (`version` `None`: the whole package) as the gate would decide it
    /// now: fetches the package's metadata (through the cache) and evaluates. Used by `/-/why/`
    /// and `moat why`.
    pub async fn why(
        &self,
        ecosystem: Ecosystem,
        name: &str,
        version: Option<&str>,
    ) -> Result<Verdict, GateError> {
        let not_found = || GateError::NotFound {
            name: name.to_owned(),
        };
        let version_not_found = |version: &str| GateError::VersionNotFound {
            name: name.to_owned(),
            version: version.to_owned(),
        };
        let evaluation = match ecosystem {
            Ecosystem::Npm => match self.package(name).await? {
                Package::NameBlocked(verdict) => return Ok(verdict),
                Package::NotFound => return Err(not_found()),
                Package::Found(entry) => {
                    let Some(version) = version else {
                        return Ok(entry.evaluation.package.clone());
                    };
                    return entry
                        .packument
                        .resolve_spec(version, &entry.plan)
                        .and_then(|resolved| entry.evaluation.versions.get(&resolved))
                        .cloned()
                        .ok_or_else(|| version_not_found(version));
                }
            },
            Ecosystem::PyPI => match self.pypi_project(name).await? {
                Package::NameBlocked(verdict) => return Ok(verdict),
                Package::NotFound => return Err(not_found()),
                Package::Found(entry) => entry.evaluation.clone(),
            },
            Ecosystem::CratesIo => match self.crate_index(name).await? {
                Package::NameBlocked(verdict) => return Ok(verdict),
                Package::NotFound => return Err(not_found()),
                Package::Found(entry) => entry.evaluation.clone(),
            },
        };
        let Some(version) = version else {
            return Ok(evaluation.package);
        };
        if let Some(verdict) = evaluation.versions.get(version) {
            return Ok(verdict.clone());
        }
        // Another spelling of a listed version (`2.0` for `2.0.0`, `1.0.0+build`).
        let wanted = moat_advisories::Version::parse(ecosystem, version)
            .map_err(|_| version_not_found(version))?;
        evaluation
            .versions
            .iter()
            .find(|(listed, _)| {
                moat_advisories::Version::parse(ecosystem, listed).is_ok_and(|v| v == wanted)
            })
            .map(|(_, verdict)| verdict.clone())
            .ok_or_else(|| version_not_found(version))
    }

    /// The `why` URL of a package or version.
    pub fn why_url(&self, ecosystem: Ecosystem, name: &str, version: Option<&str>) -> String {
        let base = &self.config.public_url;
        let segment = route_segment(ecosystem);
        match version {
            Some(version) => format!("{base}/-/why/{segment}/{name}/{version}"),
            None => format!("{base}/-/why/{segment}/{name}"),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Whether an absolute-form request URI names the gate itself (a client that sent its
    /// registry request through the proxy).
    pub(crate) fn is_own_authority(&self, uri: &http::Uri) -> bool {
        let Some(own) = &self.own_authority else {
            return false;
        };
        let default_port = |uri: &http::Uri| match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        };
        uri.scheme_str() == Some("http")
            && uri.authority().is_some_and(|authority| {
                authority.host().eq_ignore_ascii_case(own.host())
                    && authority.port_u16().unwrap_or(default_port(uri))
                        == own.port_u16().unwrap_or(80)
            })
    }

    /// Record the decision behind one answer (a repeat of a recorded one is counted, see
    /// [`moat_audit::tally`]); `Err` means the gate must not answer.
    pub(crate) async fn record_event(&self, event: DecisionEvent) -> Result<(), GateError> {
        self.audit
            .record_decision(event)
            .await
            .map(drop)
            .map_err(GateError::Audit)
    }

    pub(crate) fn context(&self, ecosystem: Ecosystem) -> Context<'_> {
        Context {
            advisories: &self.advisories,
            popular: self.popular.get(&ecosystem),
            now: jiff::Timestamp::now(),
        }
    }

    /// The name-level verdict (deny, typosquat, malicious by name).
    pub(crate) fn evaluate_name(&self, ecosystem: Ecosystem, name: &str) -> Verdict {
        self.policy
            .evaluate_name(&self.context(ecosystem), ecosystem, name)
    }

    /// Every rule for every listed version.
    pub(crate) fn evaluate_versions(
        &self,
        ecosystem: Ecosystem,
        name: &str,
        versions: &[VersionInfo],
    ) -> PackageEvaluation {
        self.policy
            .evaluate_package(&self.context(ecosystem), ecosystem, name, versions)
    }

    /// The ETag identity of a rendered document: the upstream body, the policy and advisory
    /// revisions, and what the gate changed.
    pub(crate) fn identity<'a>(
        &self,
        body_digest: &str,
        changes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> String {
        let mut hasher = Sha256::new();
        hasher.update(body_digest.as_bytes());
        hasher.update([0]);
        hasher.update(self.revisions.as_bytes());
        for (key, value) in changes {
            hasher.update([0]);
            hasher.update(key.as_bytes());
            hasher.update([0]);
            hasher.update(value.as_bytes());
        }
        hex::encode(&hasher.finalize()[..16])
    }

    /// A cached entry, fresh within the metadata TTL; otherwise `fetch` runs (at most one fetch
    /// per key at a time; concurrent requests wait and reuse its result), given the stale entry
    /// if there is one (for ETag revalidation). `Ok(None)`: the upstream has no such package.
    pub(crate) async fn cached<E: Cached>(
        &self,
        cache: &MetaCache<E>,
        key: &str,
        fetch: impl AsyncFnOnce(Option<Arc<E>>) -> Result<Option<E>, GateError>,
    ) -> Result<Option<Arc<E>>, GateError> {
        let ttl = self.config.metadata_ttl;
        if let Some(entry) = cache.get(key).filter(|e| e.fetched_at().elapsed() < ttl) {
            return Ok(Some(entry));
        }
        let _flight = cache.flights.begin(key).await;
        let stale = cache.get(key);
        if let Some(entry) = stale.as_ref().filter(|e| e.fetched_at().elapsed() < ttl) {
            return Ok(Some(Arc::clone(entry)));
        }
        match fetch(stale).await? {
            Some(entry) => {
                let entry = Arc::new(entry);
                let max_entries = self.config.limits.max_cached_packuments;
                cache.insert(key, Arc::clone(&entry), max_entries, ttl);
                Ok(Some(entry))
            }
            None => {
                cache.remove(key);
                Ok(None)
            }
        }
    }

    /// Load and evaluate an npm package. A fresh cached entry is the warm path; otherwise the
    /// name is judged first (a name-level block never contacts the upstream), then the packument
    /// is fetched (revalidated with the upstream ETag when a stale copy exists).
    pub(crate) async fn package(&self, name: &str) -> Result<Package<PackageEntry>, GateError> {
        let ttl = self.config.metadata_ttl;
        if let Some(entry) = self
            .packuments
            .get(name)
            .filter(|e| e.fetched_at.elapsed() < ttl)
        {
            return Ok(Package::Found(entry));
        }
        let verdict = self.evaluate_name(Ecosystem::Npm, name);
        if verdict.action == moat_policy::Action::Block {
            return Ok(Package::NameBlocked(verdict));
        }
        let max = self.config.limits.max_packument_bytes;
        let loaded = self
            .cached(&self.packuments, name, async |stale| {
                let etag = stale.as_ref().and_then(|e| e.upstream_etag.clone());
                let answer = self
                    .upstream
                    .packument(name, etag.as_deref(), max)
                    .await
                    .map_err(GateError::upstream(Ecosystem::Npm))?;
                let entry = match answer {
                    PackumentResponse::NotFound => return Ok(None),
                    PackumentResponse::NotModified => match stale {
                        Some(stale) => self.evaluate_npm(
                            stale.upstream_etag.clone(),
                            Arc::clone(&stale.packument),
                            Arc::clone(&stale.body_digest),
                        ),
                        None => return Err(unexpected_not_modified(Ecosystem::Npm)),
                    },
                    PackumentResponse::Fresh { body, etag } => {
                        let packument = Packument::parse(&body, name).map_err(|source| {
                            GateError::Metadata {
                                name: name.to_owned(),
                                source,
                            }
                        })?;
                        let digest: Arc<str> = hex::encode(Sha256::digest(&body)).into();
                        self.evaluate_npm(etag, Arc::new(packument), digest)
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

    fn evaluate_npm(
        &self,
        etag: Option<String>,
        packument: Arc<Packument>,
        digest: Arc<str>,
    ) -> PackageEntry {
        let versions = packument.version_infos();
        let evaluation = self.evaluate_versions(Ecosystem::Npm, packument.name(), &versions);
        let plan = RewritePlan::new(&packument, &evaluation, &self.config.public_url);
        let identity = self.identity(
            &digest,
            plan.blocked
                .iter()
                .map(|(version, message)| (version.as_str(), message.as_str())),
        );
        PackageEntry::new(etag, packument, digest, evaluation, plan, identity)
    }

    /// The verified bytes of an allowed npm version's tarball.
    pub(crate) async fn npm_tarball(
        &self,
        entry: &PackageEntry,
        version: &str,
    ) -> Result<Bytes, GateError> {
        let name = entry.packument.name();
        let Some(dist) = entry.dist(version) else {
            let message = format!("version {version} has no dist.tarball");
            let source = moat_registry::MetadataError::Malformed(message);
            return Err(GateError::Metadata {
                name: name.to_owned(),
                source,
            });
        };
        let integrity = dist
            .integrity
            .clone()
            .map_err(|source| GateError::Integrity {
                artifact: "tarball",
                name: name.to_owned(),
                version: version.to_owned(),
                source: Box::new(source),
            })?;
        self.artifact(ArtifactSource {
            ecosystem: Ecosystem::Npm,
            kind: "tarball",
            name,
            version,
            integrity,
            url: &dist.tarball,
        })
        .await
    }

    /// The verified bytes of an artifact: from memory, the disk cache, or the upstream URL
    /// (verified before it is cached or served; a mismatch is refused, never served).
    pub(crate) async fn artifact(&self, source: ArtifactSource<'_>) -> Result<Bytes, GateError> {
        let integrity = &source.integrity;
        let key = format!("{}/{}", integrity.algorithm().as_str(), integrity.hex());
        let limits = &self.config.limits;
        if let Some(bytes) = self.artifacts.get(&key) {
            return Ok(bytes);
        }
        let _flight = self.artifact_flights.begin(&key).await;
        if let Some(bytes) = self.artifacts.get(&key) {
            return Ok(bytes);
        }
        let store = &self.stores[&source.ecosystem];
        let cached = store.get(integrity, limits.max_tarball_bytes).await;
        let bytes = match cached {
            Ok(Some(bytes)) => bytes,
            Ok(None) | Err(_) => {
                if let Err(err) = &cached {
                    tracing::warn!(error = %err, "artifact cache unreadable; fetching upstream");
                }
                let bytes = self
                    .upstream
                    .artifact(source.url, limits.max_tarball_bytes)
                    .await
                    .map_err(GateError::upstream(source.ecosystem))?;
                integrity
                    .verify(&bytes)
                    .map_err(|err| GateError::Integrity {
                        artifact: source.kind,
                        name: source.name.to_owned(),
                        version: source.version.to_owned(),
                        source: Box::new(err),
                    })?;
                if let Err(err) = store.put(integrity, &bytes).await {
                    tracing::warn!(error = %err, "cannot write artifact cache");
                }
                bytes
            }
        };
        Ok(self.artifacts.insert(
            key,
            bytes,
            limits.memory_cache_bytes,
            limits.memory_cache_item_bytes,
        ))
    }

    /// Fetch upstream metadata for `ecosystem` at `url`, revalidating with `etag`.
    pub(crate) async fn upstream_metadata(
        &self,
        ecosystem: Ecosystem,
        url: &str,
        accept: &str,
        etag: Option<&str>,
    ) -> Result<MetaResponse, GateError> {
        let max = self.config.limits.max_packument_bytes;
        self.upstream
            .metadata(url, accept, etag, max)
            .await
            .map_err(GateError::upstream(ecosystem))
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
            repeats: None,
        };
        self.record_event(event).await
    }
}

/// The path segment of an ecosystem's routes: `npm`, `pypi`, `crates`.
pub(crate) fn route_segment(ecosystem: Ecosystem) -> &'static str {
    match ecosystem {
        Ecosystem::Npm => "npm",
        Ecosystem::PyPI => "pypi",
        Ecosystem::CratesIo => "crates",
    }
}

/// A 304 to a request the gate sent without `If-None-Match`.
pub(crate) fn unexpected_not_modified(ecosystem: Ecosystem) -> GateError {
    GateError::Upstream {
        ecosystem,
        source: moat_registry::UpstreamError::Status(304),
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

//! The PyPI routes: project pages (PEP 503 HTML and PEP 691 JSON), distribution files and their
//! PEP 658 `.metadata` sidecars.
//!
//! Blocked files are listed yanked with the reason; the file and its `.metadata` answer 403 with
//! the reason phrase and a `text/plain` body. A project blocked as a whole is *never* refused on
//! its page (pip would print only "from versions: none"): its files are listed not yanked (or one
//! synthetic candidate when the upstream has none) and every file and `.metadata` is refused, so
//! pip and uv print the reason. Every decision is recorded before it is answered.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use http::header::{ACCEPT, HeaderValue, VARY};
use moat_advisories::Ecosystem;
use moat_policy::{Action, PackageEvaluation};
use moat_registry::pypi::{DistFile, Format, PagePlan, ProjectPage, PypiRequest};
use moat_registry::{Algorithm, Integrity, MetaResponse, PathError};
use sha2::{Digest, Sha256};

use crate::GateError;
use crate::cache::{Cached, Rendered};
use crate::call::{Call, Evaluated, not_found, step};
use crate::gate::{ArtifactSource, Gate, Package};
use crate::npm::etag_matches;
use crate::respond::{self, TEXT};

const PYPI: Ecosystem = Ecosystem::PyPI;

/// What the gate asks the upstream index for: JSON first (it carries upload times), HTML else.
const UPSTREAM_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1";

/// One project page as fetched and evaluated, and its rewritten forms (rendered on first use).
#[derive(Debug)]
pub(crate) struct PypiEntry {
    /// The PEP 503-normalised name: what verdicts, messages and records name (as PyPI's own
    /// simple index does; any spelling of it installs the project).
    name: String,
    fetched_at: Instant,
    upstream_etag: Option<String>,
    page: Arc<ProjectPage>,
    /// Where each file name is in `page.files` (the first, if the upstream lists one twice):
    /// a file request finds its entry without reading through the page.
    files: HashMap<String, usize>,
    body_digest: Arc<str>,
    pub(crate) evaluation: PackageEvaluation,
    plan: PagePlan,
    identity: String,
    json: OnceLock<Rendered>,
    html: OnceLock<Rendered>,
}

impl Cached for PypiEntry {
    fn fetched_at(&self) -> Instant {
        self.fetched_at
    }
}

impl PypiEntry {
    /// The listed file named `filename`.
    fn file(&self, filename: &str) -> Option<&DistFile> {
        self.files.get(filename).map(|&at| &self.page.files[at])
    }

    fn rendered(&self, format: Format) -> &Rendered {
        match format {
            Format::Json => self.json.get_or_init(|| {
                Rendered::new(self.page.render_json(&self.plan), "j", &self.identity)
            }),
            Format::Html => self.html.get_or_init(|| {
                Rendered::new(self.page.render_html(&self.plan), "h", &self.identity)
            }),
        }
    }
}

impl Gate {
    /// Load and evaluate a project page (keyed by the PEP 503-normalised name). A project
    /// blocked by name still gets a page — the upstream's files, or one synthetic candidate when
    /// the upstream has none or cannot be reached — so clients fetch a file and see the reason.
    pub(crate) async fn pypi_project(&self, name: &str) -> Result<Package<PypiEntry>, GateError> {
        let key = PYPI.normalize_name(name);
        let loaded = self
            .cached(&self.pypi_pages, &key, async |stale| {
                let url = self.upstream.pypi_page_url(&key);
                let name_blocked = self.evaluate_name(PYPI, &key).action == Action::Block;
                let etag = stale.as_ref().and_then(|e| e.upstream_etag.clone());
                let answer = self
                    .upstream_metadata(PYPI, &url, UPSTREAM_ACCEPT, etag.as_deref())
                    .await;
                let (page, etag, digest) = match answer {
                    Ok(MetaResponse::Fresh {
                        body,
                        etag,
                        content_type,
                    }) => {
                        let json = content_type.is_some_and(|t| t.contains("json"));
                        let parsed = match json {
                            true => ProjectPage::parse_json(&body, &url, &key),
                            false => ProjectPage::parse_html(&body, &url, &key),
                        };
                        let page = match parsed {
                            Ok(page) => page,
                            Err(_) if name_blocked => ProjectPage::synthetic(&key),
                            Err(source) => {
                                let name = key.clone();
                                return Err(GateError::Metadata { name, source });
                            }
                        };
                        let digest = hex::encode(Sha256::digest(&body));
                        (Arc::new(page), etag, digest.into())
                    }
                    Ok(MetaResponse::NotModified) => match stale {
                        Some(stale) => (
                            Arc::clone(&stale.page),
                            stale.upstream_etag.clone(),
                            Arc::clone(&stale.body_digest),
                        ),
                        None => return Err(crate::gate::unexpected_not_modified(PYPI)),
                    },
                    Ok(MetaResponse::NotFound) | Err(_) if name_blocked => {
                        (Arc::new(ProjectPage::synthetic(&key)), None, "".into())
                    }
                    Ok(MetaResponse::NotFound) => return Ok(None),
                    Err(err) => return Err(err),
                };
                Ok(Some(self.evaluate_pypi(&key, etag, page, digest)))
            })
            .await?;
        Ok(match loaded {
            Some(entry) => Package::Found(entry),
            None => Package::NotFound,
        })
    }

    fn evaluate_pypi(
        &self,
        name: &str,
        upstream_etag: Option<String>,
        mut page: Arc<ProjectPage>,
        body_digest: Arc<str>,
    ) -> PypiEntry {
        // Only metadata the gate can verify is advertised: a `.metadata` without a sha256 is
        // dropped from the page (clients then read the metadata from the verified file).
        if page.files.iter().any(|f| {
            f.core_metadata
                .as_ref()
                .is_some_and(|h| !h.contains_key("sha256"))
        }) {
            let page = Arc::make_mut(&mut page);
            for file in &mut page.files {
                if file
                    .core_metadata
                    .as_ref()
                    .is_some_and(|h| !h.contains_key("sha256"))
                {
                    file.core_metadata = None;
                }
            }
        }
        let evaluation = self.evaluate_versions(PYPI, name, &page.version_infos());
        // A project blocked as a whole lists its files unyanked: clients must pick one and be
        // refused on the file, which they print; a yanked-only page prints nothing useful.
        let blocked = match evaluation.package.action {
            Action::Block => Default::default(),
            Action::Allow | Action::Warn => evaluation
                .versions
                .iter()
                .filter(|(_, verdict)| verdict.action == Action::Block)
                .map(|(version, verdict)| {
                    let why = self.why_url(PYPI, name, Some(version));
                    (version.clone(), verdict.block_message(&why))
                })
                .collect(),
        };
        let plan = PagePlan {
            files_base: format!("{}/pypi", self.config.public_url),
            blocked,
        };
        let identity = self.identity(
            &body_digest,
            plan.blocked.iter().map(|(v, m)| (v.as_str(), m.as_str())),
        );
        let mut files = HashMap::with_capacity(page.files.len());
        for (at, file) in page.files.iter().enumerate() {
            files.entry(file.filename.clone()).or_insert(at);
        }
        PypiEntry {
            name: name.to_owned(),
            fetched_at: Instant::now(),
            upstream_etag,
            page,
            files,
            body_digest,
            evaluation,
            plan,
            identity,
            json: OnceLock::new(),
            html: OnceLock::new(),
        }
    }
}

impl Evaluated for PypiEntry {
    fn evaluation(&self) -> &PackageEvaluation {
        &self.evaluation
    }
}

/// The PyPI routes, on the segments after `/pypi`.
impl Call<'_> {
    pub(crate) async fn pypi(&self, segments: &[String]) -> Response {
        let request = match moat_registry::pypi::parse_segments(segments) {
            Ok(request) => request,
            Err(PathError::NoRoute) => return not_found(PYPI),
            Err(err) => {
                let reason = format!("moat: bad request: {err}");
                return respond::text_error(StatusCode::BAD_REQUEST, &reason);
            }
        };
        let result = match &request {
            PypiRequest::Root => {
                let format = self.pypi_format();
                let body = Bytes::from(moat_registry::pypi::render_root(format));
                Ok(Self::pypi_page(format, body, None))
            }
            PypiRequest::Project { name } => self.pypi_project_page(name).await,
            PypiRequest::File {
                project,
                filename,
                metadata,
            } => self.pypi_file(project, filename, *metadata).await,
        };
        result.unwrap_or_else(|err| respond::gate_error_text(&err))
    }

    /// The index format the client's `Accept` prefers (PEP 691).
    fn pypi_format(&self) -> Format {
        let accept = self
            .headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        moat_registry::pypi::negotiate((!accept.is_empty()).then_some(&*accept))
    }

    /// A page in `format`, with its ETag when given.
    fn pypi_page(format: Format, body: Bytes, etag: Option<&HeaderValue>) -> Response {
        let content_type = match format {
            Format::Json => moat_registry::pypi::SIMPLE_JSON,
            Format::Html => "text/html; charset=utf-8",
        };
        let mut response = respond::document(content_type, body, etag);
        response
            .headers_mut()
            .insert(VARY, HeaderValue::from_static("Accept"));
        response
    }

    /// A project page: never refused, even for a project blocked as a whole (see the module
    /// docs); the decision is recorded all the same.
    async fn pypi_project_page(&self, name: &str) -> Result<Response, GateError> {
        let entry = match self.gate.pypi_project(name).await? {
            Package::Found(entry) => entry,
            Package::NotFound | Package::NameBlocked(_) => return Ok(not_found(PYPI)),
        };
        let project = entry.name.as_str();
        let verdict = &entry.evaluation.package;
        let message = match verdict.action {
            Action::Block => Some(verdict.block_message(&self.gate.why_url(PYPI, project, None))),
            Action::Allow | Action::Warn => None,
        };
        self.record(project, None, "metadata", verdict, message.as_deref())
            .await?;
        let format = self.pypi_format();
        let rendered = entry.rendered(format);
        if etag_matches(self.headers, &rendered.etag) {
            return Ok(respond::not_modified(&rendered.etag));
        }
        Ok(Self::pypi_page(
            format,
            rendered.body.clone(),
            Some(&rendered.etag),
        ))
    }

    async fn pypi_file(
        &self,
        project: &str,
        filename: &str,
        metadata: bool,
    ) -> Result<Response, GateError> {
        let (request, kind) = match metadata {
            true => ("metadata", "metadata file"),
            false => ("artifact", "file"),
        };
        let entry = match self.gate.pypi_project(project).await? {
            Package::Found(entry) => entry,
            Package::NotFound | Package::NameBlocked(_) => return Ok(not_found(PYPI)),
        };
        let name = entry.name.as_str();
        let file = entry.file(filename);
        let version = file
            .and_then(|f| f.version.clone())
            .or_else(|| moat_registry::pypi::version_from_filename(name, filename));
        if entry.evaluation.package.action == Action::Block {
            let verdict = &entry.evaluation.package;
            return self
                .refuse(verdict, name, version.as_deref(), request)
                .await;
        }
        let Some(file) = file else {
            return Ok(not_found(PYPI));
        };
        let Some(version) = version else {
            let reason = format!("moat: cannot tell the version of {filename}; refusing");
            return Ok(respond::text_error(StatusCode::BAD_GATEWAY, &reason));
        };
        let verdict = step!(self.admit_version(&entry.evaluation, name, &version, request));
        let (hashes, url) = match metadata {
            true => (file.core_metadata.as_ref(), file.metadata_url()),
            false => (Some(&file.hashes), Some(file.url.clone())),
        };
        let (Some(hashes), Some(url)) = (hashes, url) else {
            return Ok(not_found(PYPI));
        };
        let integrity = hashes
            .get("sha256")
            .ok_or(moat_registry::IntegrityError::Missing)
            .and_then(|sha256| Integrity::from_hex(Algorithm::Sha256, sha256))
            .map_err(|source| GateError::Integrity {
                artifact: kind,
                name: name.to_owned(),
                version: version.clone(),
                source: Box::new(source),
            })?;
        let bytes = self
            .gate
            .artifact(ArtifactSource {
                ecosystem: PYPI,
                kind,
                name,
                version: &version,
                integrity,
                url: &url,
            })
            .await?;
        self.record(name, Some(&version), request, verdict, None)
            .await?;
        let content_type = match metadata {
            true => TEXT,
            false => "application/octet-stream",
        };
        Ok(respond::bytes(StatusCode::OK, content_type, bytes))
    }
}

//! The npm routes: packument (full and abbreviated), version document, dist-tags, tarball, ping.
//! Every answer that involves a decision is recorded before it is sent.

use std::sync::Arc;

use axum::response::Response;
use bytes::Bytes;
use http::header::{ACCEPT, IF_NONE_MATCH};
use http::{HeaderMap, StatusCode};
use moat_advisories::Ecosystem;
use moat_policy::{Action, Verdict};
use moat_registry::PathError;
use moat_registry::npm::{ABBREVIATED_CONTENT_TYPE, NpmRequest};

use crate::cache::{Form, PackageEntry};
use crate::gate::{Decision, Gate, Package};
use crate::respond::{self, JSON};

/// One request on an npm route, already canonicalised into segments after `/npm`.
pub(crate) struct NpmCall<'a> {
    pub(crate) gate: &'a Arc<Gate>,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) identity: &'a str,
}

impl NpmCall<'_> {
    pub(crate) async fn handle(&self, segments: &[String]) -> Response {
        let request = match moat_registry::npm::path::parse_segments(segments) {
            Ok(request) => request,
            Err(PathError::NoRoute) => return respond::error(StatusCode::NOT_FOUND, "not found"),
            Err(err) => {
                return respond::error(
                    StatusCode::BAD_REQUEST,
                    &format!("moat: bad request: {err}"),
                );
            }
        };
        let result = match &request {
            NpmRequest::Ping => Ok(respond::bytes(
                StatusCode::OK,
                JSON,
                Bytes::from_static(b"{}"),
            )),
            NpmRequest::Packument { name } => self.packument(name).await,
            NpmRequest::Version { name, spec } => self.version(name, spec).await,
            NpmRequest::DistTags { name } => self.dist_tags(name).await,
            NpmRequest::Tarball { name, version } => self.tarball(name, version).await,
        };
        result.unwrap_or_else(|err| respond::gate_error(&err))
    }

    /// Load a package; a blocked package (by name or by its evaluation) is answered here with a
    /// recorded 403.
    async fn load(
        &self,
        name: &str,
        version: Option<&str>,
        request: &'static str,
    ) -> Result<Result<Arc<PackageEntry>, Response>, crate::GateError> {
        let verdict = match self.gate.package(name).await? {
            Package::NotFound => {
                return Ok(Err(respond::error(StatusCode::NOT_FOUND, "not found")));
            }
            Package::NameBlocked(verdict) => verdict,
            Package::Found(entry) => match entry.evaluation.package.action {
                Action::Block => entry.evaluation.package.clone(),
                Action::Allow | Action::Warn => return Ok(Ok(entry)),
            },
        };
        let message = verdict.block_message(&self.gate.why_url(Ecosystem::Npm, name, None));
        self.record(name, version, request, &verdict, Some(&message))
            .await?;
        Ok(Err(respond::block(&verdict, &message)))
    }

    async fn record(
        &self,
        package: &str,
        version: Option<&str>,
        request: &'static str,
        verdict: &Verdict,
        message: Option<&str>,
    ) -> Result<(), crate::GateError> {
        let decision = Decision {
            identity: self.identity,
            package,
            version,
            request,
            verdict,
            message,
        };
        self.gate.record(decision).await
    }

    async fn packument(&self, name: &str) -> Result<Response, crate::GateError> {
        let entry = match self.load(name, None, "metadata").await? {
            Ok(entry) => entry,
            Err(response) => return Ok(response),
        };
        let abbreviated = self.headers.get_all(ACCEPT).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.contains(ABBREVIATED_CONTENT_TYPE))
        });
        let (form, content_type) = match abbreviated {
            true => (Form::Abbreviated, ABBREVIATED_CONTENT_TYPE),
            false => (Form::Full, JSON),
        };
        let rendered = entry.rendered(form);
        self.record(name, None, "metadata", &entry.evaluation.package, None)
            .await?;
        if etag_matches(self.headers, &rendered.etag) {
            return Ok(respond::not_modified(&rendered.etag));
        }
        Ok(respond::document(
            content_type,
            rendered.body.clone(),
            Some(&rendered.etag),
        ))
    }

    /// The verdict for an existing `version`, or the recorded 403 when it is blocked.
    async fn version_verdict<'e>(
        &self,
        entry: &'e PackageEntry,
        name: &str,
        version: &str,
        request: &'static str,
    ) -> Result<Result<&'e Verdict, Response>, crate::GateError> {
        let Some(verdict) = entry.evaluation.versions.get(version) else {
            // Every listed version is evaluated; a missing verdict is an evaluation error.
            let reason = format!("moat: no verdict for {name}@{version}; refusing");
            return Ok(Err(respond::error(
                StatusCode::SERVICE_UNAVAILABLE,
                &reason,
            )));
        };
        match verdict.action {
            Action::Allow | Action::Warn => Ok(Ok(verdict)),
            Action::Block => {
                let message =
                    verdict.block_message(&self.gate.why_url(Ecosystem::Npm, name, Some(version)));
                self.record(name, Some(version), request, verdict, Some(&message))
                    .await?;
                Ok(Err(respond::block(verdict, &message)))
            }
        }
    }

    async fn version(&self, name: &str, spec: &str) -> Result<Response, crate::GateError> {
        let entry = match self.load(name, Some(spec), "version").await? {
            Ok(entry) => entry,
            Err(response) => return Ok(response),
        };
        let Some(version) = entry.packument.resolve_spec(spec, &entry.plan) else {
            return Ok(respond::error(StatusCode::NOT_FOUND, "not found"));
        };
        let verdict = match self
            .version_verdict(&entry, name, &version, "version")
            .await?
        {
            Ok(verdict) => verdict,
            Err(response) => return Ok(response),
        };
        let Some(body) = entry.packument.render_version(&version, &entry.plan) else {
            return Ok(respond::error(StatusCode::NOT_FOUND, "not found"));
        };
        self.record(name, Some(&version), "version", verdict, None)
            .await?;
        Ok(respond::document(JSON, Bytes::from(body), None))
    }

    async fn dist_tags(&self, name: &str) -> Result<Response, crate::GateError> {
        let entry = match self.load(name, None, "metadata").await? {
            Ok(entry) => entry,
            Err(response) => return Ok(response),
        };
        let body = entry.packument.render_dist_tags(&entry.plan);
        self.record(name, None, "metadata", &entry.evaluation.package, None)
            .await?;
        Ok(respond::document(JSON, Bytes::from(body), None))
    }

    async fn tarball(&self, name: &str, version: &str) -> Result<Response, crate::GateError> {
        let entry = match self.load(name, Some(version), "artifact").await? {
            Ok(entry) => entry,
            Err(response) => return Ok(response),
        };
        if !entry.packument.has_version(version) {
            return Ok(respond::error(StatusCode::NOT_FOUND, "not found"));
        }
        let verdict = match self
            .version_verdict(&entry, name, version, "artifact")
            .await?
        {
            Ok(verdict) => verdict,
            Err(response) => return Ok(response),
        };
        let bytes = self.gate.npm_tarball(&entry, version).await?;
        self.record(name, Some(version), "artifact", verdict, None)
            .await?;
        Ok(respond::bytes(
            StatusCode::OK,
            "application/octet-stream",
            bytes,
        ))
    }
}

/// Whether `If-None-Match` names `etag` (or is `*`).
pub(crate) fn etag_matches(headers: &HeaderMap, etag: &http::HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|value| {
            value.split(',').map(str::trim).any(|candidate| {
                candidate == "*" || candidate == etag || candidate.strip_prefix("W/") == Some(etag)
            })
        })
}

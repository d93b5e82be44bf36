//! The npm routes: packument (full and abbreviated), version document, dist-tags, tarball, ping.
//! Every answer that involves a decision is recorded before it is sent.

use std::sync::Arc;

use axum::response::Response;
use bytes::Bytes;
use http::header::{ACCEPT, IF_NONE_MATCH};
use http::{HeaderMap, StatusCode};
use moat_advisories::Ecosystem;
use moat_policy::PackageEvaluation;
use moat_registry::PathError;
use moat_registry::npm::{ABBREVIATED_CONTENT_TYPE, NpmRequest};

use crate::GateError;
use crate::cache::{Form, PackageEntry};
use crate::call::{Call, Evaluated, Step, not_found, step};
use crate::respond::{self, JSON};

const NPM: Ecosystem = Ecosystem::Npm;

impl Evaluated for PackageEntry {
    fn evaluation(&self) -> &PackageEvaluation {
        &self.evaluation
    }
}

/// The npm routes, on the segments after `/npm` (already canonicalised).
impl Call<'_> {
    pub(crate) async fn npm(&self, segments: &[String]) -> Response {
        let request = match moat_registry::npm::path::parse_segments(segments) {
            Ok(request) => request,
            Err(PathError::NoRoute) => return not_found(NPM),
            Err(err) => {
                let reason = format!("moat: bad request: {err}");
                return respond::error(StatusCode::BAD_REQUEST, &reason);
            }
        };
        let result = match &request {
            NpmRequest::Ping => Ok(respond::bytes(
                StatusCode::OK,
                JSON,
                Bytes::from_static(b"{}"),
            )),
            NpmRequest::Packument { name } => self.npm_packument(name).await,
            NpmRequest::Version { name, spec } => self.npm_version(name, spec).await,
            NpmRequest::DistTags { name } => self.npm_dist_tags(name).await,
            NpmRequest::Tarball { name, version } => self.npm_tarball(name, version).await,
        };
        result.unwrap_or_else(|err| respond::gate_error(&err))
    }

    /// Load a package; one blocked as a whole is answered with a recorded 403.
    async fn npm_load(
        &self,
        name: &str,
        version: Option<&str>,
        request: &'static str,
    ) -> Step<Arc<PackageEntry>> {
        let loaded = self.gate.package(name).await?;
        self.admit(NPM, loaded, name, version, request).await
    }

    async fn npm_packument(&self, name: &str) -> Result<Response, GateError> {
        let entry = step!(self.npm_load(name, None, "metadata"));
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

    async fn npm_version(&self, name: &str, spec: &str) -> Result<Response, GateError> {
        let entry = step!(self.npm_load(name, Some(spec), "version"));
        let Some(version) = entry.packument.resolve_spec(spec, &entry.plan) else {
            return Ok(not_found(NPM));
        };
        let verdict = step!(self.admit_version(&entry.evaluation, name, &version, "version"));
        let Some(body) = entry.packument.render_version(&version, &entry.plan) else {
            return Ok(not_found(NPM));
        };
        self.record(name, Some(&version), "version", verdict, None)
            .await?;
        Ok(respond::document(JSON, Bytes::from(body), None))
    }

    async fn npm_dist_tags(&self, name: &str) -> Result<Response, GateError> {
        let entry = step!(self.npm_load(name, None, "metadata"));
        let body = entry.packument.render_dist_tags(&entry.plan);
        self.record(name, None, "metadata", &entry.evaluation.package, None)
            .await?;
        Ok(respond::document(JSON, Bytes::from(body), None))
    }

    async fn npm_tarball(&self, name: &str, version: &str) -> Result<Response, GateError> {
        let entry = step!(self.npm_load(name, Some(version), "artifact"));
        if !entry.packument.has_version(version) {
            return Ok(not_found(NPM));
        }
        let verdict = step!(self.admit_version(&entry.evaluation, name, version, "artifact"));
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

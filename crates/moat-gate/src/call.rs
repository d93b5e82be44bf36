//! One request on a registry route: who asked, with which headers, and the steps every
//! ecosystem's handler shares — admit a package or refuse it, look up a version's verdict,
//! record a decision. The ecosystem modules add their routes as `impl Call` blocks.

use std::sync::Arc;

use axum::response::Response;
use http::{HeaderMap, StatusCode};
use moat_advisories::Ecosystem;
use moat_policy::{Action, PackageEvaluation, Verdict};

use crate::GateError;
use crate::gate::{Decision, Gate, Package};
use crate::respond;

/// A request in flight on `/npm/`, `/pypi/` or `/crates/`.
pub(crate) struct Call<'a> {
    pub(crate) gate: &'a Arc<Gate>,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) identity: &'a str,
}

/// A metadata entry with its evaluation.
pub(crate) trait Evaluated {
    fn evaluation(&self) -> &PackageEvaluation;
}

/// The outcome of a step that may already have produced the answer (a recorded refusal, a
/// 404): `Err(response)` is sent as is.
pub(crate) type Step<T> = Result<Result<T, Response>, GateError>;

/// Await a [`Step`] inside a handler returning `Result<Response, GateError>`: its value, or
/// return its ready answer (errors propagate as with `?`).
macro_rules! step {
    ($step:expr) => {
        match $step.await? {
            Ok(value) => value,
            Err(response) => return Ok(response),
        }
    };
}
pub(crate) use step;

impl Call<'_> {
    /// Record one decision; `Err` means the gate must not answer.
    pub(crate) async fn record(
        &self,
        package: &str,
        version: Option<&str>,
        request: &'static str,
        verdict: &Verdict,
        message: Option<&str>,
    ) -> Result<(), GateError> {
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

    /// Record a block and build its 403: the reason phrase, and a JSON body on npm routes or a
    /// `text/plain` one elsewhere.
    pub(crate) async fn refuse(
        &self,
        verdict: &Verdict,
        package: &str,
        version: Option<&str>,
        request: &'static str,
    ) -> Result<Response, GateError> {
        let why = self
            .gate
            .why_url(verdict.ecosystem, package, verdict.version.as_deref());
        let message = verdict.block_message(&why);
        self.record(package, version, request, verdict, Some(&message))
            .await?;
        Ok(match verdict.ecosystem {
            Ecosystem::Npm => respond::block(verdict, &message),
            Ecosystem::PyPI | Ecosystem::CratesIo => respond::block_text(&message),
        })
    }

    /// A loaded package, or the answer when there is none to serve: 404 when the upstream has
    /// no such package, a recorded 403 when it is blocked as a whole (by name or evaluation).
    pub(crate) async fn admit<E: Evaluated>(
        &self,
        ecosystem: Ecosystem,
        loaded: Package<E>,
        name: &str,
        version: Option<&str>,
        request: &'static str,
    ) -> Step<Arc<E>> {
        let verdict = match loaded {
            Package::NotFound => return Ok(Err(not_found(ecosystem))),
            Package::NameBlocked(verdict) => verdict,
            Package::Found(entry) => match entry.evaluation().package.action {
                Action::Block => entry.evaluation().package.clone(),
                Action::Allow | Action::Warn => return Ok(Ok(entry)),
            },
        };
        Ok(Err(self.refuse(&verdict, name, version, request).await?))
    }

    /// The verdict for a listed `version`, or the answer when it may not be served: a recorded
    /// 403 when it is blocked, 503 when it has no verdict (every listed version is evaluated, so
    /// that is an evaluation error, and it fails closed).
    pub(crate) async fn admit_version<'e>(
        &self,
        evaluation: &'e PackageEvaluation,
        name: &str,
        version: &str,
        request: &'static str,
    ) -> Step<&'e Verdict> {
        let ecosystem = evaluation.package.ecosystem;
        let Some(verdict) = evaluation.versions.get(version) else {
            let reason = format!("moat: no verdict for {name}@{version}; refusing");
            return Ok(Err(error(
                ecosystem,
                StatusCode::SERVICE_UNAVAILABLE,
                &reason,
            )));
        };
        match verdict.action {
            Action::Allow | Action::Warn => Ok(Ok(verdict)),
            Action::Block => Ok(Err(self
                .refuse(verdict, name, Some(version), request)
                .await?)),
        }
    }
}

/// An error answer in the body format of `ecosystem`'s routes.
pub(crate) fn error(ecosystem: Ecosystem, status: StatusCode, reason: &str) -> Response {
    match ecosystem {
        Ecosystem::Npm => respond::error(status, reason),
        Ecosystem::PyPI | Ecosystem::CratesIo => respond::text_error(status, reason),
    }
}

/// 404 in the body format of `ecosystem`'s routes.
pub(crate) fn not_found(ecosystem: Ecosystem) -> Response {
    error(ecosystem, StatusCode::NOT_FOUND, "not found")
}

//! Building responses: blocks (403 + reason phrase + JSON body), errors with a reason, JSON
//! documents. Every refusal carries its one-line reason in the HTTP/1.1 reason phrase, which
//! npm, pnpm and yarn 4 print, and in the `error` field of the body, which npm and yarn 1 print.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_TYPE, ETAG, HeaderValue};
use moat_policy::Verdict;

use crate::GateError;

/// Longest reason phrase sent (the block message is at most 300 bytes).
const MAX_REASON: usize = 400;

/// `application/json`.
pub(crate) const JSON: &str = "application/json";

/// `text/plain; charset=utf-8`: the body type of refusals on PyPI and cargo routes, whose clients
/// print a text body (cargo) or the reason phrase (pip, uv).
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

/// A response with `status`, `body` and `content_type`.
pub(crate) fn bytes(status: StatusCode, content_type: &'static str, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A 200 JSON document with an `ETag`.
pub(crate) fn document(
    content_type: &'static str,
    body: Bytes,
    etag: Option<&HeaderValue>,
) -> Response {
    let mut response = bytes(StatusCode::OK, content_type, body);
    if let Some(etag) = etag {
        response.headers_mut().insert(ETAG, etag.clone());
    }
    response
}

/// `304 Not Modified` for a matching `If-None-Match`.
pub(crate) fn not_modified(etag: &HeaderValue) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    response.headers_mut().insert(ETAG, etag.clone());
    response
}

/// A refusal by policy: 403, the block message as reason phrase, and
/// `{"error": message, "moat": verdict}`.
pub(crate) fn block(verdict: &Verdict, message: &str) -> Response {
    let body = serde_json::json!({ "error": message, "moat": verdict });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    with_reason(
        bytes(StatusCode::FORBIDDEN, JSON, Bytes::from(body)),
        message,
    )
}

/// A refusal by policy on a text route: 403, the block message as reason phrase and as the
/// `text/plain` body.
pub(crate) fn block_text(message: &str) -> Response {
    let body = Bytes::from(format!("{message}\n"));
    with_reason(bytes(StatusCode::FORBIDDEN, TEXT, body), message)
}

/// Any other refusal on a text route: `status`, the reason as reason phrase and body.
pub(crate) fn text_error(status: StatusCode, reason: &str) -> Response {
    let response = bytes(status, TEXT, Bytes::from(format!("{reason}\n")));
    if reason.starts_with("moat:") {
        with_reason(response, reason)
    } else {
        response
    }
}

/// The answer for a [`GateError`] on a text route.
pub(crate) fn gate_error_text(err: &GateError) -> Response {
    log_error(err);
    text_error(err.status(), &err.reason())
}

/// Any other refusal: `status`, the reason as reason phrase, and `{"error": reason}`.
pub(crate) fn error(status: StatusCode, reason: &str) -> Response {
    let body = serde_json::to_vec(&serde_json::json!({ "error": reason })).unwrap_or_default();
    let response = bytes(status, JSON, Bytes::from(body));
    if reason.starts_with("moat:") {
        with_reason(response, reason)
    } else {
        response
    }
}

/// The answer for a [`GateError`].
pub(crate) fn gate_error(err: &GateError) -> Response {
    log_error(err);
    error(err.status(), &err.reason())
}

fn log_error(err: &GateError) {
    match err {
        GateError::Audit(source) => tracing::error!(error = %source, "audit append failed"),
        GateError::Upstream { .. } | GateError::Metadata { .. } | GateError::Integrity { .. } => {
            tracing::warn!(error = %err, "upstream failure")
        }
        GateError::NotFound { .. } | GateError::VersionNotFound { .. } | GateError::Setup(_) => {}
    }
}

/// Put `reason` (made printable ASCII, cut to [`MAX_REASON`]) in the reason phrase.
pub(crate) fn with_reason(mut response: Response, reason: &str) -> Response {
    let clean: Vec<u8> = reason
        .bytes()
        .map(|b| if (0x20..0x7f).contains(&b) { b } else { b'?' })
        .take(MAX_REASON)
        .collect();
    if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(clean) {
        response.extensions_mut().insert(phrase);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_advisories::Ecosystem;
    use moat_policy::Action;

    #[tokio::test]
    async fn block_has_reason_phrase_and_json_body() {
        let verdict = Verdict {
            ecosystem: Ecosystem::Npm,
            package: "demo".into(),
            version: Some("1.0.0".into()),
            action: Action::Block,
            findings: vec![],
            approved: vec!["1.0.1".into()],
        };
        let message = "moat: blocked demo@1.0.0 (moat.vulnerable): GHSA-x; why: http://gate/-/why/npm/demo/1.0.0";
        let response = block(&verdict, message);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[CONTENT_TYPE], JSON);
        let phrase = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .unwrap();
        assert_eq!(phrase.as_bytes(), message.as_bytes());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], message);
        assert_eq!(body["moat"]["package"], "demo");
        assert_eq!(body["moat"]["approved"][0], "1.0.1");
    }

    #[test]
    fn reasons_are_made_printable() {
        let response = error(StatusCode::BAD_GATEWAY, "moat: bad\r\nInjected: yes \u{e9}");
        let phrase = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .unwrap();
        assert_eq!(phrase.as_bytes(), b"moat: bad??Injected: yes ??");
    }
}

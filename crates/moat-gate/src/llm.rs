//! LLM pass-through: `/llm/anthropic/<rest>` and `/llm/openai/<rest>` forwarded to the
//! provider with the real API key added on the host side, so the key never enters a sandbox.
//!
//! Served on session sockets only (on TCP any local process could spend the key). Whatever key
//! header the client sent (`x-api-key`, `authorization`, `api-key`) is dropped; the gate adds
//! `x-api-key: <key>` (Anthropic; `anthropic-version` and every other header pass through) or
//! `authorization: Bearer <key>` (OpenAI). The request body is read whole (up to
//! `max_llm_request_body`); the response streams back as it arrives (server-sent events
//! included). Each call is recorded before it is sent (`ecosystem = "llm"`, `package` the
//! provider, `request` = `<METHOD> /<rest>`), and again with the upstream's status.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use moat_audit::DecisionEvent;

use crate::caller::SessionContext;
use crate::egress::strip_hop_by_hop;
use crate::respond::{self, JSON};
use crate::{Gate, GateConfig, GateError};

/// A provider behind `/llm/<name>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Anthropic,
    OpenAi,
}

impl Provider {
    fn from_segment(segment: &str) -> Option<Provider> {
        match segment {
            "anthropic" => Some(Provider::Anthropic),
            "openai" => Some(Provider::OpenAi),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::OpenAi => "openai",
        }
    }

    /// The variable a host user conventionally keeps the key in (for the 503 hint).
    fn key_variable(self) -> &'static str {
        match self {
            Provider::Anthropic => "ANTHROPIC_API_KEY",
            Provider::OpenAi => "OPENAI_API_KEY",
        }
    }

    /// The header carrying the key, and its value.
    fn key_header(self, key: &str) -> (HeaderName, zeroize::Zeroizing<String>) {
        let (name, value) = match self {
            Provider::Anthropic => (HeaderName::from_static("x-api-key"), key.to_owned()),
            Provider::OpenAi => (header::AUTHORIZATION, format!("Bearer {key}")),
        };
        (name, zeroize::Zeroizing::new(value))
    }

    /// An error body in the provider's own shape, so its SDK prints the reason.
    fn error_body(self, message: &str) -> serde_json::Value {
        match self {
            Provider::Anthropic => serde_json::json!({
                "type": "error",
                "error": { "type": "api_error", "message": message },
            }),
            Provider::OpenAi => serde_json::json!({
                "error": { "message": message, "type": "moat", "code": null },
            }),
        }
    }

    fn error(self, status: StatusCode, reason: &str) -> Response {
        let body = serde_json::to_vec(&self.error_body(reason)).unwrap_or_default();
        respond::with_reason(respond::bytes(status, JSON, Bytes::from(body)), reason)
    }
}

/// Headers a client may use to send a key of its own; never forwarded.
const KEY_HEADERS: [&str; 4] = [
    "authorization",
    "x-api-key",
    "api-key",
    "proxy-authorization",
];

/// The client the pass-through routes send with: HTTP/1.1, no redirects, the configured
/// outbound proxy (never the environment's), no whole-call timeout (a stream may last
/// minutes) but an idle timeout.
pub(crate) fn client(config: &GateConfig) -> Result<reqwest::Client, GateError> {
    let setup = |err: reqwest::Error| GateError::Setup(format!("llm client: {err}"));
    let mut builder = reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.upstream.connect_timeout)
        .read_timeout(config.limits.llm_idle_timeout);
    if let Some(proxy) = &config.upstream.proxy {
        let no_proxy = proxy
            .no_proxy
            .as_deref()
            .and_then(reqwest::NoProxy::from_string);
        if let Some(url) = &proxy.http {
            let proxy = reqwest::Proxy::http(url).map_err(setup)?;
            builder = builder.proxy(proxy.no_proxy(no_proxy.clone()));
        }
        if let Some(url) = &proxy.https {
            let proxy = reqwest::Proxy::https(url).map_err(setup)?;
            builder = builder.proxy(proxy.no_proxy(no_proxy));
        }
    }
    builder.build().map_err(setup)
}

/// Answer a request under `/llm/`.
pub(crate) async fn pass_through(
    gate: &Arc<Gate>,
    session: Option<&SessionContext>,
    identity: &str,
    request: Request,
) -> Response {
    let path = request.uri().path().to_owned();
    let rest = path.strip_prefix("/llm/").unwrap_or_default();
    let (segment, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(provider) = Provider::from_segment(segment) else {
        return respond::error(StatusCode::NOT_FOUND, "not found");
    };
    if session.is_none() {
        let reason = "moat: the llm pass-through is served only on session sockets (moat run)";
        return provider.error(StatusCode::FORBIDDEN, reason);
    }
    if rest.split('/').any(|segment| {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        decoded == "." || decoded == ".."
    }) {
        let reason = "moat: bad request: dot segments in an llm path";
        return provider.error(StatusCode::BAD_REQUEST, reason);
    }
    let call = format!("{} /{rest}", request.method());
    let keys = &gate.config.llm_keys;
    let (key, base) = match provider {
        Provider::Anthropic => (keys.anthropic.as_ref(), &gate.config.llm_upstream.anthropic),
        Provider::OpenAi => (keys.openai.as_ref(), &gate.config.llm_upstream.openai),
    };
    let Some(key) = key else {
        let reason = format!(
            "moat: no {} API key on the gate (llm_keys.{}); hint: give moat the key on the host ({})",
            provider.name(),
            provider.name(),
            provider.key_variable(),
        );
        let event = event(identity, provider, &call, "block", Some(&reason));
        if let Err(err) = gate.record_event(event).await {
            return provider.error(err.status(), &err.reason());
        }
        return provider.error(StatusCode::SERVICE_UNAVAILABLE, &reason);
    };
    let url = match request.uri().query() {
        Some(query) => format!("{}/{rest}?{query}", base.trim_end_matches('/')),
        None => format!("{}/{rest}", base.trim_end_matches('/')),
    };
    let (parts, body) = request.into_parts();
    let limit = usize::try_from(gate.config.limits.max_llm_request_body).unwrap_or(usize::MAX);
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(_) => {
            let reason = "moat: request body too large for the llm pass-through";
            return provider.error(StatusCode::PAYLOAD_TOO_LARGE, reason);
        }
    };
    let headers = match upstream_headers(&parts.headers, provider, key.expose()) {
        Ok(headers) => headers,
        Err(reason) => return provider.error(StatusCode::BAD_REQUEST, reason),
    };
    if let Err(err) = gate
        .record_event(event(identity, provider, &call, "allow", None))
        .await
    {
        return provider.error(err.status(), &err.reason());
    }
    let sent = gate
        .llm_client
        .request(parts.method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(err) => {
            let reason = format!(
                "moat: llm upstream {} failed: {}",
                provider.name(),
                reqwest_reason(&err)
            );
            tracing::warn!(provider = provider.name(), error = %reason, "llm upstream failure");
            return provider.error(StatusCode::BAD_GATEWAY, &reason);
        }
    };
    let status = answer.status();
    let outcome = format!("upstream status {}", status.as_u16());
    if let Err(err) = gate
        .record_event(event(identity, provider, &call, "allow", Some(&outcome)))
        .await
    {
        return provider.error(err.status(), &err.reason());
    }
    let mut response_headers = answer.headers().clone();
    strip_hop_by_hop(&mut response_headers);
    let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

/// The client's headers minus hop-by-hop, `Host`, `Content-Length` and every key header, plus
/// the real key (marked sensitive so it never shows in debug output).
fn upstream_headers(
    client: &HeaderMap,
    provider: Provider,
    key: &str,
) -> Result<HeaderMap, &'static str> {
    let mut headers = client.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    for name in KEY_HEADERS {
        headers.remove(name);
    }
    let (name, value) = provider.key_header(key);
    let Ok(mut value) = HeaderValue::from_str(value.as_str()) else {
        return Err("moat: the configured API key is not a valid header value");
    };
    value.set_sensitive(true);
    headers.insert(name, value);
    Ok(headers)
}

/// A reqwest error without its source chain's URL noise: what failed, in a few words.
fn reqwest_reason(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    match std::error::Error::source(err) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_owned(),
    }
}

/// The audit record of a pass-through call.
fn event(
    identity: &str,
    provider: Provider,
    call: &str,
    action: &str,
    message: Option<&str>,
) -> DecisionEvent {
    DecisionEvent {
        time: jiff::Timestamp::now(),
        identity: identity.to_owned(),
        ecosystem: "llm".to_owned(),
        package: provider.name().to_owned(),
        version: None,
        request: call.to_owned(),
        action: action.to_owned(),
        rules: Vec::new(),
        advisories: Vec::new(),
        approved: Vec::new(),
        message: message.map(str::to_owned),
        repeats: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_key_headers_are_replaced() {
        let mut client = HeaderMap::new();
        client.insert("x-api-key", "sk-sandbox-fake".parse().unwrap());
        client.insert(header::AUTHORIZATION, "Bearer sk-sandbox".parse().unwrap());
        client.insert("api-key", "azure".parse().unwrap());
        client.insert("anthropic-version", "2023-06-01".parse().unwrap());
        client.insert(header::HOST, "127.0.0.1:7070".parse().unwrap());
        let headers = upstream_headers(&client, Provider::Anthropic, "sk-real").unwrap();
        assert_eq!(headers["x-api-key"], "sk-real");
        assert!(headers["x-api-key"].is_sensitive());
        assert_eq!(headers["anthropic-version"], "2023-06-01");
        assert!(!headers.contains_key(header::AUTHORIZATION));
        assert!(!headers.contains_key("api-key"));
        assert!(!headers.contains_key(header::HOST));
        let headers = upstream_headers(&client, Provider::OpenAi, "sk-real").unwrap();
        assert_eq!(headers[header::AUTHORIZATION], "Bearer sk-real");
        assert!(!headers.contains_key("x-api-key"));
    }
}

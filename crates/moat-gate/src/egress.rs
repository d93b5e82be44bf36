//! The egress forward proxy: a sandbox's one way to any host other than the registries.
//!
//! Absolute-form requests (`GET http://host:port/path`) are forwarded to the host; `CONNECT
//! host:port` opens a blind tunnel (no TLS interception) after `200 Connection established`.
//! Either way the destination must be admitted by the policy's `[egress] allow` list (rule
//! `moat.egress`), and the decision — allow or block — is in the audit log before anything is
//! sent: `ecosystem = "egress"`, `package = "<host>:<port>"`, `request = "connect" | "http"`.
//!
//! A name entry never admits a name that resolves to a loopback, private or link-local
//! address (DNS rebinding, cloud metadata): only an entry naming the address does. The proxy
//! connects to the addresses it checked, never resolving twice.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use moat_audit::DecisionEvent;
use moat_policy::{EgressHost, RuleId, egress_denied_message, egress_message};
use tokio::net::TcpStream;

use crate::Gate;
use crate::respond;
use crate::serve::Background;

/// Where a proxy request goes: what the policy decides on, and what the proxy then connects
/// to and names in the `Host` header (the same host and port; never the URL's user info).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    host: EgressHost,
    port: u16,
    /// `host[:port]` as the `Host` header of a forwarded request.
    authority: String,
}

impl ProxyTarget {
    /// The destination of a `CONNECT` (authority-form, port required) or an absolute-form
    /// `http://` request (port 80 unless given), read from the request's target. `Err` is the
    /// answer's text.
    pub fn of(uri: &http::Uri, connect: bool) -> Result<ProxyTarget, String> {
        if !connect && uri.scheme_str() != Some("http") {
            return Err(
                "moat: the proxy forwards http:// URLs only; https goes through CONNECT".to_owned(),
            );
        }
        let Some(authority) = uri.authority() else {
            return Err("moat: bad proxy request: no host".to_owned());
        };
        let port = match (authority.port_u16(), connect) {
            (Some(port), _) => port,
            (None, false) => 80,
            (None, true) => {
                return Err("moat: bad proxy request: CONNECT needs host:port".to_owned());
            }
        };
        let host = EgressHost::parse(authority.host())
            .map_err(|error| format!("moat: bad proxy request: {error}"))?;
        // Made from what was decided on, not copied from the request: the URI parser takes
        // the host and port from around the user info however odd the text between them is.
        let authority = match authority.port_u16() {
            Some(port) => format!("{}:{port}", authority.host()),
            None => authority.host().to_owned(),
        };
        Ok(ProxyTarget {
            host,
            port,
            authority,
        })
    }

    /// The host the policy decides on and the proxy resolves or connects to.
    pub fn host(&self) -> &EgressHost {
        &self.host
    }

    /// The port the policy decides on and the proxy connects to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host[:port]` as the `Host` header of a forwarded request.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

impl std::fmt::Display for ProxyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// What the policy and the resolver say about a target.
enum Admission {
    /// Connect to one of these (already checked) addresses.
    Allowed(Vec<SocketAddr>),
    /// Refused by `moat.egress`, with the message.
    Refused(String),
    /// Could not decide (the name does not resolve): the answer.
    Failed(Response),
}

/// Answer a proxy request (`CONNECT` or absolute-form) for `identity`.
pub(crate) async fn proxy(gate: &Arc<Gate>, identity: &str, request: Request) -> Response {
    let connect = request.method() == Method::CONNECT;
    let kind = if connect { "connect" } else { "http" };
    let target = match ProxyTarget::of(request.uri(), connect) {
        Ok(target) => target,
        Err(reason) => return respond::text_error(StatusCode::BAD_REQUEST, &reason),
    };
    let addresses = match admit(gate, &target).await {
        Admission::Allowed(addresses) => addresses,
        Admission::Refused(message) => {
            if let Err(err) = gate
                .record_event(event(identity, &target, kind, Some(&message)))
                .await
            {
                return respond::gate_error_text(&err);
            }
            return respond::block_text(&message);
        }
        Admission::Failed(response) => return response,
    };
    if let Err(err) = gate
        .record_event(event(identity, &target, kind, None))
        .await
    {
        return respond::gate_error_text(&err);
    }
    let timeout = gate.config.upstream.connect_timeout;
    let upstream = match connect_to(&addresses, timeout).await {
        Ok(stream) => stream,
        Err(err) => {
            let reason = format!("moat: egress to {target} failed: {err}");
            return respond::text_error(StatusCode::BAD_GATEWAY, &reason);
        }
    };
    if connect {
        tunnel(request, upstream, &target)
    } else {
        forward(request, upstream, &target).await
    }
}

/// Decide on `target`: the allow list first (no lookup for a refused host), then the
/// addresses its name resolves to.
async fn admit(gate: &Gate, target: &ProxyTarget) -> Admission {
    let Some(entry) = gate.policy().egress().admit(&target.host, target.port) else {
        return Admission::Refused(egress_denied_message(&target.host, target.port));
    };
    let name = match &target.host {
        EgressHost::Address(address) => {
            return Admission::Allowed(vec![SocketAddr::new(*address, target.port)]);
        }
        EgressHost::Name(name) => name,
    };
    let timeout = gate.config.upstream.connect_timeout;
    let resolved = tokio::time::timeout(
        timeout,
        tokio::net::lookup_host((name.as_str(), target.port)),
    );
    let addresses: Vec<SocketAddr> = match resolved.await {
        Ok(Ok(addresses)) => addresses.collect(),
        Ok(Err(err)) => {
            let reason = format!("moat: egress to {target} failed: cannot resolve {name}: {err}");
            return Admission::Failed(respond::text_error(StatusCode::BAD_GATEWAY, &reason));
        }
        Err(_) => {
            let reason = format!("moat: egress to {target} failed: resolving {name} timed out");
            return Admission::Failed(respond::text_error(StatusCode::GATEWAY_TIMEOUT, &reason));
        }
    };
    if entry.names_address() {
        return Admission::Allowed(addresses);
    }
    let (public, private): (Vec<SocketAddr>, Vec<SocketAddr>) = addresses
        .into_iter()
        .partition(|address| is_public(address.ip()));
    match (public.is_empty(), private.first()) {
        (false, _) => Admission::Allowed(public),
        (true, Some(address)) => Admission::Refused(egress_message(
            &target.host,
            target.port,
            &format!(
                "{name} resolves to a non-public address ({}); only an [egress] allow entry naming the address admits it",
                address.ip()
            ),
        )),
        (true, None) => {
            let reason = format!("moat: egress to {target} failed: {name} has no address");
            Admission::Failed(respond::text_error(StatusCode::BAD_GATEWAY, &reason))
        }
    }
}

/// Whether a name entry may lead to `address`: not loopback, private, link-local (cloud
/// metadata), shared (CGNAT), unspecified, broadcast or multicast.
fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(address) => is_public_v4(address),
        IpAddr::V6(address) => match address.to_ipv4_mapped() {
            Some(mapped) => is_public_v4(mapped),
            None => is_public_v6(address),
        },
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [first, second, ..] = address.octets();
    !(address.is_loopback()
        || address.is_private()
        || address.is_link_local()
        || address.is_unspecified()
        || address.is_broadcast()
        || address.is_multicast()
        || first == 0
        || (first == 100 && (64..128).contains(&second)))
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    let first = address.segments()[0];
    !(address.is_loopback()
        || address.is_unspecified()
        || address.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0)
}

/// The audit record of a proxy decision (`message` set: refused).
fn event(identity: &str, target: &ProxyTarget, kind: &str, message: Option<&str>) -> DecisionEvent {
    let blocked = message.is_some();
    DecisionEvent {
        time: jiff::Timestamp::now(),
        identity: identity.to_owned(),
        ecosystem: "egress".to_owned(),
        package: target.to_string(),
        version: None,
        request: kind.to_owned(),
        action: if blocked { "block" } else { "allow" }.to_owned(),
        rules: match blocked {
            true => vec![RuleId::Egress.as_str().to_owned()],
            false => Vec::new(),
        },
        advisories: Vec::new(),
        approved: Vec::new(),
        message: message.map(str::to_owned),
        repeats: None,
    }
}

/// Connect to the first address that answers.
async fn connect_to(
    addresses: &[SocketAddr],
    timeout: std::time::Duration,
) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to");
    for address in addresses {
        match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(err)) => last = err,
            Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
        }
    }
    Err(last)
}

/// Answer `200 Connection established` and, once hyper hands over the client's connection,
/// copy bytes both ways until either side closes.
fn tunnel(mut request: Request, mut upstream: TcpStream, target: &ProxyTarget) -> Response {
    let upgrade = hyper::upgrade::on(&mut request);
    let label = target.to_string();
    let task = async move {
        match upgrade.await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(error = %err, target = %label, "tunnel ended with an error");
                }
            }
            Err(err) => tracing::debug!(error = %err, target = %label, "tunnel upgrade failed"),
        }
    };
    if !Background::spawn(request.extensions(), task) {
        let reason = "moat: the gate is shutting down";
        return respond::text_error(StatusCode::SERVICE_UNAVAILABLE, reason);
    }
    let response = Response::new(Body::empty());
    respond::with_reason(response, "Connection established")
}

/// Send an absolute-form request to `target` over `upstream` in origin form and stream the
/// answer back, hop-by-hop headers removed both ways.
async fn forward(request: Request, upstream: TcpStream, target: &ProxyTarget) -> Response {
    let failed = |err: &dyn std::fmt::Display| {
        let reason = format!("moat: egress to {target} failed: {err}");
        respond::text_error(StatusCode::BAD_GATEWAY, &reason)
    };
    let (mut parts, body) = request.into_parts();
    let origin = parts
        .uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .parse::<http::Uri>();
    parts.uri = match origin {
        Ok(uri) => uri,
        Err(err) => return failed(&err),
    };
    parts.extensions = http::Extensions::new();
    strip_hop_by_hop(&mut parts.headers);
    match http::HeaderValue::from_str(&target.authority) {
        Ok(host) => parts.headers.insert(header::HOST, host),
        Err(err) => return failed(&err),
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(upstream)).await {
            Ok(handshake) => handshake,
            Err(err) => return failed(&err),
        };
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "proxied connection ended with an error");
        }
    });
    let answer = match sender
        .send_request(http::Request::from_parts(parts, body))
        .await
    {
        Ok(answer) => answer,
        Err(err) => return failed(&err),
    };
    let (mut parts, body) = answer.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.extensions = http::Extensions::new();
    Response::from_parts(parts, Body::new(body))
}

/// Remove the hop-by-hop headers (RFC 9110 §7.6.1): those `Connection` names, and the fixed set.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str, connect: bool) -> Result<(String, u16, String), String> {
        ProxyTarget::of(&uri.parse().unwrap(), connect).map(|target| {
            (
                target.host().to_string(),
                target.port(),
                target.authority().to_owned(),
            )
        })
    }

    #[test]
    fn the_target_is_the_host_after_any_user_info_and_its_port() {
        // (request target, CONNECT?, host decided on, port, `Host` header)
        for (uri, connect, host, port, authority) in [
            (
                "http://Example.ORG/x",
                false,
                "example.org",
                80,
                "Example.ORG",
            ),
            (
                "http://example.org:8080/",
                false,
                "example.org",
                8080,
                "example.org:8080",
            ),
            (
                "example.org:443",
                true,
                "example.org",
                443,
                "example.org:443",
            ),
            ("[::1]:8080", true, "[::1]", 8080, "[::1]:8080"),
            // What the policy decides on is the host, not what the user info says.
            (
                "http://example.org:80@evil.test:8080/",
                false,
                "evil.test",
                8080,
                "evil.test:8080",
            ),
            (
                "example.org@evil.test:443",
                true,
                "evil.test",
                443,
                "evil.test:443",
            ),
            // Found by the `egress_target` fuzz target: the `Host` header named more than the
            // host, whatever the URI parser skips between the user info and the port.
            (
                "http://[x@example.org@evil.test:08::1:81],:4/",
                false,
                "evil.test",
                4,
                "evil.test:4",
            ),
        ] {
            assert_eq!(
                target(uri, connect),
                Ok((host.to_owned(), port, authority.to_owned())),
                "{uri}"
            );
        }
    }

    #[test]
    fn a_target_without_what_the_proxy_needs_is_refused() {
        for (uri, connect) in [
            ("example.org", true),
            ("https://example.org/", false),
            ("/relative", false),
            ("http://exa_mple..org/", false),
        ] {
            assert!(target(uri, connect).is_err(), "{uri} (connect: {connect})");
        }
    }

    #[test]
    fn non_public_addresses() {
        for address in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(address.parse().unwrap()), "{address}");
        }
        for address in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(address.parse().unwrap()), "{address}");
        }
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "close, x-secret-hop".parse().unwrap());
        headers.insert("x-secret-hop", "1".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert(header::PROXY_AUTHORIZATION, "Basic eA==".parse().unwrap());
        headers.insert(header::ACCEPT, "*/*".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::ACCEPT));
    }
}

//! The upstream client: HTTP/1.1 over reqwest with rustls and the system's CA roots (read by
//! rustls-native-certs from the system trust store, or `SSL_CERT_FILE`/`SSL_CERT_DIR`; never
//! bundled web roots, so a proxy re-signing TLS with a locally trusted CA works), explicit
//! proxies (never read from the environment here), timeouts and body-size caps. One client serves
//! every ecosystem's upstream (npm registry, PyPI simple index and files host, crates.io sparse
//! index and download host).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;

use crate::UpstreamError;

/// Where and how to reach the upstream registries.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// npm registry base URL (no trailing slash needed).
    pub npm: String,
    /// PyPI simple index base URL (`https://pypi.org/simple`); file URLs come from its pages.
    pub pypi: String,
    /// crates.io sparse index base URL (`https://index.crates.io`); download URLs come from its
    /// `config.json`.
    pub crates: String,
    /// Outbound proxies; `None` = connect directly.
    pub proxy: Option<ProxyConfig>,
    /// Whole-request timeout (connect, headers and body).
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// `User-Agent` sent upstream.
    pub user_agent: String,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            npm: "https://registry.npmjs.org".into(),
            pypi: "https://pypi.org/simple".into(),
            crates: "https://index.crates.io".into(),
            proxy: None,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            user_agent: concat!("moat/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// Outbound proxies, as the CLI read them from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Proxy for `http://` upstreams.
    pub http: Option<String>,
    /// Proxy for `https://` upstreams.
    pub https: Option<String>,
    /// Hosts reached directly (the usual comma-separated `NO_PROXY` syntax).
    pub no_proxy: Option<String>,
}

/// The answer to a packument request.
#[derive(Debug, Clone, PartialEq)]
pub enum PackumentResponse {
    /// A body (and the upstream's `ETag`, for revalidation).
    Fresh {
        /// The raw JSON.
        body: Bytes,
        /// Upstream `ETag`.
        etag: Option<String>,
    },
    /// `304 Not Modified` to our `If-None-Match`.
    NotModified,
    /// `404`: no such package upstream.
    NotFound,
}

/// The answer to a metadata request (PyPI project page, cargo index file).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaResponse {
    /// A body, the upstream's `ETag` (for revalidation) and `Content-Type`.
    Fresh {
        /// The raw body.
        body: Bytes,
        /// Upstream `ETag`.
        etag: Option<String>,
        /// Upstream `Content-Type`, if any.
        content_type: Option<String>,
    },
    /// `304 Not Modified` to our `If-None-Match`.
    NotModified,
    /// `404` or `410`: no such package upstream.
    NotFound,
}

/// A client for the upstream registries.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: reqwest::Client,
    base: String,
    pypi: String,
    crates: String,
    timeout: Duration,
}

impl Upstream {
    /// Build the client. Every base URL must be `http://` or `https://`.
    pub fn new(config: &UpstreamConfig) -> Result<Upstream, UpstreamError> {
        let mut builder = reqwest::Client::builder()
            .http1_only()
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(config.user_agent.clone())
            .redirect(reqwest::redirect::Policy::limited(5));
        if let Some(proxy) = &config.proxy {
            let no_proxy = proxy
                .no_proxy
                .as_deref()
                .and_then(reqwest::NoProxy::from_string);
            let bad = |err: reqwest::Error| UpstreamError::Config(format!("proxy: {err}"));
            if let Some(url) = &proxy.http {
                builder = builder.proxy(
                    reqwest::Proxy::http(url)
                        .map_err(bad)?
                        .no_proxy(no_proxy.clone()),
                );
            }
            if let Some(url) = &proxy.https {
                builder =
                    builder.proxy(reqwest::Proxy::https(url).map_err(bad)?.no_proxy(no_proxy));
            }
        }
        let client = builder
            .build()
            .map_err(|err| UpstreamError::Config(err.to_string()))?;
        let base_url = |url: &str| {
            let url = url.trim_end_matches('/').to_owned();
            match url.starts_with("http://") || url.starts_with("https://") {
                true => Ok(url),
                false => Err(UpstreamError::InvalidUrl(url)),
            }
        };
        Ok(Upstream {
            client,
            base: base_url(&config.npm)?,
            pypi: base_url(&config.pypi)?,
            crates: base_url(&config.crates)?,
            timeout: config.timeout,
        })
    }

    /// The PyPI project page URL of a (normalised) project name, with its trailing slash.
    pub fn pypi_page_url(&self, project: &str) -> String {
        format!("{}/{project}/", self.pypi)
    }

    /// The URL of a file under the crates sparse index (`config.json`, `se/rd/serde`).
    pub fn crates_index_url(&self, path: &str) -> String {
        format!("{}/{path}", self.crates)
    }

    /// Fetch a metadata document at `url` with `accept`, revalidating with `etag` when given;
    /// the body is capped at `max_bytes`.
    pub async fn metadata(
        &self,
        url: &str,
        accept: &str,
        etag: Option<&str>,
        max_bytes: u64,
    ) -> Result<MetaResponse, UpstreamError> {
        let mut request = self.client.get(url).header(http::header::ACCEPT, accept);
        if let Some(etag) = etag {
            request = request.header(http::header::IF_NONE_MATCH, etag);
        }
        let response = request.send().await.map_err(|err| self.classify(err))?;
        match response.status() {
            StatusCode::OK => {
                let header = |name| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v: &http::HeaderValue| v.to_str().ok())
                        .map(str::to_owned)
                };
                let etag = header(http::header::ETAG);
                let content_type = header(http::header::CONTENT_TYPE);
                let body = self.read_capped(response, max_bytes).await?;
                Ok(MetaResponse::Fresh {
                    body,
                    etag,
                    content_type,
                })
            }
            StatusCode::NOT_MODIFIED => Ok(MetaResponse::NotModified),
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(MetaResponse::NotFound),
            other => Err(UpstreamError::Status(other.as_u16())),
        }
    }

    /// The packument URL of `name` (scoped names as `@scope%2fname`, as the registry expects).
    pub fn packument_url(&self, name: &str) -> String {
        format!("{}/{}", self.base, name.replace('/', "%2f"))
    }

    /// Fetch the full packument of `name` (always the full document: the age rule needs `time`),
    /// revalidating with `etag` when given. The body is capped at `max_bytes`.
    pub async fn packument(
        &self,
        name: &str,
        etag: Option<&str>,
        max_bytes: u64,
    ) -> Result<PackumentResponse, UpstreamError> {
        let mut request = self
            .client
            .get(self.packument_url(name))
            .header(http::header::ACCEPT, "application/json");
        if let Some(etag) = etag {
            request = request.header(http::header::IF_NONE_MATCH, etag);
        }
        let response = request.send().await.map_err(|err| self.classify(err))?;
        match response.status() {
            StatusCode::OK => {
                let etag = response
                    .headers()
                    .get(http::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = self.read_capped(response, max_bytes).await?;
                Ok(PackumentResponse::Fresh { body, etag })
            }
            StatusCode::NOT_MODIFIED => Ok(PackumentResponse::NotModified),
            StatusCode::NOT_FOUND => Ok(PackumentResponse::NotFound),
            other => Err(UpstreamError::Status(other.as_u16())),
        }
    }

    /// Fetch an artifact from its upstream `dist.tarball` URL, capped at `max_bytes`.
    pub async fn artifact(&self, url: &str, max_bytes: u64) -> Result<Bytes, UpstreamError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(UpstreamError::InvalidUrl(url.to_owned()));
        }
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|err| self.classify(err))?;
        match response.status() {
            StatusCode::OK => self.read_capped(response, max_bytes).await,
            other => Err(UpstreamError::Status(other.as_u16())),
        }
    }

    async fn read_capped(
        &self,
        mut response: reqwest::Response,
        max_bytes: u64,
    ) -> Result<Bytes, UpstreamError> {
        if response.content_length().is_some_and(|len| len > max_bytes) {
            return Err(UpstreamError::TooLarge(max_bytes));
        }
        let capacity = response.content_length().unwrap_or(0).min(max_bytes);
        let mut body = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
        while let Some(chunk) = response.chunk().await.map_err(|err| self.classify(err))? {
            if (body.len() + chunk.len()) as u64 > max_bytes {
                return Err(UpstreamError::TooLarge(max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    fn classify(&self, err: reqwest::Error) -> UpstreamError {
        if err.is_timeout() {
            return UpstreamError::TimedOut(self.timeout);
        }
        let mut detail = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            detail = format!("{detail}: {cause}");
            source = cause.source();
        }
        UpstreamError::Unreachable(detail)
    }
}

//! `moat gate`: load everything, bind, serve until Ctrl-C or SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_gate::{Gate, GateConfig};

use crate::cli::{GateArgs, GlobalArgs};
use crate::config::{Loaded, Sources};
use crate::error::UserError;

pub fn run(global: &GlobalArgs, loaded: &Loaded, args: GateArgs) -> anyhow::Result<ExitCode> {
    let data_dir = loaded.data_dir(global)?;
    std::fs::create_dir_all(&data_dir).map_err(|e| {
        UserError::new(format!(
            "cannot create data directory {}: {e}",
            data_dir.display()
        ))
        .hint("pass a writable --data-dir")
    })?;
    let started = Instant::now();
    let sources = Sources::load(loaded, &args.sources, &data_dir)?;
    for status in sources.advisories.status() {
        tracing::info!(
            "{} advisories: {} records ({} malicious)",
            status.ecosystem,
            status.records,
            status.malicious
        );
    }
    tracing::info!(
        "policy: {} (revision {}); data loaded in {} ms",
        sources.policy_origin,
        sources.policy.revision(),
        started.elapsed().as_millis()
    );
    let audit_path = data_dir.join("audit.db");
    let audit = moat_audit::AuditLog::open(&audit_path).map_err(|e| {
        UserError::new(format!(
            "cannot open the audit log {}: {e}",
            audit_path.display()
        ))
        .hint("the gate records every decision before answering; it will not start without its log")
    })?;
    let listen = loaded.listen(args.listen);
    let metadata_ttl = Duration::from_secs(
        args.metadata_ttl
            .or(loaded.file.metadata_ttl)
            .unwrap_or(300),
    );
    let public_url = args.public_url.or_else(|| loaded.file.public_url.clone());

    super::runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            UserError::new(format!("cannot listen on {listen}: {e}"))
                .hint("is another gate running there? pass --listen 127.0.0.1:PORT (port 0 picks a free one)")
        })?;
        let address = listener.local_addr()?;
        if !address.ip().is_loopback() {
            tracing::warn!(
                "listening on a non-loopback address ({address}): anyone who can reach it can use the gate"
            );
        }
        let public_url =
            public_url.unwrap_or_else(|| format!("http://{address}")).trim_end_matches('/').to_owned();
        let config = GateConfig {
            upstream: upstream_config(&sources),
            metadata_ttl,
            ..GateConfig::new(public_url.clone(), data_dir)
        };
        let gate = Gate::new(config, sources.policy, sources.advisories, sources.popular, audit)?;
        eprintln!("moat gate listening on http://{address}");
        eprintln!("  npm:    npm config set registry {public_url}/npm/");
        eprintln!("  pip:    pip install --index-url {public_url}/pypi/simple/ PACKAGE");
        eprintln!("  uv:     uv pip install --index-url {public_url}/pypi/simple/ PACKAGE");
        eprintln!("  cargo:  [source.crates-io] replace-with = \"moat\"; [source.moat] registry = \"sparse+{public_url}/crates/index/\"");
        eprintln!("  why:    moat why npm NAME@VERSION  (or {public_url}/-/why/npm/NAME/VERSION)");
        moat_gate::serve(listener, Arc::new(gate), shutdown_signal()).await?;
        eprintln!("moat gate stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Upstream settings, with proxies taken from the usual environment variables.
pub fn upstream_config(sources: &Sources) -> moat_registry::UpstreamConfig {
    let var = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
    };
    let http = var(&["HTTP_PROXY", "http_proxy"]);
    let https = var(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]);
    let no_proxy = var(&["NO_PROXY", "no_proxy"]);
    let proxy = (http.is_some() || https.is_some()).then_some(moat_registry::ProxyConfig {
        http,
        https,
        no_proxy,
    });
    moat_registry::UpstreamConfig {
        npm: sources.upstream_npm.clone(),
        pypi: sources.upstream_pypi.clone(),
        crates: sources.upstream_crates.clone(),
        proxy,
        timeout: sources.upstream_timeout,
        connect_timeout: sources.upstream_timeout.min(Duration::from_secs(10)),
        user_agent: format!("moat/{}", env!("CARGO_PKG_VERSION")),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

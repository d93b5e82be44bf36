//! `moat gate`: load everything, bind, serve until Ctrl-C or SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_gate::{Gate, GateConfig, LlmKeys, LlmUpstream, Secret};

use crate::cli::{GateArgs, GlobalArgs, LlmArgs};
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
    // Before loading anything: one gate per data directory (the control socket is bound, and
    // this checked again, once the data is loaded).
    let control_path = data_dir.join(moat_gate::CONTROL_SOCKET);
    if moat_gate::control::connect_unix(&control_path).is_ok() {
        return Err(another_gate(&moat_gate::ControlError::InUse(control_path)).into());
    }
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
    let audit_store = loaded.audit_store(global, &data_dir);
    let audit = audit_store.open().map_err(|e| {
        UserError::new(format!(
            "cannot open the audit log {}: {e}",
            audit_store.location
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
        // Without a control socket (a data dir path too long for a socket, say) the gate still
        // serves its clients; `moat run` sessions then start gates of their own.
        let control = match moat_gate::bind_control(&control_path) {
            Ok(control) => Some(control),
            Err(e @ moat_gate::ControlError::InUse(_)) => return Err(another_gate(&e).into()),
            Err(e) => {
                tracing::warn!("no control socket ({e}): `moat run` sessions will not use this gate");
                None
            }
        };
        let config = GateConfig {
            upstream: upstream_config(&sources),
            metadata_ttl,
            llm_keys: llm_keys(),
            llm_upstream: llm_upstream(&args.llm),
            ..GateConfig::new(public_url.clone(), data_dir.clone())
        };
        let gate = Arc::new(Gate::new(
            config,
            sources.policy,
            sources.advisories,
            sources.popular,
            audit.clone(),
        )?);
        say!("moat gate listening on http://{address}");
        say!("  npm:    npm config set registry {public_url}/npm/");
        say!("  pip:    pip install --index-url {public_url}/pypi/simple/ PACKAGE");
        say!("  uv:     uv pip install --index-url {public_url}/pypi/simple/ PACKAGE");
        say!("  cargo:  [source.crates-io] replace-with = \"moat\"; [source.moat] registry = \"sparse+{public_url}/crates/index/\"");
        say!("  why:    moat why npm NAME@VERSION  (or {public_url}/-/why/npm/NAME/VERSION)");
        if control.is_some() {
            say!(
                "  agents: moat run --data-dir {} -- COMMAND  (sessions use this gate through {})",
                data_dir.display(),
                control_path.display()
            );
        }
        // One signal stops both the HTTP server and the control socket (which ends the open
        // sessions and records their ends).
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        };
        let control = control.map(|control| {
            tokio::spawn(moat_gate::serve_control(
                control,
                Arc::clone(&gate),
                until_stopped(stopped.clone()),
            ))
        });
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        // One serving loop per core (`serve_loops`); the control socket and the sessions'
        // sockets are served by this runtime.
        let loops = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let served = moat_gate::serve_loops(listener, gate, loops, until_stopped(stopped)).await;
        if let Some(control) = control {
            if let Ok(Err(err)) = control.await {
                tracing::warn!(error = %err, "control socket");
            }
        }
        audit.shutdown().await;
        served?;
        say!("moat gate stopped");
        Ok(ExitCode::SUCCESS)
    })
}

fn another_gate(error: &moat_gate::ControlError) -> UserError {
    UserError::new(error.to_string()).hint(
        "one gate per data directory (one audit writer): stop the other one, or pass another --data-dir",
    )
}

/// LLM API keys from the host environment, for the gate's pass-through routes only.
pub fn llm_keys() -> LlmKeys {
    let key = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::new)
    };
    LlmKeys {
        anthropic: key("ANTHROPIC_API_KEY"),
        openai: key("OPENAI_API_KEY"),
    }
}

/// Where the LLM pass-through routes forward.
pub fn llm_upstream(args: &LlmArgs) -> LlmUpstream {
    let mut upstream = LlmUpstream::default();
    if let Some(url) = &args.upstream_anthropic {
        upstream.anthropic.clone_from(url);
    }
    if let Some(url) = &args.upstream_openai {
        upstream.openai.clone_from(url);
    }
    upstream
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

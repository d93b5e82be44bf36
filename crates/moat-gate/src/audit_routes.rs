//! `GET /-/audit/checkpoint`, `/-/audit/proof/inclusion?index=N[&size=M]` and
//! `/-/audit/proof/consistency?from=A[&to=B]`: the audit log's newest signed checkpoint (a C2SP
//! signed note, `text/plain`) and RFC 9162 proofs as JSON (hashes in base64), so a monitor can
//! keep checkpoints elsewhere and check that the log only grows. Proofs carry hashes only,
//! never event contents. Indexes are 0-based leaf indexes (an event's seq is index + 1); sizes
//! default to the newest checkpoint's.

use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use moat_audit::{AuditError, AuditLog};

use crate::respond::{self, JSON, TEXT};

/// Answer `/-/audit/<segments>?<query>`.
pub(crate) async fn handle(audit: &AuditLog, segments: &[String], query: Option<&str>) -> Response {
    let route: Vec<&str> = segments.iter().map(String::as_str).collect();
    let params = match Params::parse(query) {
        Ok(params) => params,
        Err(message) => return respond::error(StatusCode::BAD_REQUEST, &message),
    };
    let audit = audit.clone();
    let answer = match route.as_slice() {
        ["checkpoint"] => {
            blocking(move || {
                let Some(latest) = audit.checkpoint()? else {
                    return Err(AuditError::OutOfRange(
                        "the audit log is empty: no checkpoint yet".into(),
                    ));
                };
                Ok(respond::bytes(
                    StatusCode::OK,
                    TEXT,
                    Bytes::from(latest.note),
                ))
            })
            .await
        }
        ["proof", "inclusion"] => {
            let Some(index) = params.index else {
                return respond::error(StatusCode::BAD_REQUEST, "moat: index=N is required");
            };
            blocking(move || json(&audit.inclusion_proof(index, params.size)?)).await
        }
        ["proof", "consistency"] => {
            let Some(from) = params.from else {
                return respond::error(StatusCode::BAD_REQUEST, "moat: from=N is required");
            };
            blocking(move || {
                let to = match params.to {
                    Some(to) => to,
                    None => audit
                        .checkpoint()?
                        .map_or(0, |latest| latest.checkpoint.size),
                };
                json(&audit.consistency_proof(from, to)?)
            })
            .await
        }
        _ => return respond::error(StatusCode::NOT_FOUND, "not found"),
    };
    match answer {
        Ok(response) => response,
        Err(AuditError::OutOfRange(message)) => {
            respond::error(StatusCode::NOT_FOUND, &format!("moat: {message}"))
        }
        Err(error) => {
            tracing::warn!(%error, "audit proof failed");
            respond::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "moat: the audit log cannot be read",
            )
        }
    }
}

/// Run a SQLite read off the async workers.
async fn blocking(
    work: impl FnOnce() -> Result<Response, AuditError> + Send + 'static,
) -> Result<Response, AuditError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|_| Err(AuditError::Store("proof task failed".into())))
}

fn json(value: &impl serde::Serialize) -> Result<Response, AuditError> {
    let body = serde_json::to_vec(value)
        .map_err(|e| AuditError::Store(format!("cannot encode the proof: {e}")))?;
    Ok(respond::bytes(StatusCode::OK, JSON, Bytes::from(body)))
}

/// The numeric query parameters; anything else is refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Params {
    index: Option<u64>,
    size: Option<u64>,
    from: Option<u64>,
    to: Option<u64>,
}

impl Params {
    fn parse(query: Option<&str>) -> Result<Params, String> {
        let mut params = Params::default();
        for pair in query
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
        {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                "index" => &mut params.index,
                "size" => &mut params.size,
                "from" => &mut params.from,
                "to" => &mut params.to,
                _ => return Err(format!("moat: unknown parameter {name:?}")),
            };
            let number = value
                .parse()
                .map_err(|_| format!("moat: {name} must be a non-negative integer"))?;
            *slot = Some(number);
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use moat_audit::merkle::{verify_consistency, verify_inclusion};
    use moat_audit::{Checkpoint, ConsistencyProof, InclusionProof};

    use super::*;

    async fn get(log: &AuditLog, path: &str, query: Option<&str>) -> (StatusCode, String) {
        let segments: Vec<String> = path.split('/').map(str::to_owned).collect();
        let response = handle(log, &segments, query).await;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn event(package: &str) -> moat_audit::Event {
        moat_audit::Event::Decision(moat_audit::DecisionEvent {
            time: "2026-01-02T03:04:05Z".parse().unwrap(),
            identity: "anonymous@127.0.0.1".to_owned(),
            ecosystem: "npm".to_owned(),
            package: package.to_owned(),
            version: None,
            request: "metadata".to_owned(),
            action: "allow".to_owned(),
            rules: Vec::new(),
            advisories: Vec::new(),
            approved: Vec::new(),
            message: None,
            repeats: None,
        })
    }

    #[tokio::test]
    async fn checkpoint_and_proofs_verify_with_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.db")).unwrap();
        assert_eq!(get(&log, "checkpoint", None).await.0, StatusCode::NOT_FOUND);
        for name in ["a", "b", "c"] {
            log.append(event(name)).await.unwrap();
        }
        let (_, first) = get(&log, "checkpoint", None).await;
        for name in ["d", "e", "f", "g"] {
            log.append(event(name)).await.unwrap();
        }
        let key = log.verifier().unwrap();
        let (status, note) = get(&log, "checkpoint", None).await;
        assert_eq!(status, StatusCode::OK);
        let latest = Checkpoint::open(&note, &key).unwrap();
        let first = Checkpoint::open(&first, &key).unwrap();
        assert_eq!((first.size, latest.size), (3, 7));

        let (status, body) = get(&log, "proof/inclusion", Some("index=5")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let proof: InclusionProof = serde_json::from_str(&body).unwrap();
        verify_inclusion(5, 7, &proof.leaf_hash, &proof.proof, &latest.root).unwrap();
        let (_, body) = get(&log, "proof/inclusion", Some("index=1&size=3")).await;
        let proof: InclusionProof = serde_json::from_str(&body).unwrap();
        verify_inclusion(1, 3, &proof.leaf_hash, &proof.proof, &first.root).unwrap();

        let (status, body) = get(&log, "proof/consistency", Some("from=3&to=7")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let proof: ConsistencyProof = serde_json::from_str(&body).unwrap();
        verify_consistency(3, 7, &first.root, &latest.root, &proof.proof).unwrap();
        let (_, body) = get(&log, "proof/consistency", Some("from=3")).await;
        assert_eq!(
            serde_json::from_str::<ConsistencyProof>(&body).unwrap(),
            proof
        );

        for (path, query, expected) in [
            ("proof/inclusion", Some("index=7"), StatusCode::NOT_FOUND),
            (
                "proof/inclusion",
                Some("index=1&size=8"),
                StatusCode::NOT_FOUND,
            ),
            ("proof/inclusion", None, StatusCode::BAD_REQUEST),
            (
                "proof/consistency",
                Some("from=8&to=7"),
                StatusCode::NOT_FOUND,
            ),
            ("proof/consistency", Some("from=x"), StatusCode::BAD_REQUEST),
            ("proof/other", None, StatusCode::NOT_FOUND),
        ] {
            assert_eq!(get(&log, path, query).await.0, expected, "{path} {query:?}");
        }
        log.shutdown().await;
    }

    #[test]
    fn parameters_are_numbers_with_known_names() {
        assert_eq!(
            Params::parse(Some("index=3&size=10")),
            Ok(Params {
                index: Some(3),
                size: Some(10),
                ..Params::default()
            })
        );
        assert_eq!(Params::parse(None), Ok(Params::default()));
        assert!(Params::parse(Some("index=-1")).is_err());
        assert!(Params::parse(Some("index=1&evil=2")).is_err());
    }
}

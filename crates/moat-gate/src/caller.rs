//! Who a request comes from. Never read from the request itself: a TCP client is anonymous
//! (recorded with its address), and every request on a session's unix socket belongs to the
//! session that owns the socket.

use std::net::SocketAddr;
use std::sync::Arc;

/// The `moat run` session a unix-socket listener serves. Every request on that socket is
/// attributed to it: its audit identity is `session:<id>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionContext {
    /// The session id, as recorded in the session-start event.
    pub id: String,
    /// The agent running in the session (`--agent`).
    pub agent: String,
    /// The person responsible for it (`--operator`).
    pub operator: String,
}

impl SessionContext {
    /// The identity recorded on the session's audit events: `session:<id>`.
    pub fn identity(&self) -> String {
        format!("session:{}", self.id)
    }
}

/// The other end of a connection, as the accept loop knows it.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// An anonymous TCP client.
    Peer(SocketAddr),
    /// The session that owns the unix socket.
    Session(Arc<SessionContext>),
}

impl Caller {
    /// The audit identity: `anonymous@<ip>` or `session:<id>`.
    pub(crate) fn identity(&self) -> String {
        match self {
            Caller::Peer(peer) => format!("anonymous@{}", peer.ip()),
            Caller::Session(session) => session.identity(),
        }
    }

    /// The session, when the request came on a session socket.
    pub(crate) fn session(&self) -> Option<&SessionContext> {
        match self {
            Caller::Session(session) => Some(session),
            Caller::Peer(_) => None,
        }
    }
}

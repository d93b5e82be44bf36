//! Integration tests: the gate served on 127.0.0.1:0 (and on a session's unix socket) against a
//! small in-test upstream, driven over raw sockets so that every URL spelling reaches the gate
//! exactly as written.

mod control;
mod egress;
mod invariants;
mod llm;
mod routes;
mod session;
mod session_file;
mod support;

//! Integration tests: the gate served on 127.0.0.1:0 against a small in-test upstream, driven
//! over raw TCP so that every URL spelling reaches the gate exactly as written.

mod invariants;
mod routes;
mod support;

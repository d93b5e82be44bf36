//! Integration tests of moat-policy: the security invariants by name, the rules, the block
//! messages (snapshots) and `moat policy check`.

mod check;
mod invariants;
mod messages;
mod rules;
mod support;

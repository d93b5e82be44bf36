//! The sandbox's named escape tests: each runs a real attempt inside the sandbox and asserts it
//! fails, under both backends (`name::embedded`, `name::podman`); plus the positive path
//! (workspace, `$HOME`, the gate port), limits, and what only podman has.

#![allow(clippy::print_stderr)]

mod escape;
mod gate;
mod limits;
mod podman;
mod support;

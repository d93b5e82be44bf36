//! The sandbox's named escape tests: each runs a real attempt inside `moat_sandbox::run` and
//! asserts it fails; plus the positive path (workspace, `$HOME`, the gate port).

#![allow(clippy::print_stderr)]

mod escape;
mod gate;
mod limits;
mod podman;
mod support;

//! The wire between [`run`](crate::run) and the init: fixed descriptors and JSON-line reports.

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::spec::{ExitStatus, ResourceUsage, Spec};

/// The hidden subcommand under which the `moat` binary must call [`init_main`](crate::init_main).
pub const INIT_SUBCOMMAND: &str = "__sandbox-init";
/// Descriptor in the init from which it reads the JSON request to end of file.
pub const SPEC_FD: i32 = 3;
/// Descriptor in the init on which it writes JSON-line reports; close-on-exec before the agent.
pub const REPORT_FD: i32 = 4;
/// Where the gate socket appears inside the sandbox.
pub const GATE_SOCKET_INSIDE: &str = "/run/moat/gate.sock";

/// What the host sends: the spec plus the properties the init enforces (each one the host
/// has; a property the host lacks was waived, or `run` refused before spawning).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub spec: Spec,
    pub landlock: bool,
    pub seccomp: bool,
    /// The init already runs inside a container (the podman backend): it creates no
    /// namespaces and builds no root, but still bridges the gate port and confines the agent.
    #[serde(default)]
    pub container: bool,
}

/// What the init reports, one JSON object per line, each written with a single `write`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Report {
    /// Setup failed before the agent ran.
    Failed { message: String },
    /// The agent was started under these enforced properties.
    Started { enforced: Vec<String> },
    /// The agent ended. In a container the init also reports the usage it measured (its own
    /// and every process it reaped), which the host cannot see through the container runtime.
    Exited {
        status: ExitStatus,
        #[serde(default)]
        usage: Option<ResourceUsage>,
    },
}

/// Writes reports on the report descriptor.
pub(crate) struct Reporter {
    fd: OwnedFd,
}

impl Reporter {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Self { fd }
    }

    pub(crate) fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            fd: self.fd.try_clone()?,
        })
    }

    /// Sends one report; failures are ignored (the host then sees only the exit status).
    pub(crate) fn send(&self, report: &Report) {
        let Ok(mut line) = serde_json::to_vec(report) else {
            return;
        };
        line.push(b'\n');
        let mut rest = line.as_slice();
        while !rest.is_empty() {
            match rustix::io::write(self.fd.as_fd(), rest) {
                Ok(0) | Err(_) => return,
                Ok(written) => rest = &rest[written..],
            }
        }
    }
}

/// Reads every report until the init and the namespace close the descriptor.
pub(crate) fn read_reports(fd: OwnedFd) -> Vec<Report> {
    let mut text = String::new();
    if std::fs::File::from(fd).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

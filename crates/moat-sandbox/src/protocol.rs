//! The wire between [`run`](crate::run) and the init: fixed descriptors, three frames down
//! (the [`Request`], the session's [`Admitted`], then [`Confirmed`]) and JSON-line reports up.
//!
//! A frame is a little-endian `u32` length and that many bytes of JSON. The init reads exactly
//! one frame at a time, so that it can read the request, build the new root meanwhile and leave
//! the admission in the pipe until it is ready for it; then prepare the agent's start while the
//! caller records the session's start, and start it on the confirmation.

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::spec::{Admission, ExitStatus, ResourceUsage, Spec};

/// The hidden subcommand under which the `moat` binary must call [`init_main`](crate::init_main).
pub const INIT_SUBCOMMAND: &str = "__sandbox-init";
/// Descriptor in the init from which it reads the request frame, the admission frame and the
/// confirmation (end of file instead of either: the session was refused).
pub const SPEC_FD: i32 = 3;
/// Descriptor in the init on which it writes JSON-line reports; close-on-exec before the agent.
pub const REPORT_FD: i32 = 4;
/// Where the gate socket appears inside the sandbox: in `/run/moat`, under the name
/// the gate gives it in the session's [`Spec::gate_dir`].
pub const GATE_SOCKET_INSIDE: &str = "/run/moat/gate.sock";
/// Where the embedded backend mounts the session's [`Spec::gate_dir`].
pub(crate) const GATE_DIR_INSIDE: &str = "/run/moat";

/// The first frame: the sandbox to build. The host sends it before the session is admitted.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub spec: Spec,
    /// The init already runs inside a container (the podman backend): it creates no
    /// namespaces and builds no root, but still bridges the gate port and confines the agent.
    #[serde(default)]
    pub container: bool,
}

/// The second frame: the session may start, with this admission, enforcing these properties
/// (each one the host has; a property the host lacks was waived, or `run` refused).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Admitted {
    pub admission: Admission,
    pub landlock: bool,
    pub seccomp: bool,
}

/// The third frame: the agent may start now (the caller has the session's start on record).
/// End of file instead: the session was refused, and the init starts nothing.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Confirmed {}

/// The longest frame either side accepts (an admission holds the home files).
const MAX_FRAME: usize = 16 << 20;

/// Writes one frame of `message`.
pub(crate) fn write_frame(to: &mut impl io::Write, message: &impl Serialize) -> io::Result<()> {
    let json = serde_json::to_vec(message).map_err(io::Error::other)?;
    let length = u32::try_from(json.len())
        .ok()
        .filter(|&length| length as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::other("the sandbox request is too large"))?;
    let mut frame = Vec::with_capacity(4 + json.len());
    frame.extend_from_slice(&length.to_le_bytes());
    frame.extend_from_slice(&json);
    to.write_all(&frame)
}

/// Reads one frame, and no byte past it; `None` at end of file before the frame starts.
pub(crate) fn read_frame<T: serde::de::DeserializeOwned>(
    from: &mut impl Read,
) -> io::Result<Option<T>> {
    let mut length = [0u8; 4];
    match from.read_exact(&mut length) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_le_bytes(length) as usize;
    if length > MAX_FRAME {
        return Err(io::Error::other(format!("a frame of {length} bytes")));
    }
    let mut json = vec![0u8; length];
    from.read_exact(&mut json)?;
    serde_json::from_slice(&json)
        .map(Some)
        .map_err(io::Error::other)
}

/// What the init reports, one JSON object per line, each written with a single `write`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Report {
    /// Setup failed before the agent ran.
    Failed { message: String },
    /// The agent's command could not be executed (no such file on the `PATH`, or a file that
    /// cannot be executed): nothing of it ran. `code` is what a shell exits with for it.
    NotStarted {
        program: String,
        error: String,
        code: i32,
    },
    /// The agent is being started under these enforced properties: sent just before it is, so
    /// that the host has it to read before the agent can show anything (a timeout or stop asks
    /// the agent to end from then on). A command the kernel then refuses to execute follows
    /// with [`Report::NotStarted`], a confinement that fails with [`Report::Failed`].
    Started { enforced: Vec<String> },
    /// The agent ended, and every other process of the sandbox was killed and reaped: the
    /// usage is the init's own and that of every process it reaped, i.e. the whole session.
    Exited {
        status: ExitStatus,
        usage: ResourceUsage,
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

    /// Waits until the host has closed its end (it has read the last report, or is gone), for
    /// at most `limit` (`None`: for as long as it takes): the init's exit tears down the
    /// sandbox's namespaces and memory, which the host need not wait for, and which then does
    /// not run beside the host's own exit. False when the limit passed first (or the wait
    /// failed).
    pub(crate) fn wait_until_heard(&self, limit: Option<std::time::Duration>) -> bool {
        // A pipe's write end reports POLLERR once no read end is left.
        let mut fds = [rustix::event::PollFd::new(
            &self.fd,
            rustix::event::PollFlags::empty(),
        )];
        let timeout = limit.map(timespec);
        loop {
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Err(rustix::io::Errno::INTR) => continue,
                Ok(ready) => return ready > 0,
                Err(_) => return false,
            }
        }
    }

    /// A reporter on a copy of the same end, for a thread that waits until no one reads it any
    /// more ([`wait_until_heard`](Self::wait_until_heard)).
    pub(crate) fn watcher(&self) -> std::io::Result<Reporter> {
        Ok(Reporter {
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

/// The host's end of the report pipe: JSON lines, each handed on as soon as it is whole. Closed
/// after the agent's exit, the init's last report (which lets the init exit:
/// [`Reporter::wait_until_heard`]), or at end of file.
pub(crate) struct Reports {
    fd: Option<OwnedFd>,
    /// A report not read whole yet.
    partial: Vec<u8>,
}

impl Reports {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Self {
            fd: Some(fd),
            partial: Vec::new(),
        }
    }

    /// The descriptor to poll, until it is closed.
    pub(crate) fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd)
    }

    /// Reads what the init has written (blocking until it has written something, or closed
    /// its end) and hands each whole report to `each`.
    pub(crate) fn read_available(&mut self, each: &mut impl FnMut(Report)) {
        let Some(fd) = &self.fd else {
            return;
        };
        let mut buffer = [0u8; 4096];
        match rustix::io::read(fd, &mut buffer) {
            Ok(0) => self.fd = None,
            Ok(read) => self.partial.extend_from_slice(&buffer[..read]),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(_) => self.fd = None,
        }
        while let Some(end) = self.partial.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let Ok(report) = serde_json::from_slice::<Report>(&line[..end]) else {
                continue;
            };
            let last = matches!(report, Report::Exited { .. });
            each(report);
            if last {
                self.fd = None;
                return;
            }
        }
    }

    /// Hands on every report until the end is closed.
    pub(crate) fn drain(&mut self, each: &mut impl FnMut(Report)) {
        while self.fd.is_some() {
            self.read_available(each);
        }
    }

    /// [`Reports::drain`], for at most `limit`: a stray holder of the init's end cannot keep
    /// the caller waiting longer.
    pub(crate) fn drain_within(
        &mut self,
        limit: std::time::Duration,
        each: &mut impl FnMut(Report),
    ) {
        let deadline = std::time::Instant::now() + limit;
        while let Some(fd) = self.fd() {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            let mut fds = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::IN,
            )];
            match rustix::event::poll(&mut fds, Some(&timespec(remaining))) {
                Ok(0) => return,
                Ok(_) => self.read_available(each),
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return,
            }
        }
    }
}

/// `duration` as `poll` takes it.
pub(crate) fn timespec(duration: std::time::Duration) -> rustix::event::Timespec {
    rustix::event::Timespec {
        tv_sec: duration.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: duration.subsec_nanos().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The init's wait for the host ends when the host closes its end, and at the limit when
    /// it does not (an init is never kept by a host that holds the pipe).
    #[test]
    fn the_wait_for_the_host_ends_when_it_closes_its_end_or_at_the_limit() {
        let (read, write) = rustix::pipe::pipe().unwrap();
        let reporter = Reporter::new(write);
        assert!(
            !reporter.wait_until_heard(Some(std::time::Duration::from_millis(20))),
            "heard while the host still holds its end"
        );
        drop(read);
        assert!(
            reporter.wait_until_heard(Some(std::time::Duration::from_secs(600))),
            "not heard once the host closed its end"
        );
    }

    #[test]
    fn reports_are_handed_on_whole_and_none_after_the_exit() {
        let (read, write) = rustix::pipe::pipe().unwrap();
        let reporter = Reporter::new(write);
        let started = Report::Started {
            enforced: vec!["seccomp".to_owned()],
        };
        let mut line = serde_json::to_vec(&started).unwrap();
        line.push(b'\n');
        // A report split across two reads is handed on once, when whole.
        let (head, tail) = line.split_at(5);
        rustix::io::write(&reporter.fd, head).unwrap();
        let mut reports = Reports::new(read);
        let mut heard = Vec::new();
        reports.read_available(&mut |report| heard.push(report));
        assert!(heard.is_empty());
        rustix::io::write(&reporter.fd, tail).unwrap();
        reporter.send(&Report::Exited {
            status: ExitStatus::Code(3),
            usage: ResourceUsage::default(),
        });
        reporter.send(&Report::Failed {
            message: "after the exit".to_owned(),
        });
        drop(reporter);
        reports.drain(&mut |report| heard.push(report));
        assert!(
            matches!(
                heard.as_slice(),
                [
                    Report::Started { .. },
                    Report::Exited {
                        status: ExitStatus::Code(3),
                        ..
                    }
                ]
            ),
            "{heard:?}"
        );
        assert!(reports.fd().is_none());
    }

    fn admitted(socket: &str) -> Admitted {
        Admitted {
            admission: Admission {
                gate_socket: socket.into(),
                ..crate::spec::tests::admission()
            },
            landlock: true,
            seccomp: true,
        }
    }

    #[test]
    fn frames_are_read_one_at_a_time_and_no_byte_past_them() {
        let mut pipe = Vec::new();
        let first = admitted("/run/a.sock");
        let second = admitted("/run/b.sock");
        write_frame(&mut pipe, &first).unwrap();
        write_frame(&mut pipe, &second).unwrap();
        let mut reader = pipe.as_slice();
        let read: Admitted = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!(read.admission.gate_socket, first.admission.gate_socket);
        let read: Admitted = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!(read.admission.gate_socket, second.admission.gate_socket);
        assert!(read_frame::<Admitted>(&mut reader).unwrap().is_none());
    }

    #[test]
    fn a_truncated_or_oversized_frame_is_an_error_and_no_frame_is_none() {
        assert!(
            read_frame::<Admitted>(&mut [].as_slice())
                .unwrap()
                .is_none()
        );
        assert!(
            read_frame::<Admitted>(&mut [7u8, 0].as_slice())
                .unwrap()
                .is_none()
        );
        let mut truncated = 100u32.to_le_bytes().to_vec();
        truncated.extend_from_slice(b"{\"admission");
        assert!(read_frame::<Admitted>(&mut truncated.as_slice()).is_err());
        let oversized = u32::MAX.to_le_bytes();
        assert!(read_frame::<Admitted>(&mut oversized.as_slice()).is_err());
        let mut garbage = 3u32.to_le_bytes().to_vec();
        garbage.extend_from_slice(b"{x}");
        assert!(read_frame::<Admitted>(&mut garbage.as_slice()).is_err());
    }
}

//! A session's admission, from the caller's thread ([`Door`]) to the run's ([`Entry`]).
//!
//! The init builds the sandbox while its caller opens the session at the gate. The caller
//! admits the session once the gate serves it (the gate socket, and the environment and home
//! files that point the agent at it) and confirms it once the gate has the session's start on
//! record; the agent starts then, not before. A session neither admitted nor confirmed is
//! refused, and the init exits without starting anything.
//!
//! The caller's thread writes the admission and the confirmation down the init's pipe itself,
//! as soon as the run has sent the request and decided what the host enforces ([`Entry::open`];
//! what came before that, the run writes). Handed to the run's thread instead, each frame waited
//! for that thread to be woken: with the other CPU busy, a woken thread of the session waited
//! 0.25 to 0.7 ms for a CPU on average (`perf sched`, BENCHMARKS.md, sandbox notes of 2026-12-02
//! 22:05). Measured against that: 0.10 ms off an idle session, and nothing beyond the noise off
//! a busy one (BENCHMARKS.md, sandbox notes of 2026-12-03). The run's thread hears only what it
//! must act on: a refusal (it ends the init), and the confirmation when the session has a
//! timeout (it counts from then) ([`Entry::wake_fd`]).
//!
//! The podman backend needs the admission before `podman run`, and waits for both
//! ([`Entry::wait_confirmed`]).

use std::fs::File;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::error::SandboxError;
use crate::host::Event;
use crate::protocol::{Admitted, Confirmed, write_frame};
use crate::spec::Admission;

/// Creates a session's door: the [`Door`] the caller admits, confirms or refuses the session
/// through, from any thread, and the [`Entry`] the run takes
/// ([`run_admitted`](crate::run_admitted)).
pub fn door() -> std::io::Result<(Door, Entry)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
        wake: Event::new()?,
    });
    Ok((Door(Arc::clone(&shared)), Entry(shared)))
}

/// The caller's side of a session's admission. Each call returns at once: what the init cannot
/// take any more (it failed, or the run ended) is the run's to report. Dropped before it
/// confirmed, it refuses the session.
#[derive(Debug)]
pub struct Door(Arc<Shared>);

/// The run's side of a session's admission.
#[derive(Debug)]
pub struct Entry(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Told of every change, for [`Entry::wait_confirmed`].
    changed: Condvar,
    /// Fired when the run must act: a refusal; a confirmation when the run asked to hear of
    /// it ([`Entry::open`]).
    wake: Event,
}

#[derive(Debug, Default)]
struct State {
    /// Admitted, and not yet written to the init (the run has not opened the door; podman's
    /// run takes it from here).
    admission: Option<Admission>,
    stage: Stage,
    /// Why the session was refused, until the run takes it.
    refusal: Option<SandboxError>,
    /// The init's request pipe and what the run decided the init enforces, once the run has
    /// opened the door; dropped (the init reads end of file) on a refusal or after the
    /// confirmation.
    init: Option<(File, Enforce)>,
    /// Whether the run hears of the confirmation through the eventfd.
    wake_on_confirm: bool,
    /// The first frame the init could not take: it is gone, and its reports say why.
    write_error: Option<std::io::Error>,
    /// The run is over: nothing more is written.
    closed: bool,
}

/// How far the caller has let the session go. Each step is taken once, in this order; a
/// refusal ends it before the confirmation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Stage {
    #[default]
    Waiting,
    Admitted,
    /// Confirmed then.
    Confirmed(Instant),
    Refused,
}

/// What the run decided the init enforces, sent with the admission.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Enforce {
    pub landlock: bool,
    pub seccomp: bool,
}

/// What the run's thread was woken for ([`Entry::event`]).
#[derive(Debug)]
pub(crate) enum DoorEvent {
    /// The session was refused before its confirmation: the init starts nothing, and exits.
    Refused(SandboxError),
    /// Nothing to act on (a confirmation: [`Entry::confirmed_at`] has it).
    Nothing,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// Writes `message` to the init, when the door is open; the first failure is kept.
    fn send(&mut self, message: &impl serde::Serialize) {
        if let Some((pipe, _)) = &mut self.init
            && let Err(error) = write_frame(pipe, message)
        {
            self.write_error.get_or_insert(error);
        }
    }

    /// Writes the admission to the init, when both are there.
    fn send_admission(&mut self) {
        let Some((_, enforce)) = &self.init else {
            return;
        };
        let enforce = *enforce;
        let Some(admission) = self.admission.take() else {
            return;
        };
        self.send(&Admitted {
            admission,
            landlock: enforce.landlock,
            seccomp: enforce.seccomp,
        });
    }

    fn send_confirmation(&mut self) {
        if self.init.is_some() {
            self.send(&Confirmed {});
            // Nothing follows: the pipe's end is of no use to the init any more.
            self.init = None;
        }
    }
}

impl Door {
    /// Admits the session with `admission`: the init prepares the agent's start (writes the
    /// home files, listens on the gate port) and waits for the confirmation. A session is
    /// admitted once; an admission that does not hold (a relative gate socket, a home file
    /// outside `$HOME`) refuses it.
    pub fn admit(&self, admission: Admission) {
        if let Err(error) = admission.validate() {
            self.refuse_with(error);
            return;
        }
        let mut state = self.0.lock();
        if state.stage != Stage::Waiting || state.closed {
            return;
        }
        state.stage = Stage::Admitted;
        state.admission = Some(admission);
        state.send_admission();
        drop(state);
        self.0.changed.notify_all();
    }

    /// Confirms the admitted session (its start is on record): the agent starts. Ignored
    /// before the admission.
    pub fn confirm(&self) {
        let mut state = self.0.lock();
        if state.stage != Stage::Admitted || state.closed {
            return;
        }
        state.stage = Stage::Confirmed(Instant::now());
        state.send_confirmation();
        let wake = state.wake_on_confirm;
        drop(state);
        if wake {
            self.0.wake.fire();
        }
        self.0.changed.notify_all();
    }

    /// Refuses the session (the run fails with [`SandboxError::NotAdmitted`] and `reason`),
    /// unless it was confirmed: the init starts nothing and exits.
    pub fn refuse(&self, reason: impl Into<String>) {
        self.refuse_with(SandboxError::NotAdmitted(reason.into()));
    }

    fn refuse_with(&self, error: SandboxError) {
        let mut state = self.0.lock();
        if matches!(state.stage, Stage::Confirmed(_) | Stage::Refused) || state.closed {
            return;
        }
        state.stage = Stage::Refused;
        state.refusal = Some(error);
        state.admission = None;
        // End of file where the admission or the confirmation would be.
        state.init = None;
        drop(state);
        self.0.wake.fire();
        self.0.changed.notify_all();
    }
}

impl Drop for Door {
    fn drop(&mut self) {
        let admitted = self.0.lock().stage == Stage::Admitted;
        self.refuse(if admitted {
            "the caller ended before it confirmed the session"
        } else {
            "the caller ended before it admitted the session"
        });
    }
}

impl Entry {
    /// An entry for a session admitted and confirmed at once, with `admission`.
    pub fn admitted(admission: &Admission) -> std::io::Result<Entry> {
        let (door, entry) = door()?;
        door.admit(admission.clone());
        door.confirm();
        Ok(entry)
    }

    /// The run has sent the request down `pipe` and decided what the init enforces: writes
    /// what the caller has already said (the admission, the confirmation); from now on the
    /// caller's thread writes it. `wake_on_confirm`: the confirmation wakes the run too
    /// ([`wake_fd`](Self::wake_fd)). A session refused already gets the refusal back (the
    /// pipe is dropped: the init reads end of file).
    pub(crate) fn open(
        &self,
        pipe: File,
        enforce: Enforce,
        wake_on_confirm: bool,
    ) -> Result<(), SandboxError> {
        let mut state = self.0.lock();
        if state.stage == Stage::Refused {
            return Err(take_refusal(&mut state));
        }
        state.init = Some((pipe, enforce));
        state.wake_on_confirm = wake_on_confirm;
        state.send_admission();
        if matches!(state.stage, Stage::Confirmed(_)) {
            state.send_confirmation();
        }
        Ok(())
    }

    /// Waits until the session is confirmed, for its admission (podman's run, which needs it
    /// before the container exists), or refused.
    pub(crate) fn wait_confirmed(&self) -> Result<Admission, SandboxError> {
        let mut state = self.0.lock();
        loop {
            if state.stage == Stage::Refused {
                return Err(take_refusal(&mut state));
            }
            if matches!(state.stage, Stage::Confirmed(_))
                && let Some(admission) = state.admission.take()
            {
                return Ok(admission);
            }
            state = self
                .0
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Readable when the run must look at the door ([`event`](Self::event)).
    pub(crate) fn wake_fd(&self) -> BorrowedFd<'_> {
        self.0.wake.fd()
    }

    /// What the door says, once [`wake_fd`](Self::wake_fd) was readable.
    pub(crate) fn event(&self) -> DoorEvent {
        self.0.wake.clear();
        let mut state = self.0.lock();
        if state.stage == Stage::Refused {
            DoorEvent::Refused(take_refusal(&mut state))
        } else {
            DoorEvent::Nothing
        }
    }

    /// When the session was confirmed: its duration and its timeout count from then.
    pub(crate) fn confirmed_at(&self) -> Option<Instant> {
        match self.0.lock().stage {
            Stage::Confirmed(at) => Some(at),
            Stage::Waiting | Stage::Admitted | Stage::Refused => None,
        }
    }

    /// The first frame the init could not take (it is gone).
    pub(crate) fn write_error(&self) -> Option<std::io::Error> {
        self.0.lock().write_error.take()
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.closed = true;
        state.init = None;
    }
}

/// The refusal, taken (a second look finds the same reason, told once).
fn take_refusal(state: &mut State) -> SandboxError {
    state
        .refusal
        .take()
        .unwrap_or_else(|| SandboxError::NotAdmitted("the session was refused".to_owned()))
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::path::PathBuf;

    use super::*;
    use crate::protocol::read_frame;

    const ENFORCE: Enforce = Enforce {
        landlock: true,
        seccomp: true,
    };

    fn admission(port: u16) -> Admission {
        Admission {
            gate_socket: PathBuf::from("/run/moat-test/gate.sock"),
            gate_port: port,
            env: vec![("HOME".to_owned(), "/home/agent".to_owned())],
            home_files: Vec::new(),
        }
    }

    /// Whether the run's thread would wake (its eventfd is readable now).
    fn woken(entry: &Entry) -> bool {
        let wake = entry.wake_fd();
        let mut fds = [rustix::event::PollFd::new(
            &wake,
            rustix::event::PollFlags::IN,
        )];
        let now = crate::protocol::timespec(std::time::Duration::ZERO);
        rustix::event::poll(&mut fds, Some(&now)).expect("poll") == 1
    }

    /// A pipe standing in for the init's: the run's end, and the init's.
    fn pipe() -> (File, File) {
        let (read, write) = rustix::pipe::pipe().expect("pipe");
        (File::from(write), File::from(read))
    }

    /// What the init reads: the admission's port, whether the confirmation followed, and
    /// whether the pipe then ends (it is closed once nothing more can come).
    fn read_by_init(mut init: File) -> (Option<u16>, bool) {
        let admitted: Option<Admitted> = read_frame(&mut init).expect("admission frame");
        let confirmed: Option<Confirmed> = admitted
            .as_ref()
            .and_then(|_| read_frame(&mut init).expect("confirmation frame"));
        let mut rest = Vec::new();
        init.read_to_end(&mut rest).expect("end of file");
        assert!(rest.is_empty(), "more after the frames: {rest:?}");
        (
            admitted.map(|admitted| admitted.admission.gate_port),
            confirmed.is_some(),
        )
    }

    /// The two frames reach the init in their order whichever comes first: the caller's
    /// admission and confirmation, or the run's opening of the door; and the pipe ends after
    /// them (the run has nothing more to say).
    #[test]
    fn the_init_reads_the_admission_then_the_confirmation_in_every_order() {
        type Step = fn(&Door, &Entry, &mut Option<File>);
        let admit: Step = |door, _, _| door.admit(admission(7070));
        let confirm: Step = |door, _, _| door.confirm();
        let open: Step = |_, entry, pipe| {
            entry
                .open(pipe.take().expect("opened once"), ENFORCE, false)
                .expect("not refused");
        };
        for (name, steps) in [
            ("admit, confirm, open", [admit, confirm, open]),
            ("admit, open, confirm", [admit, open, confirm]),
            ("open, admit, confirm", [open, admit, confirm]),
        ] {
            let (door, entry) = super::door().expect("door");
            let (run_end, init_end) = pipe();
            let mut run_end = Some(run_end);
            for step in steps {
                step(&door, &entry, &mut run_end);
            }
            assert!(entry.confirmed_at().is_some(), "{name}");
            drop(door);
            assert_eq!(read_by_init(init_end), (Some(7070), true), "{name}");
            assert!(entry.write_error().is_none(), "{name}");
        }
    }

    /// A confirmation before the admission is ignored, and so is a second admission: the init
    /// gets the first admission, then the confirmation that follows it.
    #[test]
    fn a_confirmation_needs_an_admission_and_the_first_admission_stands() {
        let (door, entry) = super::door().expect("door");
        let (run_end, init_end) = pipe();
        entry.open(run_end, ENFORCE, false).expect("not refused");
        door.confirm();
        assert!(entry.confirmed_at().is_none());
        door.admit(admission(7070));
        door.admit(admission(8080));
        door.confirm();
        assert_eq!(read_by_init(init_end), (Some(7070), true));
    }

    /// A refusal, or a door dropped before it confirmed, ends the init's pipe where the next
    /// frame would be, and the run hears it with the reason; once confirmed, neither changes
    /// anything.
    #[test]
    fn a_refusal_ends_the_pipe_before_the_confirmation_and_not_after() {
        // Refused after the admission.
        let (door, entry) = super::door().expect("door");
        let (run_end, init_end) = pipe();
        entry.open(run_end, ENFORCE, false).expect("not refused");
        door.admit(admission(7070));
        door.refuse("no record");
        assert!(woken(&entry), "the refusal did not wake the run");
        assert!(
            matches!(entry.event(), DoorEvent::Refused(SandboxError::NotAdmitted(reason)) if reason == "no record")
        );
        door.confirm();
        assert!(entry.confirmed_at().is_none(), "confirmed after a refusal");
        assert_eq!(read_by_init(init_end), (Some(7070), false));

        // Dropped before the admission, before the run opened the door: the run gets the
        // refusal when it opens it, and the init reads end of file at once.
        let (door, entry) = super::door().expect("door");
        let (run_end, init_end) = pipe();
        drop(door);
        assert!(matches!(
            entry.open(run_end, ENFORCE, false),
            Err(SandboxError::NotAdmitted(_))
        ));
        assert_eq!(read_by_init(init_end), (None, false));

        // Confirmed: a refusal after it is no refusal.
        let (door, entry) = super::door().expect("door");
        let (run_end, init_end) = pipe();
        entry.open(run_end, ENFORCE, false).expect("not refused");
        door.admit(admission(7070));
        door.confirm();
        door.refuse("too late");
        drop(door);
        assert!(matches!(entry.event(), DoorEvent::Nothing));
        assert_eq!(read_by_init(init_end), (Some(7070), true));
    }

    /// The confirmation wakes the run only when it asked (a session with a timeout, which
    /// counts from then).
    #[test]
    fn the_confirmation_wakes_the_run_only_when_asked() {
        for wake_on_confirm in [false, true] {
            let (door, entry) = super::door().expect("door");
            let (run_end, _init_end) = pipe();
            entry
                .open(run_end, ENFORCE, wake_on_confirm)
                .expect("not refused");
            door.admit(admission(7070));
            door.confirm();
            assert_eq!(woken(&entry), wake_on_confirm);
        }
    }

    /// podman's run waits for the confirmation and gets the admission; or the refusal.
    #[test]
    fn waiting_for_the_confirmation_gets_the_admission_or_the_refusal() {
        let (door, entry) = super::door().expect("door");
        let caller = std::thread::spawn(move || {
            door.admit(admission(7171));
            door.confirm();
        });
        let admitted = entry.wait_confirmed().expect("confirmed");
        assert_eq!(admitted.gate_port, 7171);
        caller.join().expect("caller");

        let (door, entry) = super::door().expect("door");
        let caller = std::thread::spawn(move || {
            door.admit(admission(7171));
            drop(door);
        });
        assert!(matches!(
            entry.wait_confirmed(),
            Err(SandboxError::NotAdmitted(_))
        ));
        caller.join().expect("caller");
    }

    /// An admission that does not hold refuses the session with what is wrong with it.
    #[test]
    fn an_invalid_admission_refuses_the_session() {
        let (door, entry) = super::door().expect("door");
        let mut invalid = admission(7070);
        invalid.gate_socket = PathBuf::from("relative/gate.sock");
        door.admit(invalid);
        assert!(matches!(
            entry.wait_confirmed(),
            Err(SandboxError::InvalidSpec(_))
        ));
    }
}

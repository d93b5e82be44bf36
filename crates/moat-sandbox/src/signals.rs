//! Which signals to `moat run` end its session, and which belong to the agent.
//!
//! The embedded backend's agent stays in `moat run`'s process group, so when `moat run` runs in
//! the foreground of a terminal the agent is in the terminal's foreground process group too: the
//! terminal sends it Ctrl-C (`SIGINT`) and Ctrl-\ (`SIGQUIT`) itself, as it does `moat run`. An
//! interactive agent takes Ctrl-C to interrupt what it is doing, not to end; so a signal the
//! terminal sent (`si_code == SI_KERNEL`) is left to the agent, and the session ends when the
//! agent exits. The same signals sent by a process (`kill`, a supervisor) reach `moat run`
//! alone, and end the session, as `SIGTERM` (`moat stop`) and `SIGHUP` (the terminal closed) do.
//!
//! A container's agent is not in the terminal's process group (podman proxies signals to the
//! container's init, which is not the agent): there every one of these signals ends the session.

use std::os::fd::{AsRawFd as _, IntoRawFd as _};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::host::Stop;

/// The signals that end a session ([`stop_on_signals`]).
const HANDLED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP];

/// The descriptor the handler fires: a duplicate of the [`Stop`]'s eventfd, never closed (a
/// handler may run until the process exits). -1 until [`stop_on_signals`].
static STOP_EVENT: AtomicI32 = AtomicI32::new(-1);

/// Whether the agent hears the terminal's signals itself ([`stop_on_signals`]).
static AGENT_HEARS_THE_TERMINAL: AtomicBool = AtomicBool::new(false);

/// From now on `SIGTERM`, `SIGHUP`, and `SIGINT` or `SIGQUIT` sent by a process fire `stop`,
/// each unless this process was started with it ignored.
/// `SIGINT` and `SIGQUIT` sent by the terminal fire it too unless `agent_hears_the_terminal`:
/// the agent, in the terminal's foreground process group with this process, got them as well
/// and decides (see the module documentation). Meant to be called once per process: a later
/// call changes `agent_hears_the_terminal`, but the signals still fire the first call's `stop`.
pub fn stop_on_signals(stop: &Stop, agent_hears_the_terminal: bool) -> std::io::Result<()> {
    AGENT_HEARS_THE_TERMINAL.store(agent_hears_the_terminal, Ordering::Relaxed);
    if STOP_EVENT.load(Ordering::Acquire) < 0 {
        let event = rustix::io::dup(stop.event())?;
        let raw = event.as_raw_fd();
        if STOP_EVENT
            .compare_exchange(-1, raw, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // Kept open for the life of the process: the handler writes to it.
            let _ = event.into_raw_fd();
        }
    }
    for signal in HANDLED {
        // A signal this process was started with ignored stays ignored, as shells and `nohup`
        // mean it: `nohup moat run …` outlives its terminal, and a background job of a script
        // is not ended by the terminal's Ctrl-C.
        if ignored(signal)? {
            continue;
        }
        #[allow(unsafe_code)]
        // SAFETY: an all-zero sigaction is a valid value of this plain C struct; the fields
        // set are the handler (an `extern "C"` function of the three-argument form, as
        // SA_SIGINFO requires), the flags, and an emptied mask.
        let result = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if result != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether `signal`'s disposition in this process is to ignore it.
fn ignored(signal: libc::c_int) -> std::io::Result<bool> {
    #[allow(unsafe_code)]
    // SAFETY: with a null new action, sigaction only writes the current one into `current`, a
    // live, all-zero (valid) sigaction.
    let (result, current) = unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        let result = libc::sigaction(signal, std::ptr::null(), &mut current);
        (result, current)
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(current.sa_sigaction == libc::SIG_IGN)
}

/// Whether a signal that arrived with `code` (its `si_code`) ends the session.
fn ends_the_session(
    signal: libc::c_int,
    code: libc::c_int,
    agent_hears_the_terminal: bool,
) -> bool {
    let from_the_terminal = code == libc::SI_KERNEL;
    let the_agents = matches!(signal, libc::SIGINT | libc::SIGQUIT);
    !(from_the_terminal && the_agents && agent_hears_the_terminal)
}

/// The handler: only atomics and `write(2)`, which are async-signal-safe.
extern "C" fn on_signal(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    #[allow(unsafe_code)]
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo for the signal being handled.
    let code = unsafe { (*info).si_code };
    if !ends_the_session(
        signal,
        code,
        AGENT_HEARS_THE_TERMINAL.load(Ordering::Relaxed),
    ) {
        return;
    }
    let event = STOP_EVENT.load(Ordering::Acquire);
    if event < 0 {
        return;
    }
    let one = 1u64.to_ne_bytes();
    #[allow(unsafe_code)]
    // SAFETY: errno is this thread's, saved and restored around `write(2)` so the interrupted
    // code never sees it change; `one` is a live 8-byte buffer, and `event` an eventfd this
    // module keeps open for the life of the process.
    unsafe {
        let errno = libc::__errno_location();
        let saved = *errno;
        libc::write(event, one.as_ptr().cast(), one.len());
        *errno = saved;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_s_interrupt_and_quit_are_the_agent_s_when_it_hears_the_terminal() {
        for signal in [libc::SIGINT, libc::SIGQUIT] {
            assert!(!ends_the_session(signal, libc::SI_KERNEL, true));
            // Sent by a process, or with an agent that does not hear the terminal: it ends.
            assert!(ends_the_session(signal, libc::SI_USER, true));
            assert!(ends_the_session(signal, libc::SI_KERNEL, false));
        }
        for signal in [libc::SIGTERM, libc::SIGHUP] {
            for code in [libc::SI_KERNEL, libc::SI_USER] {
                assert!(ends_the_session(signal, code, true));
            }
        }
    }
}

//! The `moat` binary's memory allocator, chosen once per process, at its first allocation.
//!
//! A long-lived `moat` (the gate) allocates a little on every request from several threads,
//! which mimalloc does cheaper than the C library's malloc (measured on the gate's tarball route
//! here: 46.5k–47.8k against 43.1k–43.7k requests/s). A session's `moat run` lives a few
//! milliseconds, and so does the sandbox init it forks: there every page touched at start-up
//! costs more than any allocation, and mimalloc touches more of them (its arenas, bitmaps and
//! per-size pages). With the C library's malloc a `moat run -- true` took 534 page faults
//! instead of 773 and 5.69 ms instead of 6.30 (median of 400 interleaved runs each).
//!
//! So a process whose first argument names a session ([`SESSION_COMMANDS`]) uses the C library's
//! malloc, and every other process mimalloc. The choice is made at the first allocation, from
//! `/proc/self/cmdline` read into a buffer on the stack, and never changes: every block is
//! freed by the allocator that allocated it. Without `/proc`, mimalloc. mimalloc is built
//! without transparent huge pages (its `no_thp` feature): with them, the first touch of its
//! arena zeroes a 2 MiB page, which every `moat` process paid at start-up.
//!
//! mimalloc is also built without its load-time constructor (`MI_PRIM_HAS_PROCESS_ATTACH`, set
//! in `.cargo/config.toml`), which started it in every process, `moat run` included, before
//! `main`: its options, its page map, the reads of `/proc/sys/vm/overcommit_memory` and of the
//! transparent huge pages setting, 13 to 16 page faults (`moat run --help`). A process that
//! chooses mimalloc starts it here instead ([`start_mimalloc`]), before its first allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

use rustix::fs::{Mode, OFlags};

/// First arguments of the short-lived processes that use the C library's malloc: `moat run`
/// and the sandbox init started as a program.
const SESSION_COMMANDS: [&str; 2] = ["run", crate::protocol::INIT_SUBCOMMAND];

const UNDECIDED: u8 = 0;
const MIMALLOC: u8 = 1;
const SYSTEM: u8 = 2;

static CHOSEN: AtomicU8 = AtomicU8::new(UNDECIDED);

/// The global allocator of the `moat` binary: the C library's malloc in a process whose first
/// argument is `run` or `__sandbox-init` (a session's short-lived `moat run` and its init),
/// mimalloc in every other (the gate), chosen at the process's first allocation and never
/// changed. `#[global_allocator] static ALLOCATOR: moat_sandbox::Allocator = moat_sandbox::Allocator;`
#[derive(Debug, Clone, Copy)]
pub struct Allocator;

impl Allocator {
    /// Whether this process uses the C library's malloc; decides on the first call.
    #[inline]
    fn system(self) -> bool {
        match CHOSEN.load(Ordering::Relaxed) {
            SYSTEM => true,
            MIMALLOC => false,
            _ => decide(),
        }
    }
}

/// The process's first allocation: choose the allocator ([`choose`]), start mimalloc if it is
/// the one, and say whether the C library's malloc is. Kept out of line, off the path every
/// later allocation takes.
#[cold]
#[inline(never)]
fn decide() -> bool {
    let chosen = choose();
    // Before `main` this process has one thread; should two ever race here, the first choice
    // stands for both.
    match CHOSEN.compare_exchange(UNDECIDED, chosen, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => {
            if chosen == MIMALLOC {
                start_mimalloc();
            }
            chosen == SYSTEM
        }
        Err(first) => first == SYSTEM,
    }
}

#[allow(unsafe_code)]
// SAFETY: the declarations match mimalloc's `void _mi_auto_process_init(void)` and
// `bool _mi_preloading(void)` (`include/mimalloc/internal.h` of the version in Cargo.lock),
// linked in statically with the `mimalloc` crate.
unsafe extern "C" {
    /// mimalloc's process start-up, which its load-time constructor runs in every process
    /// unless mimalloc is built with `MI_PRIM_HAS_PROCESS_ATTACH` (`.cargo/config.toml`).
    fn _mi_auto_process_init();
    /// True until mimalloc's process start-up has run.
    fn _mi_preloading() -> bool;
}

/// Starts mimalloc in a process that chose it, before its first allocation, unless its
/// constructor already did (a build without `MI_PRIM_HAS_PROCESS_ATTACH`).
fn start_mimalloc() {
    #[allow(unsafe_code)]
    // SAFETY: called once per process (by the thread whose choice stood), before any mimalloc
    // allocation; the start-up sets up mimalloc's process state and allocates from the OS only.
    unsafe {
        if _mi_preloading() {
            _mi_auto_process_init();
        }
    }
}

/// Reads this process's first argument without allocating.
#[cold]
fn choose() -> u8 {
    let Ok(file) = rustix::fs::open(
        c"/proc/self/cmdline",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return MIMALLOC;
    };
    let mut buffer = [0u8; 64];
    let length = rustix::io::read(&file, &mut buffer).unwrap_or(0);
    let mut arguments = buffer[..length].split(|&byte| byte == 0);
    let _program = arguments.next();
    match arguments.next() {
        Some(first) if is_session_command(first) => SYSTEM,
        _ => MIMALLOC,
    }
}

/// Whether `first`, a process's first argument, names a session ([`SESSION_COMMANDS`]).
fn is_session_command(first: &[u8]) -> bool {
    SESSION_COMMANDS
        .iter()
        .any(|command| command.as_bytes() == first)
}

#[allow(unsafe_code)]
// SAFETY: every method forwards, with the caller's own guarantees, to one of two allocators,
// the same one for the whole life of the process (chosen at the first call and never changed),
// so a block is always freed or reallocated by the allocator that allocated it.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.system() {
            // SAFETY: forwarded as is (see the impl's comment).
            unsafe { System.alloc(layout) }
        } else {
            // SAFETY: forwarded as is (see the impl's comment).
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if self.system() {
            // SAFETY: forwarded as is (see the impl's comment).
            unsafe { System.alloc_zeroed(layout) }
        } else {
            // SAFETY: forwarded as is (see the impl's comment).
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if self.system() {
            // SAFETY: forwarded as is; the block came from this same allocator.
            unsafe { System.dealloc(pointer, layout) }
        } else {
            // SAFETY: forwarded as is; the block came from this same allocator.
            unsafe { mimalloc::MiMalloc.dealloc(pointer, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.system() {
            // SAFETY: forwarded as is; the block came from this same allocator.
            unsafe { System.realloc(pointer, layout, new_size) }
        } else {
            // SAFETY: forwarded as is; the block came from this same allocator.
            unsafe { mimalloc::MiMalloc.realloc(pointer, layout, new_size) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_and_the_init_are_session_commands_and_nothing_else() {
        assert!(is_session_command(b"run"));
        assert!(is_session_command(b"__sandbox-init"));
        for other in [&b"gate"[..], b"runs", b"--data-dir", b"", b"audit"] {
            assert!(!is_session_command(other), "{other:?}");
        }
    }

    /// A process that has not chosen mimalloc has not started it: no load-time constructor
    /// did (it would in every `moat run`, before `main`).
    #[test]
    fn mimalloc_is_not_started_before_a_process_chooses_it() {
        // This test binary's allocator is the standard library's: nothing here chooses one.
        #[allow(unsafe_code)]
        // SAFETY: reads a flag; see the declaration.
        let preloading = unsafe { _mi_preloading() };
        assert!(
            preloading,
            "mimalloc was started at load time: is MI_PRIM_HAS_PROCESS_ATTACH set for the C build?"
        );
    }

    #[test]
    fn a_test_process_chooses_mimalloc_from_its_own_command_line() {
        // The test binary's first argument is a test filter or flag, never `run`.
        assert_eq!(choose(), MIMALLOC);
    }
}

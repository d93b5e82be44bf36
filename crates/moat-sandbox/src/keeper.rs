//! A process that holds `moat run`'s address space while `moat run` exits, so that whoever waits
//! for `moat run` hears its exit without waiting for its memory to be unmapped.
//!
//! A process's exit unmaps its address space before its parent is told (`exit_mm` comes before
//! `exit_notify` in the kernel's `do_exit`), unless another process still uses it: then the
//! last one to let go unmaps it. `moat run` is a 90 MB static binary, and its exit spent most
//! of its time unmapping the pages of it that were mapped (`__mmput`, 976 of 1,119 samples in
//! `do_exit`; BENCHMARKS.md, sandbox notes of 2026-12-02): 0.36 ms from its `exit_group` to the
//! caller's `wait4` (median of 30 traced sessions), after the agent's exit.
//!
//! [`keep_address_space`] starts the keeper: a child made by `clone` with `CLONE_VM`, which
//! shares this process's memory (not its descriptors, not its thread group) and does nothing
//! but wait, all signals blocked, for the end of a pipe whose other end only this process
//! holds. This process's exit closes that end after it let go of its memory; the keeper then
//! exits and unmaps it, after the caller was told.
//!
//! The keeper closes the descriptors it was given first thing, so that no pipe of this
//! process's stays open in it (a caller reading this process's output sees its end when this
//! process exits), but those it is asked to hold: they close as the keeper exits, after this
//! process has. `moat run` has it hold its connection to the gate: the gate, woken by the
//! connection's end, took the CPU of the exiting `moat run` for 0.13 ms in a traced session.
//!
//! The unmapping costs the same CPU time as before; it only comes after the caller has heard
//! the exit. Sessions spaced 30 ms apart took 6.33 ms with a keeper against 6.77 ms without
//! (medians of 300, alternated); back to back, where each session's unmapping falls on the
//! next one, 6.92 against 7.00 ms (600 each).
//!
//! The keeper runs on a stack of its own in memory it shares with this process, so it runs
//! only system calls that touch nothing of this process's: no allocation, no thread-local
//! state (the C library's `errno` among it: the read is rustix's, which does not set it, and
//! the other calls cannot fail).

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd, OwnedFd};

use rustix::pipe::PipeFlags;

use crate::vm_child::{ChildStack, clone_sharing_memory};

/// The keeper's stack: it makes a handful of system calls.
const STACK: usize = 16 * 1024;

/// How many descriptors the keeper can hold besides its pipe.
pub(crate) const MOST_HELD: usize = 4;

/// What the keeper keeps open: the read end of its pipe, and every descriptor it does not
/// close (the pipe and those it holds), sorted. Written at the bottom of the keeper's stack
/// mapping, which the keeper's stack, from the top, never reaches.
#[derive(Clone, Copy)]
#[repr(C)]
struct Kept {
    pipe: libc::c_int,
    count: usize,
    open: [libc::c_int; MOST_HELD + 1],
}

/// The end of the keeper's pipe this process holds; the keeper exits once it is closed. Keep it
/// until this process exits: dropped earlier, it lets the keeper go, and this process unmaps its
/// memory itself, as it would without one.
#[derive(Debug)]
pub struct AddressSpaceKeeper {
    _end: OwnedFd,
    pid: rustix::process::Pid,
}

impl AddressSpaceKeeper {
    /// The keeper's pid: a child of this process that sends no signal when it exits (wait for
    /// it with `__WALL`).
    pub fn pid(&self) -> rustix::process::Pid {
        self.pid
    }
}

/// Starts a process that holds this one's address space until this one has exited, and
/// `hold` (at most four descriptors) until it exits itself (module doc). Call it from a process
/// that may have threads: the keeper only makes system calls.
pub fn keep_address_space(hold: &[BorrowedFd<'_>]) -> io::Result<AddressSpaceKeeper> {
    if hold.len() > MOST_HELD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the keeper holds at most {MOST_HELD} descriptors"),
        ));
    }
    let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
    let mut kept = Kept {
        pipe: read.as_raw_fd(),
        count: 1 + hold.len(),
        open: [-1; MOST_HELD + 1],
    };
    kept.open[0] = read.as_raw_fd();
    for (slot, fd) in kept.open[1..].iter_mut().zip(hold) {
        *slot = fd.as_raw_fd();
    }
    kept.open[..kept.count].sort_unstable();
    let stack = ChildStack::new(STACK)?;
    #[allow(unsafe_code)]
    // SAFETY: `Kept` is written at the bottom of the stack's mapping before the clone and only
    // read after it; the child's stack grows from the top down and never reaches it. The child
    // runs only system calls that touch none of this process's memory but its own mapping
    // (module doc); the descriptors in `kept` stay open in this process until clone has copied
    // the descriptor table into the child. Exit signal 0: this process is not signalled when the
    // child exits. The stack is never unmapped: the keeper runs on it until it exits, and the
    // memory goes with the address space.
    let child = unsafe {
        stack.bottom().cast::<Kept>().write(kept);
        clone_sharing_memory(keeper, &stack, 0, stack.bottom())?
    };
    stack.leak();
    let pid = rustix::process::Pid::from_raw(child)
        .ok_or_else(|| io::Error::other("clone gave no pid"))?;
    drop(read);
    Ok(AddressSpaceKeeper { _end: write, pid })
}

/// The keeper: closes every descriptor but those its [`Kept`] names, waits for end of file on
/// its pipe (this process's exit), and exits, which closes the held ones.
extern "C" fn keeper(argument: *mut c_void) -> libc::c_int {
    #[allow(unsafe_code)]
    // SAFETY: `argument` is the bottom of the keeper's own mapping, where `Kept` was written
    // before the clone.
    let kept = unsafe { argument.cast::<Kept>().read() };
    #[allow(unsafe_code)]
    // SAFETY: the name is a static C string; PR_SET_NAME with a valid pointer cannot fail. It
    // names the keeper in `ps -e` and `top` (its command line is `moat run`'s: the memory holding
    // it is shared).
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"moat-keeper".as_ptr());
    }
    // The gaps between the kept descriptors (sorted, none negative), each closed unless empty.
    let mut first: libc::c_uint = 0;
    for &fd in &kept.open[..kept.count] {
        let fd = fd as libc::c_uint;
        if first < fd {
            close_range(first, fd - 1);
        }
        first = fd + 1;
    }
    close_range(first, libc::c_uint::MAX);
    #[allow(unsafe_code)]
    // SAFETY: the read end of the pipe, open in the keeper's table until it exits.
    let pipe = unsafe { BorrowedFd::borrow_raw(kept.pipe) };
    let mut byte = [0u8; 1];
    // Nothing is ever written: this returns at end of file, or on an error.
    while let Err(rustix::io::Errno::INTR) = rustix::io::read(pipe, &mut byte) {}
    #[allow(unsafe_code)]
    // SAFETY: ends this process (the keeper) only; `_exit` runs no handler and flushes nothing.
    unsafe {
        libc::_exit(0)
    }
}

/// `close_range(first, last, 0)` in the keeper's own descriptor table; `first ≤ last`, so it
/// cannot fail and the C library's wrapper leaves `errno` alone.
fn close_range(first: libc::c_uint, last: libc::c_uint) {
    #[allow(unsafe_code)]
    // SAFETY: a system call with no memory arguments on the calling process's own table (a
    // copy: no CLONE_FILES).
    unsafe {
        libc::syscall(libc::SYS_close_range, first, last, 0);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::os::fd::AsFd as _;

    use super::*;

    /// `kcmp`'s type for comparing two processes' address spaces (`linux/kcmp.h`).
    const KCMP_VM: libc::c_int = 1;

    /// Waits for the keeper `pid` to exit (it signals no one: `__WALL`); its exit status.
    fn reap(pid: rustix::process::Pid) -> libc::c_int {
        let mut status = 0;
        #[allow(unsafe_code)]
        // SAFETY: `status` is a live c_int waitpid writes into.
        let reaped =
            unsafe { libc::waitpid(pid.as_raw_nonzero().get(), &mut status, libc::__WALL) };
        assert_eq!(
            reaped,
            pid.as_raw_nonzero().get(),
            "{}",
            io::Error::last_os_error()
        );
        status
    }

    #[test]
    fn the_keeper_shares_this_processs_memory_and_exits_when_let_go() {
        let keeper = keep_address_space(&[]).expect("keeper");
        let pid = keeper.pid();
        #[allow(unsafe_code)]
        // SAFETY: kcmp takes two pids and two unused integers; it reads no memory.
        let same = unsafe {
            libc::syscall(
                libc::SYS_kcmp,
                std::process::id(),
                pid.as_raw_nonzero().get(),
                KCMP_VM,
                0,
                0,
            )
        };
        assert_eq!(same, 0, "the keeper has an address space of its own");
        drop(keeper);
        let status = reap(pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status:#x}"
        );
    }

    /// Whether `fd` can be read (here: a pipe whose every write end is closed) within
    /// `seconds`: a bound on a wait, not a measure.
    fn readable_within(fd: &OwnedFd, seconds: u64) -> bool {
        let mut ready = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
        let limit = crate::protocol::timespec(std::time::Duration::from_secs(seconds));
        rustix::event::poll(&mut ready, Some(&limit)).expect("poll") == 1
    }

    /// The keeper lets go of every descriptor it was given but its pipe and those it holds; a
    /// held one stays open as long as the keeper lives, though this process closed its own, and
    /// closes as the keeper exits.
    #[test]
    fn the_keeper_holds_only_what_it_is_asked_to() {
        let (other_read, other_write) = rustix::pipe::pipe().expect("pipe");
        let (read, write) = rustix::pipe::pipe().expect("pipe");
        let keeper = keep_address_space(&[write.as_fd()]).expect("keeper");
        drop(other_write);
        drop(write);
        // The keeper closes all it does not hold before it waits: once the other pipe ends,
        // the held one would have ended too, had it not been held.
        assert!(
            readable_within(&other_read, 30),
            "the keeper kept a descriptor it was not asked to hold"
        );
        assert!(
            !readable_within(&read, 0),
            "the write end closed while the keeper held it"
        );
        let pid = keeper.pid();
        drop(keeper);
        reap(pid);
        let mut pipe = std::fs::File::from(read);
        let mut buffer = [0u8; 1];
        assert_eq!(pipe.read(&mut buffer).expect("read"), 0);
    }

    #[test]
    fn the_keeper_holds_at_most_its_share() {
        let (_read, write) = rustix::pipe::pipe().expect("pipe");
        let many = vec![write.as_fd(); MOST_HELD + 1];
        assert!(keep_address_space(&many).is_err());
    }
}

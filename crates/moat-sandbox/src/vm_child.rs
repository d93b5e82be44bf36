//! A child process that shares this process's memory (`clone` with `CLONE_VM`), on a stack of
//! its own: the agent's process until its `execve` ([`crate::agent`]) and `moat run`'s keeper
//! ([`crate::keeper`]). Such a child runs only code that touches none of this process's memory
//! but what it is handed and its own stack: no allocation, no handler of this process's.

use std::ffi::c_void;
use std::io;

/// The child's stack: an anonymous mapping, unmapped when this value drops ([`leak`](Self::leak)
/// keeps it for a child that outlives the caller's frame).
pub(crate) struct ChildStack {
    mapping: *mut c_void,
    size: usize,
}

impl ChildStack {
    /// A read-write stack of `size` bytes (a multiple of the page size).
    pub(crate) fn new(size: usize) -> io::Result<ChildStack> {
        #[allow(unsafe_code)]
        // SAFETY: an anonymous private mapping, read-write, that nothing else refers to; it is
        // unmapped when this value drops, or never (`leak`).
        let mapping = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                size,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )?
        };
        Ok(ChildStack { mapping, size })
    }

    /// The lowest address of the mapping, which the stack, growing down from the top, reaches
    /// last: room for what the child is handed.
    pub(crate) fn bottom(&self) -> *mut c_void {
        self.mapping
    }

    /// The top of the stack: stacks grow down.
    fn top(&self) -> *mut c_void {
        #[allow(unsafe_code)]
        // SAFETY: one past the end of the mapping, which `new` made `size` bytes long.
        unsafe {
            self.mapping.cast::<u8>().add(self.size).cast()
        }
    }

    /// Keeps the mapping for as long as the address space lives: for a child that runs on it
    /// after the caller has returned.
    pub(crate) fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        #[allow(unsafe_code)]
        // SAFETY: the mapping `new` made; whoever drops it has seen the child done with it
        // (executed or exited).
        unsafe {
            let _ = rustix::mm::munmap(self.mapping, self.size);
        }
    }
}

/// Starts `child(argument)` with `clone(CLONE_VM | flags)` on `stack`; the child's pid. Every
/// signal is blocked around the clone (the raw call: the C library's `sigprocmask` keeps two
/// of its own unblocked), so the child starts with all of them blocked and runs no handler of
/// this process's on its stack. With `CLONE_VFORK` this returns once the child has executed or
/// exited.
///
/// # Safety
/// `child` touches nothing of this process's memory but `argument`, what it points at and its
/// own stack, and all of that outlives the child's use of it; `stack` stays mapped as long as
/// the child runs on it.
#[allow(unsafe_code)]
pub(crate) unsafe fn clone_sharing_memory(
    child: extern "C" fn(*mut c_void) -> libc::c_int,
    stack: &ChildStack,
    flags: libc::c_int,
    argument: *mut c_void,
) -> io::Result<libc::pid_t> {
    let all = !0u64;
    let mut previous = 0u64;
    // SAFETY: `all` and `previous` are live masks; the clone's contract is the caller's.
    unsafe {
        set_signal_mask(&raw const all, &raw mut previous);
        let pid = libc::clone(child, stack.top(), libc::CLONE_VM | flags, argument);
        let error = io::Error::last_os_error();
        set_signal_mask(&raw const previous, std::ptr::null_mut());
        if pid < 0 { Err(error) } else { Ok(pid) }
    }
}

/// `rt_sigprocmask(SIG_SETMASK, set, previous)` on the calling thread, every signal the kernel
/// has (the C library's `sigprocmask` leaves its own two out).
///
/// # Safety
/// `set` points at a live mask; `previous` is null or points at one to write.
#[allow(unsafe_code)]
pub(crate) unsafe fn set_signal_mask(set: *const u64, previous: *mut u64) {
    // SAFETY: the caller's pointers; 8 is the kernel's sigset size.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            set,
            previous,
            8,
        );
    }
}

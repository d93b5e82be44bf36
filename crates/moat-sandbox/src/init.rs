//! The sandbox side: the init (pid 1 of the sandbox's namespaces) and the agent. In a
//! container (the podman backend) the init is already pid 1 of the container's namespaces: it
//! skips the namespaces and the new root and goes straight to the bridge and the agent's
//! confinement ([`container_init`]).

use std::ffi::CStr;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::{AsFd as _, FromRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, mpsc};

use rustix::io::FdFlags;
use rustix::process::{Pid, WaitOptions};
use rustix::thread::UnshareFlags;

use crate::agent::AgentCommand;
use crate::bridge;
use crate::confine::Confinement;
use crate::forked::Placement;
use crate::protocol::{
    Admitted, Confirmed, GATE_DIR_INSIDE, GATE_SOCKET_INSIDE, REPORT_FD, Report, Reporter, Request,
    SPEC_FD, read_frame,
};
use crate::rootfs;
use crate::spec::{ExitStatus, ResourceUsage, Spec};

/// How long the init waits, once it has reported the agent's exit, for the host to close its
/// end of the report pipe before it exits anyway ([`Reporter::wait_until_heard`]).
const HEARD_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Exit code of the init when the sandbox could not be built (the report says why).
const SETUP_FAILED: i32 = 125;

/// Entry point of the in-sandbox side, reached as `moat __sandbox-init`: executed by
/// [`run`](crate::run) as pid 1 of new user and pid namespaces, the host's ids already mapped
/// to root (`InitProcess::spawn`), or as a container's entrypoint by the podman backend.
///
/// Call it first thing in `main`, before any thread starts: it enters namespaces, which a
/// multi-threaded process cannot do. It reads its request and then its admission from
/// [`SPEC_FD`] and reports on [`REPORT_FD`]; started any other way it exits with code 125.
pub fn init_main() -> ! {
    let Some((mut spec, reporter)) = adopt_descriptors() else {
        exit_now(SETUP_FAILED)
    };
    let request = read_request(&mut spec, &reporter);
    let result = if request.container {
        container_init(request.spec, spec, &reporter)
    } else {
        enter_sandbox(None, None)
            .and_then(|helper| namespace_init(request.spec, spec, helper, &reporter))
    };
    exit_with(result, reporter)
}

/// The init forked at the start of `moat run` ([`InitProcess::fork`]), already pid 1 of a new
/// pid namespace and in the user namespace that owns it. It maps `host_ids` (the host's uid
/// and gid) to root there, enters the other namespaces and prepares the new root while it
/// waits for its request ([`enter_sandbox`]): neither depends on the request (every embedded
/// session gets the same namespaces and the same `/usr`, `/etc`, `/tmp` and `/dev`), and they
/// are the longest steps of building the sandbox: done now, they overlap the host reading its
/// configuration.
///
/// [`InitProcess::fork`]: crate::InitProcess::fork
pub(crate) fn forked_init_main(host_ids: (u32, u32), placement: Option<Placement>) -> ! {
    let Some((mut spec, reporter)) = adopt_descriptors() else {
        exit_now(SETUP_FAILED)
    };
    let entered = enter_sandbox(Some(host_ids), placement.map(|placement| placement.parent));
    let request = read_request(&mut spec, &reporter);
    // The CPUs of the process that forked this one, which placed it on the others until now
    // (see `Placement`), taken back before anything the agent inherits is made. This fails only
    // if the CPUs this process may use changed since the fork; the agent then gets those left
    // to the init, which is no reason to refuse the session.
    if let Some(placement) = placement {
        let _ = rustix::thread::sched_setaffinity(None, &placement.inherited);
    }
    let result = if request.container {
        Err("a forked init cannot serve a container".to_owned())
    } else {
        entered.and_then(|helper| namespace_init(request.spec, spec, helper, &reporter))
    };
    exit_with(result, reporter)
}

/// Ends this process with `code`, at once, without the C library's exit handlers or Rust's
/// clean-up (nothing buffered is flushed: write nothing to stdout before). An init has nothing
/// buffered (its reports are written as they happen); a forked one would run the handlers of
/// the program it was forked from, and in pid 1 they would race with the bridge threads, still
/// running at its end. `moat run`'s quick end has written all it had to.
pub fn exit_now(code: i32) -> ! {
    #[allow(unsafe_code)]
    // SAFETY: `_exit` takes no pointer and does not return; it ends every thread of the
    // process, and the kernel releases what the process held.
    unsafe {
        libc::_exit(code)
    }
}

/// Reads the request from `spec`; exits when there is none.
fn read_request(spec: &mut std::fs::File, reporter: &Reporter) -> Request {
    match read_frame::<Request>(spec) {
        Ok(Some(request)) => request,
        // The host went away (or `moat run` ended) before it described a session.
        Ok(None) => exit_now(SETUP_FAILED),
        Err(error) => {
            reporter.send(&Report::Failed {
                message: format!("could not read the sandbox spec: {error}"),
            });
            exit_now(SETUP_FAILED)
        }
    }
}

/// Exits with the code of an init that ran, or reports why it could not and exits 125. The
/// report pipe is closed first: the host's reader is done as this process begins to exit, not
/// once the kernel has torn down its memory and namespaces, which the host need not wait for.
fn exit_with(result: Result<i32, String>, reporter: Reporter) -> ! {
    let code = match result {
        Ok(code) => code,
        Err(message) => {
            reporter.send(&Report::Failed { message });
            SETUP_FAILED
        }
    };
    drop(reporter);
    exit_now(code)
}

/// Takes ownership of the two descriptors `run` placed: the request and admission come down
/// the first, reports go up the second.
fn adopt_descriptors() -> Option<(std::fs::File, Reporter)> {
    for fd in [SPEC_FD, REPORT_FD] {
        #[allow(unsafe_code)]
        // SAFETY: the descriptor number is only borrowed for this fcntl, which fails cleanly
        // (EBADF) when the descriptor is not open.
        let open =
            rustix::io::fcntl_getfd(unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) }).is_ok();
        if !open {
            return None;
        }
    }
    #[allow(unsafe_code)]
    // SAFETY: both descriptors are open (checked above), were placed by `run` for this process
    // alone, and nothing else in this process owns them.
    let (spec_fd, report_fd) = unsafe {
        (
            OwnedFd::from_raw_fd(SPEC_FD),
            OwnedFd::from_raw_fd(REPORT_FD),
        )
    };
    // Nothing the agent runs may inherit the report channel or any other stray descriptor.
    rustix::io::fcntl_setfd(&spec_fd, FdFlags::CLOEXEC).ok()?;
    rustix::io::fcntl_setfd(&report_fd, FdFlags::CLOEXEC).ok()?;
    #[allow(unsafe_code)]
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only marks descriptors ≥ 5 close-on-exec; it
    // closes nothing, so no owner in this process is invalidated.
    unsafe {
        libc::close_range(
            5,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        );
    }
    Some((std::fs::File::from(spec_fd), Reporter::new(report_fd)))
}

/// Waits for the session's admission; `None` when the host refused the session (closed the
/// pipe).
fn admission(pipe: &mut std::fs::File) -> Result<Option<Admitted>, String> {
    read_frame::<Admitted>(pipe).map_err(|error| format!("could not read the admission: {error}"))
}

/// Waits for the confirmation that the agent may start, the last frame on the pipe, and closes
/// it; false when the host refused the session (closed the pipe).
fn confirmed(mut pipe: std::fs::File) -> Result<bool, String> {
    read_frame::<Confirmed>(&mut pipe)
        .map(|confirmed| confirmed.is_some())
        .map_err(|error| format!("could not read the confirmation: {error}"))
}

fn fail(what: &str) -> impl FnOnce(rustix::io::Errno) -> String + '_ {
    move |error| format!("{what}: {error}")
}

/// What an embedded sandbox's init does before it builds the session's root: it is pid 1 of
/// new pid and user namespaces (the host's `clone3`, see [`crate::InitProcess`]); it maps the
/// host's ids to root there unless that was done before an `execve` (`map`), enters new mount,
/// IPC and UTS namespaces, starts making the network namespace on a thread of its own
/// ([`Helper`]), and begins the new root with what every session's has
/// ([`rootfs::prepare`]). The cgroup namespace waits for the request ([`namespace_init`]).
/// `thread_cpus`: where the thread goes, off the init's CPU (the forked init's parent's CPU, see
/// [`Placement`]); `None`: where the kernel puts it.
fn enter_sandbox(
    map: Option<(u32, u32)>,
    thread_cpus: Option<rustix::thread::CpuSet>,
) -> Result<Helper, String> {
    if !rustix::process::getpid().is_init() {
        return Err(
            "the sandbox init must be started by moat run, as pid 1 of a new pid namespace"
                .to_owned(),
        );
    }
    if let Some(host_ids) = map {
        map_to_root(host_ids)?;
    }
    let namespaces = UnshareFlags::NEWNS | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    #[allow(unsafe_code)]
    // SAFETY: this process is single-threaded (a fresh clone of a single-threaded process, or
    // an init executed moments ago), so no other thread can observe the namespace change. A
    // new mount namespace needs that: it takes a file-system context of its own, which
    // threads share.
    unsafe { rustix::thread::unshare_unsafe(namespaces) }
        .map_err(fail("could not create mount, ipc and uts namespaces"))?;
    let helper = Helper::start(thread_cpus);
    rootfs::prepare()?;
    Ok(helper)
}

/// The init's second thread, which takes two slow steps off the init's path.
///
/// First, the session's network namespace, made while the init mounts the new root: the
/// kernel takes about 0.45 ms to set one up (`unshare(CLONE_NEWNET)` here, median of 300; the
/// mount, IPC and UTS namespaces together take 0.07 ms), which is then off the init's path
/// when another CPU is free. Started on the init's CPU, the thread took the init's place there
/// for as long as it ran (traced): it moves to another CPU first. It makes the namespace (it
/// alone enters it), brings its `lo` up and opens it (`SIOCGSKNS` on the socket that raised
/// `lo`: no path, while the init moves its root), and hands it over; the init enters it
/// ([`Network::enter`]) once the root is built, its confinement begun and its home files
/// written, before it binds the gate's port or makes anything the agent inherits.
///
/// When no CPU is free (sessions back to back, the last one's teardown still running), the
/// thread may not even have started when the root is built, and the init waited for it:
/// whichever of the two comes first makes the namespace (`claimed`), so the init never waits
/// for a thread that has not begun, and makes it itself as it did before. Against the init
/// that made it itself (2026-12-02, `moat run -- true`): 6.64 against 6.82 ms in 1,500
/// alternated rounds, 6.47 against 6.60 ms back to back (20 alternated blocks of 200 sessions
/// each). In 300 traced sessions the thread made it 299 times. Where no thread can start, the
/// init makes it.
///
/// Then, once the init has pivoted into the new root, the thread detaches the old one
/// ([`rootfs::OldRoot`]), which waits for an expedited RCU grace period
/// (0.03 to 1.2 ms in traces of single sessions), while the init goes on with the Landlock
/// rules, the home files and the agent's command. The agent starts only once that is done
/// ([`Detaching::wait`]).
struct Helper {
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    claimed: Arc<AtomicBool>,
    /// The namespace the thread made; `None` when the init claimed it first.
    network: mpsc::Receiver<Result<Option<OwnedFd>, String>>,
    /// Where the init hands the old root to the thread, once it has pivoted.
    old_root: mpsc::SyncSender<rootfs::OldRoot>,
}

impl Helper {
    fn start(cpus: Option<rustix::thread::CpuSet>) -> Helper {
        let claimed = Arc::new(AtomicBool::new(false));
        let (network_sender, network) = mpsc::sync_channel(1);
        let (old_root, old_root_receiver) = mpsc::sync_channel::<rootfs::OldRoot>(1);
        let work = {
            let claimed = Arc::clone(&claimed);
            move || {
                batch_scheduling(true);
                if let Some(cpus) = cpus {
                    let _ = rustix::thread::sched_setaffinity(None, &cpus);
                }
                let made = match claimed.swap(true, Ordering::AcqRel) {
                    true => Ok(None),
                    false => new_network_namespace().map(Some),
                };
                let _ = network_sender.send(made);
                batch_scheduling(false);
                // Closed without an old root: the init failed before its pivot.
                match old_root_receiver.recv() {
                    Ok(old_root) => old_root.detach(),
                    Err(_) => Ok(()),
                }
            }
        };
        let thread = std::thread::Builder::new()
            .stack_size(HELPER_STACK)
            .spawn(work)
            .ok();
        Helper {
            thread,
            claimed,
            network,
            old_root,
        }
    }

    /// Hands the old root to the thread to detach (or detaches it here when there is no thread
    /// to take it), and settles who makes the network namespace: the thread, or this thread
    /// when the thread has not begun (it then makes none) or never started. The init enters it
    /// later ([`Network::enter`]), once it has done what needs no network first.
    fn hand_over(self, old_root: rootfs::OldRoot) -> Result<(Detaching, Network), String> {
        // Set first by the thread: it makes the namespace. Set first here: the thread makes none.
        let thread_claimed = self.thread.is_some() && self.claimed.swap(true, Ordering::AcqRel);
        let detaching = match self.thread {
            Some(thread) => match self.old_root.send(old_root) {
                Ok(()) => Detaching(Some(thread)),
                // The thread is gone (it panicked): nothing else detaches it.
                Err(mpsc::SendError(old_root)) => {
                    old_root.detach()?;
                    Detaching(None)
                }
            },
            None => {
                old_root.detach()?;
                Detaching(None)
            }
        };
        let network = match thread_claimed {
            true => Network::FromThread(self.network),
            false => Network::MadeHere,
        };
        Ok((detaching, network))
    }
}

/// The session's network namespace, which the init enters before it binds the gate's port or
/// starts anything the agent inherits.
enum Network {
    /// Being made by the [`Helper`], which sends it here.
    FromThread(mpsc::Receiver<Result<Option<OwnedFd>, String>>),
    /// Made by the init itself on entry: the helper had not begun.
    MadeHere,
}

impl Network {
    /// Moves the calling thread (the init's main thread, before it starts any other) into the
    /// session's network namespace, waiting for the helper when it makes it.
    fn enter(self) -> Result<(), String> {
        let receiver = match self {
            Network::MadeHere => return new_network_namespace().map(|_| ()),
            Network::FromThread(receiver) => receiver,
        };
        let namespace = receiver
            .recv()
            .map_err(|_| "the network namespace's thread ended without one".to_owned())??
            .ok_or("the network namespace's thread made none")?;
        rustix::thread::move_into_link_name_space(
            namespace.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(fail("could not enter the network namespace"))
    }
}

/// Puts the calling thread under `SCHED_BATCH` (`batch`) or back under `SCHED_OTHER`. Under
/// `SCHED_BATCH` a thread gets its share of a CPU as before, but its wake-ups (and its move to
/// another CPU) no longer preempt the thread running there. The init's [`Helper`] moves to the
/// CPU of `moat run`, whose thread is then on the way to the gate's request, while the network
/// namespace can wait (it is needed only once the root is built): preempted by the helper, the
/// request left 0.9 ms late in one traced session. The detach that follows is on the agent's
/// way: the helper takes it back under `SCHED_OTHER`. Best effort: an error leaves the thread
/// as it was.
fn batch_scheduling(batch: bool) {
    let policy = if batch {
        libc::SCHED_BATCH
    } else {
        libc::SCHED_OTHER
    };
    #[allow(unsafe_code)]
    // SAFETY: `param` is a live, initialised sched_param the call only reads; pid 0 is the
    // calling thread, and either policy with priority 0 needs no privilege.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, policy, &param);
    }
}

/// The old root, being detached by the init's second thread ([`Helper::hand_over`]).
#[must_use = "nothing of the session's may start before the old root is detached"]
struct Detaching(Option<std::thread::JoinHandle<Result<(), String>>>);

impl Detaching {
    /// Waits until the host root is gone from the sandbox's mount namespace, and checks that
    /// it is ([`rootfs::check_nothing_over_the_root`]).
    fn wait(self) -> Result<(), String> {
        if let Some(thread) = self.0 {
            thread
                .join()
                .map_err(|_| "the thread that detaches the old root panicked".to_owned())??;
        }
        rootfs::check_nothing_over_the_root()
    }
}

/// Moves the calling thread into a new network namespace, brings its `lo` up and opens it.
fn new_network_namespace() -> Result<OwnedFd, String> {
    #[allow(unsafe_code)]
    // SAFETY: a new network namespace is the calling thread's alone (the kernel keeps it per
    // thread); nothing shared with another thread changes.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }
        .map_err(fail("could not create a network namespace"))?;
    bridge::open_namespace_with_loopback_up()
        .map_err(|error| format!("could not bring up lo: {error}"))
}

/// The stack of the init's [`Helper`] thread, which makes a handful of system calls.
const HELPER_STACK: usize = 64 * 1024;

/// This process's uid and gid (on the host, before any user namespace).
pub(crate) fn host_ids() -> (u32, u32) {
    (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    )
}

/// What maps `(uid, gid)`, ids on the host, to root in a new user namespace, written in this
/// order to the process's own files: `setgroups` denied (which an unprivileged user must do
/// before it maps a group), then the uid and gid maps.
pub(crate) fn id_maps((uid, gid): (u32, u32)) -> [(&'static CStr, Vec<u8>); 3] {
    [
        (c"/proc/self/setgroups", b"deny".to_vec()),
        (c"/proc/self/uid_map", format!("0 {uid} 1\n").into_bytes()),
        (c"/proc/self/gid_map", format!("0 {gid} 1\n").into_bytes()),
    ]
}

/// Maps `host_ids` to root in the new user namespace this process is in ([`id_maps`]).
fn map_to_root(host_ids: (u32, u32)) -> Result<(), String> {
    for (path, text) in id_maps(host_ids) {
        let path = path.to_string_lossy();
        std::fs::write(&*path, text).map_err(|error| format!("could not write {path}: {error}"))?;
    }
    Ok(())
}

/// Where [`relay_terminate`] sends `SIGTERM`: the agent's pid once it is started; before
/// that [`NO_AGENT`], or [`TERMINATE_ASKED`] once a `SIGTERM` has come.
static TERMINATE_RELAY: AtomicI32 = AtomicI32::new(NO_AGENT);
const NO_AGENT: i32 = 0;
const TERMINATE_ASKED: i32 = -1;

/// From now on this process takes `SIGTERM` and relays it to the agent, once there is one
/// ([`relay_terminate_to`]): the host ends a session by asking the agent to end
/// ([`crate::Stop`], a timeout) through pid 1, which gets no signal it has no handler for (so
/// neither the terminal's `SIGINT` nor `SIGQUIT`: those are the agent's). The host asks as soon
/// as it hears that the agent is starting, which the init reports just before it starts it.
fn take_terminate() {
    #[allow(unsafe_code)]
    // SAFETY: an all-zero sigaction is a valid value of this plain C struct; the handler set
    // is an `extern "C"` function of the one-argument form, as a handler without SA_SIGINFO.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = relay_terminate as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
    }
}

/// The agent has started as `target`: a `SIGTERM` that came before goes on to it now, and every
/// later one as it comes.
fn relay_terminate_to(target: Pid) {
    let target = target.as_raw_nonzero().get();
    if TERMINATE_RELAY.swap(target, Ordering::AcqRel) == TERMINATE_ASKED {
        terminate(target);
    }
}

/// The handler of [`take_terminate`]: atomics and `kill(2)`, async-signal-safe. Before the
/// agent has started it leaves the request for [`relay_terminate_to`]; either this exchange
/// or that swap comes first, so a request is relayed once whichever way they interleave.
extern "C" fn relay_terminate(_: libc::c_int) {
    match TERMINATE_RELAY.compare_exchange(
        NO_AGENT,
        TERMINATE_ASKED,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => {}
        Err(target) => terminate(target),
    }
}

/// `SIGTERM` to `target` if it is a pid: never to 0 or -1, which would signal the whole process
/// group (`moat run`'s, and its caller's) or every process there is.
fn terminate(target: i32) {
    if target > 0 {
        #[allow(unsafe_code)]
        // SAFETY: a plain system call with no memory arguments, to one positive pid: pid 1's
        // agent; errno is saved and restored around it (this runs in a signal handler).
        unsafe {
            let errno = libc::__errno_location();
            let saved = *errno;
            libc::kill(target, libc::SIGTERM);
            *errno = saved;
        }
    }
}

/// pid 1, once its request has come, which is once the host has moved it into the session's
/// cgroups: enter the cgroup namespace (rooted at the group this process is in when it is
/// created), build the root (the old one detached meanwhile by the [`Helper`]) and begin the
/// agent's confinement while the session waits for admission; once admitted, write the home
/// files, enter the network namespace the helper made meanwhile, install the seccomp filter
/// and prepare the agent's start; once confirmed and the old root is gone, check that the
/// gate's socket is where the root shows it, run the agent, bring up the bridge, reap, exit with
/// its status.
fn namespace_init(
    spec: Spec,
    mut pipe: std::fs::File,
    helper: Helper,
    reporter: &Reporter,
) -> Result<i32, String> {
    #[allow(unsafe_code)]
    // SAFETY: a new cgroup namespace is the calling thread's alone; no file table or
    // file-system context is unshared, so the one other thread that may run now (the helper)
    // sees nothing change (the bridge threads start later).
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWCGROUP) }
        .map_err(fail("could not create a cgroup namespace"))?;
    rustix::system::sethostname(b"moat").map_err(fail("could not set the hostname"))?;
    let old_root = rootfs::build(&spec)?;
    let (detaching, network) = helper.hand_over(old_root)?;
    // What needs no network namespace first, while the helper makes it: the namespace takes
    // the kernel longer than anything else in the sandbox (0.65 ms, and 0.14 to bring `lo` up:
    // medians of 150 back-to-back sessions), and the helper often starts late, when both CPUs
    // are busy (`moat run`, the init, the gate). When the init waited for it here first, the
    // helper's work (the namespace, then the detach) ended last in 27 of 40 traced sessions
    // (BENCHMARKS.md, sandbox notes of 2026-12-03, 09:22).
    let confinement = Confinement::begin(&spec, false)?;
    let Some(admitted) = admission(&mut pipe)? else {
        return Ok(SETUP_FAILED);
    };
    rootfs::write_files(&spec.home, &admitted.admission.home_files)?;
    network.enter()?;
    let confinement = confinement.seal();
    let gate_socket = admitted.admission.gate_socket.clone();
    // The gate binds the session's socket before it records the start: there once confirmed.
    let confirmation = |spec: &Spec| {
        let confirmed = confirmed(pipe)?;
        detaching.wait()?;
        if confirmed {
            gate_socket_mounted(spec, &gate_socket)?;
        }
        Ok(confirmed)
    };
    serve(spec, admitted, confinement, reporter, confirmation)
}

/// The admitted session's gate socket is in the session's gate directory, which the new root
/// shows at [`GATE_DIR_INSIDE`], and is a socket there.
fn gate_socket_mounted(spec: &Spec, gate_socket: &Path) -> Result<(), String> {
    let inside = Path::new(GATE_SOCKET_INSIDE);
    if gate_socket.parent() != Some(spec.gate_dir.as_path())
        || gate_socket.file_name() != inside.file_name()
    {
        return Err(format!(
            "could not mount the gate socket {}: the sandbox shows {} at {GATE_DIR_INSIDE}, \
             and the gate did not bind the session's socket there as {} (is the running gate \
             an older moat? restart it)",
            gate_socket.display(),
            spec.gate_dir.display(),
            inside.file_name().unwrap_or_default().to_string_lossy(),
        ));
    }
    match std::fs::symlink_metadata(inside) {
        Ok(metadata) if metadata.file_type().is_socket() => Ok(()),
        _ => Err(format!(
            "could not mount the gate socket {}: not a unix socket",
            gate_socket.display()
        )),
    }
}

/// pid 1 of a container (podman backend): the runtime made the namespaces, the read-only root,
/// `/tmp` and `$HOME` and mounted the gate socket; write the home files, then as above.
fn container_init(spec: Spec, mut pipe: std::fs::File, reporter: &Reporter) -> Result<i32, String> {
    // Podman is admitted and confirmed before the container exists: both are in the pipe.
    let Some(admitted) = admission(&mut pipe)? else {
        return Ok(SETUP_FAILED);
    };
    rootfs::write_files(&spec.home, &admitted.admission.home_files)?;
    bridge::loopback_check()?;
    end_with_the_host(reporter)?;
    let confinement = Confinement::begin(&spec, true)?.seal();
    serve(spec, admitted, confinement, reporter, |_: &Spec| {
        confirmed(pipe)
    })
}

/// Ends a container's init, and with pid 1 the whole container, once `moat run` is gone. The
/// embedded init dies with `moat run` by a death signal (`forked::die_with_parent`); a
/// container's init is the runtime's child, which no signal from `moat run`'s death reaches.
/// But `moat run` holds the report pipe's read end for as long as it lives (until the init has
/// exited, in a container), so the pipe reporting no reader left means it is gone: a thread
/// waits for that and exits the process as if killed (should the wait itself fail, the thread
/// ends and the session goes on unwatched, as before). Without it, a `moat run --backend
/// podman` killed outright left its container and agent running.
fn end_with_the_host(reporter: &Reporter) -> Result<(), String> {
    let watcher = reporter
        .watcher()
        .map_err(|error| format!("could not watch for the end of moat run: {error}"))?;
    std::thread::Builder::new()
        .name("host-watch".to_owned())
        .stack_size(HELPER_STACK)
        .spawn(move || {
            if watcher.wait_until_heard(None) {
                exit_now(128 + libc::SIGKILL)
            }
        })
        .map_err(|error| format!("could not watch for the end of moat run: {error}"))?;
    Ok(())
}

/// The common tail of both inits: listen on the gate port and prepare the agent's confinement
/// and command; once `confirmation` says the agent may start (false: refused, nothing starts),
/// start it, relay, reap, exit with the agent's status.
fn serve(
    spec: Spec,
    admitted: Admitted,
    confinement: Confinement,
    reporter: &Reporter,
    confirmation: impl FnOnce(&Spec) -> Result<bool, String>,
) -> Result<i32, String> {
    let Admitted {
        admission,
        landlock,
        seccomp,
    } = admitted;
    let port = admission.gate_port;
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
        .map_err(|error| format!("could not listen on 127.0.0.1:{port}: {error}"))?;
    let confinement = confinement.admit(port, landlock, seccomp)?;
    let enforced = confinement.enforced();
    // The admission may hold credentials in home files; nothing inside may read this process.
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);

    // Before the agent's command is made, which reads the signals this process handles (the
    // agent's process puts them back to their default).
    take_terminate();
    // Found before the confirmation: a command that cannot start is reported as such once the
    // session is confirmed (it is on record by then, and its end says why). The signals this
    // process handles are read now too: it installs no other handler before the agent starts.
    let command = AgentCommand::new(&spec.command, &admission.env, &spec.workspace);
    // With a prefix, stdin is a pipe, fed once the agent has started.
    let stdin_feed = match &spec.stdin_prefix {
        Some(prefix) => {
            let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(fail("could not create the stdin pipe"))?;
            Some((read, write, prefix.clone()))
        }
        None => None,
    };
    let stdin = stdin_feed.as_ref().map(|(read, _, _)| read.as_fd());
    if !confirmation(&spec)? {
        return Ok(SETUP_FAILED);
    }
    // Nothing else of this process runs now (the helper is done, the bridge not started, a
    // container's host watch only waits on its pipe): the agent's confinement is applied in the
    // agent's process, which shares this one's memory until its `execve`
    // ([`AgentCommand::spawn`]).
    let agent = match command {
        Ok(command) => {
            // Told before the agent can run: once the agent could have shown anything, the
            // host has this report to read, and a timeout or stop asks the agent to end (a
            // SIGTERM that comes before the agent has started goes on to it once it has).
            reporter.send(&Report::Started { enforced });
            command
                .spawn(&confinement, stdin)
                .map_err(|failure| failure.to_string())?
        }
        Err(error) => Err(error),
    };
    // The Landlock ruleset's descriptor: the agent's process has taken the ruleset.
    drop(confinement);
    if let Ok(agent) = agent {
        relay_terminate_to(agent);
    }
    let agent = match agent {
        Ok(agent) => agent,
        Err(error) => match not_started_code(&error) {
            Some(code) => {
                reporter.send(&Report::NotStarted {
                    program: spec.command[0].clone(),
                    error: error.to_string(),
                    code,
                });
                return Ok(code);
            }
            None => return Err(format!("could not start {:?}: {error}", spec.command[0])),
        },
    };
    let_go_of_standard_streams(stdin_feed.is_some());
    if let Some((read, write, prefix)) = stdin_feed {
        drop(read);
        std::thread::spawn(move || feed_stdin(write, &prefix));
    }
    bridge::spawn(listener);

    loop {
        match rustix::process::waitpid(None, WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid == agent => {
                let status = match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => ExitStatus::Code(code),
                    (None, Some(signal)) => ExitStatus::Signal(signal),
                    (None, None) => ExitStatus::Code(SETUP_FAILED),
                };
                end_the_namespace();
                reporter.send(&Report::Exited {
                    status,
                    usage: own_usage(),
                });
                // Heard or not, the init exits: the limit only spares the host the teardown.
                let _ = reporter.wait_until_heard(Some(HEARD_LIMIT));
                return Ok(match status {
                    ExitStatus::Code(code) => code,
                    ExitStatus::Signal(signal) => 128 + signal,
                });
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(error) => return Err(format!("could not wait for the agent: {error}")),
        }
    }
}

/// Points this process's standard streams at `/dev/null` once the agent runs with its own
/// copies of them (standard input stays when `keep_stdin`: [`feed_stdin`] relays it). A caller
/// that reads the agent's output through a pipe sees its end once the agent and `moat run` have
/// closed it, not once this process has also exited and its namespaces are torn down (0.56 ms
/// later for `moat run -- true`, BENCHMARKS.md). Nothing is lost: this process writes nothing
/// to them (it reports on its own pipe). Best effort: without `/dev/null` the streams stay.
fn let_go_of_standard_streams(keep_stdin: bool) {
    let Ok(null) = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) else {
        return;
    };
    if !keep_stdin {
        let _ = rustix::stdio::dup2_stdin(&null);
    }
    let _ = rustix::stdio::dup2_stdout(&null);
    let _ = rustix::stdio::dup2_stderr(&null);
}

/// What a shell exits with when `error` kept it from executing a command: 127 when there is no
/// such file (or the interpreter its first line names is missing), 126 when there is one that
/// cannot be executed (its mode, its format, or Landlock); `None` for any other failure (no
/// memory for the child, too many processes).
fn not_started_code(error: &std::io::Error) -> Option<i32> {
    match error.raw_os_error()? {
        libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG => Some(127),
        libc::EACCES | libc::ENOEXEC | libc::ETXTBSY => Some(126),
        _ => None,
    }
}

/// Once the agent has exited: kills every other process of the pid namespace this init is
/// pid 1 of (what the agent left running) and reaps them all, so that [`own_usage`] counts the
/// whole session and nothing of it outlives the report. Does nothing when this process is not
/// pid 1 of its namespace: `kill(-1)` would then reach processes outside the sandbox.
///
/// Nor when it has no child left, the common case: every process the agent starts descends
/// from pid 1, and one whose parent exits is handed to pid 1, so an init without children
/// (running or unreaped) has nothing of the session left to end. That check is one `waitid`;
/// `kill(-1)` walks every process of the host to find those of the namespace, under the
/// kernel's task list lock, and with it in the path from the agent's exit to the report `moat
/// run -- true` took 0.28 and 0.34 ms longer (medians of 400 and 600 interleaved runs,
/// BENCHMARKS.md).
fn end_the_namespace() {
    if !rustix::process::getpid().is_init() {
        return;
    }
    let no_child_left = matches!(
        rustix::process::waitid(
            rustix::process::WaitId::All,
            rustix::process::WaitIdOptions::EXITED
                | rustix::process::WaitIdOptions::NOHANG
                | rustix::process::WaitIdOptions::NOWAIT,
        ),
        Err(rustix::io::Errno::CHILD)
    );
    if no_child_left {
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: a plain system call with no memory arguments. As pid 1 of its own pid namespace
    // (checked just above), `kill(-1)` signals every other process of that namespace and
    // nothing outside it.
    unsafe {
        libc::kill(-1, libc::SIGKILL);
    }
    // Until ECHILD: nothing left to reap.
    while let Ok(_) | Err(rustix::io::Errno::INTR) =
        rustix::process::waitpid(None, WaitOptions::empty())
    {}
}

/// This process's usage plus that of every child it reaped (the agent and reaped orphans).
fn own_usage() -> ResourceUsage {
    let read = |who: libc::c_int| {
        #[allow(unsafe_code)]
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        #[allow(unsafe_code)]
        // SAFETY: `usage` is a live, writable rusage; getrusage only writes into it.
        let result = unsafe { libc::getrusage(who, &mut usage) };
        (result == 0).then_some(usage)
    };
    let timeval = |value: libc::timeval| {
        std::time::Duration::from_secs(value.tv_sec.max(0) as u64)
            + std::time::Duration::from_micros(value.tv_usec.max(0) as u64)
    };
    let mut total = ResourceUsage::default();
    for usage in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN]
        .into_iter()
        .filter_map(read)
    {
        total.user_cpu += timeval(usage.ru_utime);
        total.system_cpu += timeval(usage.ru_stime);
        total.max_rss_kib = total.max_rss_kib.max(usage.ru_maxrss.max(0) as u64);
    }
    total
}

/// Writes the prefix, then relays the host's stdin, into the agent's stdin pipe.
fn feed_stdin(write: OwnedFd, prefix: &[u8]) {
    let mut pipe = std::fs::File::from(write);
    if std::io::Write::write_all(&mut pipe, prefix).is_err() {
        return;
    }
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut pipe);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    fn sleeping_agent() -> (std::process::Child, Pid) {
        let agent = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(i32::try_from(agent.id()).unwrap()).unwrap();
        (agent, pid)
    }

    /// A stop that reaches pid 1 after it reported the agent's start but before the agent runs
    /// still asks the agent to end, once the agent has started; one after that, at once; none
    /// without a request. (The handler is called directly: it is what the kernel runs on a
    /// `SIGTERM`.) One test: the relay is a process-wide static.
    #[test]
    fn a_terminate_reaches_the_agent_whether_it_comes_before_or_after_its_start() {
        TERMINATE_RELAY.store(NO_AGENT, Ordering::Release);
        let (mut agent, pid) = sleeping_agent();
        relay_terminate_to(pid);
        assert_eq!(
            agent.try_wait().unwrap(),
            None,
            "signalled without a request"
        );
        relay_terminate(libc::SIGTERM);
        assert_eq!(agent.wait().unwrap().signal(), Some(libc::SIGTERM));

        TERMINATE_RELAY.store(NO_AGENT, Ordering::Release);
        relay_terminate(libc::SIGTERM);
        relay_terminate(libc::SIGTERM);
        assert_eq!(TERMINATE_RELAY.load(Ordering::Acquire), TERMINATE_ASKED);
        let (mut agent, pid) = sleeping_agent();
        relay_terminate_to(pid);
        assert_eq!(agent.wait().unwrap().signal(), Some(libc::SIGTERM));
        assert_eq!(
            TERMINATE_RELAY.load(Ordering::Acquire),
            pid.as_raw_nonzero().get()
        );
        TERMINATE_RELAY.store(NO_AGENT, Ordering::Release);
    }
}

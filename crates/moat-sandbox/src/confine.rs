//! The agent's confinement: begun in pid 1 while the session waits for its admission (what the
//! agent inherits), completed in the agent's process, just before its `execve`.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};
use rustix::process::{Resource, Rlimit};
use rustix::thread::{CapabilitiesSecureBits, CapabilitySet, CapabilitySets};

use crate::protocol::GATE_DIR_INSIDE;
use crate::seccomp::{ArgTest, Rule};
use crate::spec::Spec;

/// System calls the agent's seccomp filter refuses with `EPERM` (`clone3` with `ENOSYS`, so
/// libc falls back to `clone`, whose namespace flags the filter can inspect). Also refused:
/// `clone`/`unshare` with any `CLONE_NEW*` flag, `socket(AF_PACKET, …)`, `socket(…, SOCK_RAW)`,
/// `ioctl(TIOCSTI)`/`ioctl(TIOCLINUX)` (typing into the host terminal), and setting the setuid
/// or setgid bit through `chmod`, `open`, `mknod` and their variants (`openat2` gets `ENOSYS`).
/// On x86_64 every x32 system call is refused; other architectures (i386 `int 0x80`) kill the
/// process.
pub const SECCOMP_DENIED: &[&str] = &[
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "bpf",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "perf_event_open",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "userfaultfd",
    "open_by_handle_at",
    "name_to_handle_at",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "syslog",
    "quotactl",
];

/// Namespace flags refused in `clone`. (`CLONE_NEWTIME` only exists for `unshare` and `clone3`,
/// both refused outright: in `clone` its bit is part of the exit-signal field.)
const NAMESPACE_FLAGS: [i32; 7] = [
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

fn syscall_number(name: &str) -> Option<i64> {
    let number = match name {
        "ptrace" => libc::SYS_ptrace,
        "process_vm_readv" => libc::SYS_process_vm_readv,
        "process_vm_writev" => libc::SYS_process_vm_writev,
        "mount" => libc::SYS_mount,
        "umount2" => libc::SYS_umount2,
        "pivot_root" => libc::SYS_pivot_root,
        "chroot" => libc::SYS_chroot,
        "unshare" => libc::SYS_unshare,
        "setns" => libc::SYS_setns,
        "open_tree" => libc::SYS_open_tree,
        "move_mount" => libc::SYS_move_mount,
        "fsopen" => libc::SYS_fsopen,
        "fsconfig" => libc::SYS_fsconfig,
        "fsmount" => libc::SYS_fsmount,
        "fspick" => libc::SYS_fspick,
        "mount_setattr" => libc::SYS_mount_setattr,
        "bpf" => libc::SYS_bpf,
        "io_uring_setup" => libc::SYS_io_uring_setup,
        "io_uring_enter" => libc::SYS_io_uring_enter,
        "io_uring_register" => libc::SYS_io_uring_register,
        "keyctl" => libc::SYS_keyctl,
        "add_key" => libc::SYS_add_key,
        "request_key" => libc::SYS_request_key,
        "perf_event_open" => libc::SYS_perf_event_open,
        "kexec_load" => libc::SYS_kexec_load,
        "kexec_file_load" => libc::SYS_kexec_file_load,
        "init_module" => libc::SYS_init_module,
        "finit_module" => libc::SYS_finit_module,
        "delete_module" => libc::SYS_delete_module,
        "userfaultfd" => libc::SYS_userfaultfd,
        "open_by_handle_at" => libc::SYS_open_by_handle_at,
        "name_to_handle_at" => libc::SYS_name_to_handle_at,
        "acct" => libc::SYS_acct,
        "swapon" => libc::SYS_swapon,
        "swapoff" => libc::SYS_swapoff,
        "reboot" => libc::SYS_reboot,
        "syslog" => libc::SYS_syslog,
        "quotactl" => libc::SYS_quotactl,
        _ => return None,
    };
    Some(number)
}

/// The agent's confinement, in four steps. [`Confinement::begin`] runs in the init before the
/// session is admitted: it confines the init itself as far as the agent will be in what
/// leaves the init free to enter the network namespace (the capability bounding set and
/// secure bits, inherited by the agent at fork), prepares the Landlock ruleset's file-system
/// rules and assembles the seccomp filter. [`Unsealed::seal`] installs the filter on the init
/// once it is in its network namespace (the filter refuses `setns`): the agent inherits it
/// too. [`Confinement::admit`] settles what the admission decides: the gate port (the one TCP
/// port the agent may connect to) and whether Landlock and seccomp must hold, and gives the
/// [`AgentConfinement`], which the agent's process applies to itself before its `execve`
/// ([`AgentConfinement::apply_in_agent`]; pid 1 does not take it).
///
/// Done before the confirmation, these steps overlap the gate's durable record of the
/// session's start instead of delaying the agent (installing the seccomp filter alone took
/// 0.2 ms between the agent's fork and its `execve` when the agent did it).
pub(crate) struct Confinement {
    /// The ruleset with its file-system rules, and the ABI; `None` without Landlock here.
    landlock: Option<(Result<RulesetCreated, String>, i32)>,
    /// Whether this process installed the seccomp filter (the agent inherits it), or why not.
    seccomp: Result<(), String>,
    /// Inside a podman container: no `CAP_SETPCAP` to lock secure bits or shrink the bounding
    /// set, which `--cap-drop ALL` already emptied (checked instead).
    container: bool,
}

/// A [`Confinement`] whose seccomp filter is assembled but not installed yet.
pub(crate) struct Unsealed {
    landlock: Option<(Result<RulesetCreated, String>, i32)>,
    /// The assembled filter, or why there is none.
    filter: Result<Vec<libc::sock_filter>, String>,
    container: bool,
}

impl Unsealed {
    /// Installs the seccomp filter on this thread (the init's), which every thread and process
    /// it starts from now on inherits: from here on it can make no mount and enter or make no
    /// namespace. Whether the filter holds is the admission's to judge
    /// ([`Confinement::admit`]).
    pub(crate) fn seal(self) -> Confinement {
        let seccomp = self.filter.and_then(|program| {
            crate::seccomp::install(&program)
                .map_err(|error| format!("could not apply seccomp: {error}"))
        });
        Confinement {
            landlock: self.landlock,
            seccomp,
            container: self.container,
        }
    }
}

impl Confinement {
    /// Confines this process (the init, which runs nothing but the agent from here on) with
    /// what the agent inherits and leaves it free to enter a namespace, builds the file-system
    /// part of the Landlock rules and assembles the seccomp filter, which
    /// [`Unsealed::seal`] installs.
    pub(crate) fn begin(spec: &Spec, container: bool) -> Result<Unsealed, String> {
        let last_capability = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(63);
        if container {
            check_bounding_set_empty(last_capability)?;
        } else {
            lock_secure_bits_and_bounding_set(last_capability)?;
        }
        let landlock = crate::probe::landlock_abi().map(|abi| {
            let ruleset = landlock_ruleset(spec, abi)
                .map_err(|error| format!("could not build the landlock rules: {error}"));
            (ruleset, abi)
        });
        // Installed last (`seal`): it refuses the init's entry into its network namespace.
        // Its errors are the host's to judge at the admission.
        let filter = crate::seccomp::program(&seccomp_rules())
            .map_err(|error| format!("could not build the seccomp filter: {error}"));
        Ok(Unsealed {
            landlock,
            filter,
            container,
        })
    }

    /// Adds the gate port to the Landlock rules; `landlock` and `seccomp` say whether each must
    /// hold (the host has it). A filter already installed stays, asked for or not.
    pub(crate) fn admit(
        self,
        gate_port: u16,
        landlock: bool,
        seccomp: bool,
    ) -> Result<AgentConfinement, String> {
        let landlock = match (landlock, self.landlock) {
            (false, _) => None,
            (true, None) => {
                return Err("landlock is not available inside the sandbox".to_owned());
            }
            (true, Some((ruleset, abi))) => {
                let mut ruleset = ruleset?;
                if abi >= 4 {
                    ruleset = ruleset
                        .add_rule(NetPort::new(gate_port, AccessNet::ConnectTcp))
                        .map_err(|error| format!("could not build the landlock rules: {error}"))?;
                }
                Some((ruleset, abi))
            }
        };
        if seccomp && let Err(error) = self.seccomp.as_ref() {
            return Err(error.clone());
        }
        Ok(AgentConfinement {
            landlock,
            seccomp: self.seccomp.is_ok(),
            container: self.container,
        })
    }
}

/// What the admitted session's agent is confined by ([`Confinement::admit`]).
pub(crate) struct AgentConfinement {
    /// The complete ruleset and its ABI, when Landlock holds.
    landlock: Option<(RulesetCreated, i32)>,
    /// Whether the init installed the seccomp filter the agent inherits.
    seccomp: bool,
    container: bool,
}

impl AgentConfinement {
    /// The properties this confinement enforces, for the session record.
    pub(crate) fn enforced(&self) -> Vec<String> {
        let mut enforced =
            enforced_properties(self.landlock.as_ref().map(|(_, abi)| *abi), self.seccomp);
        if self.container {
            // The namespaces and the root are the runtime's; the podman backend records them.
            enforced
                .retain(|held| !held.starts_with("namespaces") && !held.starts_with("new root"));
        }
        enforced
    }

    /// No Landlock and no seccomp filter: the rest of [`apply_in_agent`](Self::apply_in_agent)
    /// only (for tests that start a process outside any sandbox).
    #[cfg(test)]
    pub(crate) fn without_landlock() -> AgentConfinement {
        AgentConfinement {
            landlock: None,
            seccomp: false,
            container: false,
        }
    }

    /// Applied in the agent's process before its `execve` ([`crate::agent`]), on top of what
    /// [`Confinement::begin`] and [`Unsealed::seal`] gave the whole init, which that process
    /// inherits: `RLIMIT_CORE=0`, no ambient capabilities, `no_new_privs`, Landlock, no
    /// capabilities. All of it is the agent's process's alone: pid 1 stays outside the agent's
    /// Landlock domain (which cannot signal it then) and keeps its capabilities.
    ///
    /// It runs in a process that shares the init's memory, its parent suspended (`CLONE_VM`,
    /// `CLONE_VFORK`), while the init's other threads, if any, wait: it allocates nothing, and
    /// says what failed as a [`ConfinementFailure`], which the init describes once it resumes.
    pub(crate) fn apply_in_agent(&self) -> Result<(), ConfinementFailure> {
        let zero = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        rustix::process::setrlimit(Resource::Core, zero).map_err(ConfinementFailure::Core)?;
        rustix::thread::clear_ambient_capability_set().map_err(ConfinementFailure::Ambient)?;
        rustix::thread::set_no_new_privs(true).map_err(ConfinementFailure::NoNewPrivs)?;
        if let Some((ruleset, _)) = &self.landlock {
            #[allow(unsafe_code)]
            // SAFETY: a bitwise copy of the ruleset, owned by this process alone: it holds no
            // memory of its own, only the ruleset's descriptor, which this process's copy of
            // the descriptor table holds too (no CLONE_FILES); dropping the copy closes that
            // entry only. The init's own value is untouched.
            let ruleset = unsafe { std::ptr::read(ruleset) };
            // Hard requirement: only the rights this ABI has were asked for, all must hold.
            match ruleset.restrict_self() {
                Ok(status) if matches!(status.ruleset, RulesetStatus::FullyEnforced) => {}
                Ok(_) => return Err(ConfinementFailure::LandlockPartial),
                Err(_) => {
                    return Err(ConfinementFailure::Landlock(
                        rustix::io::Errno::from_io_error(&std::io::Error::last_os_error())
                            .unwrap_or(rustix::io::Errno::INVAL),
                    ));
                }
            }
        }
        let empty = CapabilitySet::empty();
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: empty,
                permitted: empty,
                inheritable: empty,
            },
        )
        .map_err(ConfinementFailure::Capabilities)
    }
}

/// Which step of [`AgentConfinement::apply_in_agent`] failed, and how.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ConfinementFailure {
    Core(rustix::io::Errno),
    Ambient(rustix::io::Errno),
    NoNewPrivs(rustix::io::Errno),
    Landlock(rustix::io::Errno),
    LandlockPartial,
    Capabilities(rustix::io::Errno),
}

impl std::fmt::Display for ConfinementFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Core(error) => write!(f, "could not set RLIMIT_CORE: {error}"),
            Self::Ambient(error) => write!(f, "could not clear ambient capabilities: {error}"),
            Self::NoNewPrivs(error) => write!(f, "could not set no_new_privs: {error}"),
            Self::Landlock(error) => write!(f, "could not apply landlock: {error}"),
            Self::LandlockPartial => f.write_str("landlock was not fully enforced"),
            Self::Capabilities(error) => write!(f, "could not drop capabilities: {error}"),
        }
    }
}

/// Secure bits locked (no root privileges, no setuid fixups, no ambient raise), every
/// capability up to `last_capability` dropped from the bounding set. Needs `CAP_SETPCAP` (the
/// user namespace's). Both only matter at `execve`, so the init keeps the capabilities it has.
fn lock_secure_bits_and_bounding_set(last_capability: u32) -> Result<(), String> {
    rustix::thread::set_capabilities_secure_bits(
        CapabilitiesSecureBits::NO_ROOT
            | CapabilitiesSecureBits::NO_ROOT_LOCKED
            | CapabilitiesSecureBits::NO_SETUID_FIXUP
            | CapabilitiesSecureBits::NO_SETUID_FIXUP_LOCKED
            | CapabilitiesSecureBits::KEEP_CAPS_LOCKED
            | CapabilitiesSecureBits::NO_CAP_AMBIENT_RAISE
            | CapabilitiesSecureBits::NO_CAP_AMBIENT_RAISE_LOCKED,
    )
    .map_err(|error| format!("could not lock the capability secure bits: {error}"))?;
    for capability in 0..=last_capability.min(63) {
        rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
            1 << capability,
        ))
        .map_err(|error| {
            format!("could not drop capability {capability} from the bounding set: {error}")
        })?;
    }
    Ok(())
}

/// In a container nothing may remain in the bounding set (`--cap-drop ALL`).
fn check_bounding_set_empty(last_capability: u32) -> Result<(), String> {
    for capability in 0..=last_capability.min(63) {
        let held = rustix::thread::capability_is_in_bounding_set(CapabilitySet::from_bits_retain(
            1 << capability,
        ))
        .unwrap_or(false);
        if held {
            return Err(format!(
                "capability {capability} is still in the container's bounding set"
            ));
        }
    }
    Ok(())
}

/// The confinement properties that hold with this Landlock ABI and seccomp, as recorded.
pub(crate) fn enforced_properties(landlock_abi: Option<i32>, seccomp: bool) -> Vec<String> {
    let mut enforced = vec![
        "namespaces (user, mount, pid, net, ipc, uts, cgroup)".to_owned(),
        "new root (read-only, nosuid, nodev)".to_owned(),
        "no capabilities".to_owned(),
        "no_new_privs".to_owned(),
    ];
    if let Some(abi) = landlock_abi {
        enforced.push(format!("landlock-fs (abi {abi})"));
        if abi >= 4 {
            enforced.push("landlock-net (tcp connect to the gate port only, no bind)".to_owned());
        }
        if abi >= 6 {
            enforced.push("landlock-scope (abstract unix sockets, signals)".to_owned());
        }
    }
    if seccomp {
        enforced.push("seccomp".to_owned());
    }
    enforced
}

/// The ruleset and its file-system rules; [`Confinement::admit`] adds the gate port.
fn landlock_ruleset(spec: &Spec, abi: i32) -> Result<RulesetCreated, landlock::RulesetError> {
    let version = ABI::from(abi);
    let all = AccessFs::from_all(version);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(all)?;
    if abi >= 4 {
        ruleset = ruleset.handle_access(AccessNet::from_all(version))?;
    }
    if abi >= 6 {
        ruleset = ruleset.scope(Scope::from_all(version))?;
    }
    let mut created = ruleset.create()?;
    let read = AccessFs::from_read(version);
    let mut rules: Vec<(PathBuf, BitFlags<AccessFs>)> = vec![
        ("/".into(), AccessFs::ReadDir.into()),
        ("/usr".into(), read),
        ("/etc".into(), read),
        ("/proc".into(), AccessFs::ReadFile | AccessFs::ReadDir),
        (
            "/dev".into(),
            AccessFs::ReadFile | AccessFs::ReadDir | AccessFs::WriteFile | AccessFs::IoctlDev,
        ),
        // The gate's socket, once the gate binds it: the directory holds nothing else.
        (
            GATE_DIR_INSIDE.into(),
            AccessFs::ReadFile | AccessFs::ResolveUnix,
        ),
        ("/dev/shm".into(), all),
        ("/tmp".into(), all),
        (spec.home.clone(), all),
        (spec.workspace.clone(), all),
    ];
    for name in ["bin", "sbin", "lib", "lib64", "lib32"] {
        let path = Path::new("/").join(name);
        if path
            .symlink_metadata()
            .is_ok_and(|metadata| metadata.is_dir())
        {
            rules.push((path, read));
        }
    }
    rules.extend(spec.ro_paths.iter().map(|path| (path.clone(), read)));
    for (path, access) in rules {
        let Ok(metadata) = path.metadata() else {
            continue;
        };
        let mut access = access & all;
        if !metadata.is_dir() {
            access &= AccessFs::from_file(version);
        }
        if access.is_empty() {
            continue;
        }
        let Ok(fd) = PathFd::new(&path) else { continue };
        created = created.add_rule(PathBeneath::new(fd, access))?;
    }
    Ok(created)
}

/// System calls that take a file mode, with the index of the mode argument.
fn mode_arguments() -> Vec<(i64, u8)> {
    let mut calls = vec![
        (libc::SYS_fchmod, 1),
        (libc::SYS_fchmodat, 2),
        (libc::SYS_fchmodat2, 2),
        (libc::SYS_openat, 3),
        (libc::SYS_mknodat, 2),
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        (libc::SYS_chmod, 1),
        (libc::SYS_open, 2),
        (libc::SYS_creat, 1),
        (libc::SYS_mknod, 1),
    ]);
    calls
}

/// The agent's seccomp rules, by system call number (see [`SECCOMP_DENIED`]).
fn seccomp_rules() -> Vec<(i64, Rule)> {
    let eperm = Rule::Refuse {
        errno: libc::EPERM as u32,
    };
    // Arguments behind a pointer cannot be inspected: ENOSYS makes libc fall back to clone and
    // openat, whose flags and mode the rules below see.
    let enosys = Rule::Refuse {
        errno: libc::ENOSYS as u32,
    };
    let mut rules = vec![
        (libc::SYS_clone3, enosys.clone()),
        (libc::SYS_openat2, enosys),
    ];
    rules.extend(
        SECCOMP_DENIED
            .iter()
            .filter_map(|name| syscall_number(name))
            .map(|number| (number, eperm.clone())),
    );
    let namespaces = NAMESPACE_FLAGS
        .iter()
        .fold(0, |mask, &flag| mask | flag as u32);
    rules.push((
        libc::SYS_clone,
        Rule::RefuseIf(vec![ArgTest::AnyBit {
            arg: 0,
            mask: namespaces,
        }]),
    ));
    let equals = |arg: u8, value: u32| ArgTest::Equals { arg, value };
    rules.push((
        libc::SYS_socket,
        Rule::RefuseIf(vec![
            equals(0, libc::AF_PACKET as u32),
            // The type's low bits; SOCK_CLOEXEC and SOCK_NONBLOCK sit above them.
            ArgTest::MaskedEquals {
                arg: 1,
                mask: 0xf,
                value: libc::SOCK_RAW as u32,
            },
        ]),
    ));
    rules.push((
        libc::SYS_ioctl,
        Rule::RefuseIf(vec![
            equals(1, libc::TIOCSTI as u32),
            equals(1, libc::TIOCLINUX as u32),
        ]),
    ));
    // Setuid and setgid bits: a file the agent marks setuid in the workspace would run as the
    // host user who owns it, outside the sandbox (the mounts inside are nosuid already).
    let set_id = libc::S_ISUID | libc::S_ISGID;
    rules.extend(mode_arguments().into_iter().map(|(number, arg)| {
        (
            number,
            Rule::RefuseIf(vec![ArgTest::AnyBit { arg, mask: set_id }]),
        )
    }));
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_denied_syscall_has_a_number() {
        for name in SECCOMP_DENIED {
            assert!(syscall_number(name).is_some(), "{name}");
        }
    }

    use crate::seccomp::{Action, Call, action, run};

    const EPERM: Action = Action::Errno(libc::EPERM as u32);
    const ENOSYS: Action = Action::Errno(libc::ENOSYS as u32);

    fn program() -> Vec<libc::sock_filter> {
        crate::seccomp::program(&seccomp_rules()).expect("the program assembles")
    }

    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = crate::seccomp::AUDIT_ARCH_X86_64;
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = crate::seccomp::AUDIT_ARCH_AARCH64;

    fn answer(program: &[libc::sock_filter], nr: i64, args: [u64; 6]) -> Action {
        let call = Call {
            arch: ARCH,
            nr: u32::try_from(nr).expect("nr"),
            args,
        };
        action(run(program, &call)).expect("allow or errno")
    }

    fn with(index: usize, value: u64) -> [u64; 6] {
        let mut args = [0; 6];
        args[index] = value;
        args
    }

    #[test]
    fn the_seccomp_program_is_one_short_program() {
        let program = program();
        assert!(program.len() < 128, "{} instructions", program.len());
    }

    /// What the rules say about a call, read directly off them.
    fn ruled(rules: &[(i64, Rule)], nr: u32, args: [u64; 6]) -> Action {
        let Some((_, rule)) = rules.iter().find(|(number, _)| *number == i64::from(nr)) else {
            return Action::Allow;
        };
        match rule {
            Rule::Refuse { errno } => Action::Errno(*errno),
            Rule::RefuseIf(tests) => {
                let low = |arg: u8| args[usize::from(arg)] as u32;
                let refused = tests.iter().any(|test| match *test {
                    ArgTest::AnyBit { arg, mask } => low(arg) & mask != 0,
                    ArgTest::Equals { arg, value } => low(arg) == value,
                    ArgTest::MaskedEquals { arg, mask, value } => low(arg) & mask == value,
                });
                if refused { EPERM } else { Action::Allow }
            }
        }
    }

    /// Every call number below 1024, with no arguments, all bits set, and each argument test
    /// of the rules made to hold, is answered as the rules say: the search finds every named
    /// call and no other.
    #[test]
    fn every_number_is_answered_as_its_rule_says() {
        let rules = seccomp_rules();
        let program = program();
        let mut argument_sets = vec![[0; 6], [u64::MAX; 6]];
        for (_, rule) in &rules {
            let Rule::RefuseIf(tests) = rule else {
                continue;
            };
            for test in tests {
                let (arg, value) = match *test {
                    ArgTest::AnyBit { arg, mask } => (arg, mask),
                    ArgTest::Equals { arg, value } => (arg, value),
                    ArgTest::MaskedEquals { arg, value, .. } => (arg, value),
                };
                argument_sets.push(with(usize::from(arg), u64::from(value)));
            }
        }
        let mut refused = 0;
        for nr in 0..1024 {
            for &args in &argument_sets {
                let expected = ruled(&rules, nr, args);
                assert_eq!(
                    answer(&program, i64::from(nr), args),
                    expected,
                    "nr {nr} {args:x?}"
                );
                refused += usize::from(expected != Action::Allow);
            }
        }
        assert!(refused > rules.len(), "only {refused} refusals checked");
    }

    /// A call's answer takes a few instructions, not one per named call: the kernel runs the
    /// program for every call number as it installs it, and the agent's calls that it does
    /// not always allow run it. In a row of one `jeq` per named call, an allowed call took
    /// 4 + 52 + 1 = 57 (the architecture and x32 checks, every rule, the return).
    #[test]
    fn every_call_is_decided_in_a_few_instructions() {
        let rules = seccomp_rules();
        let program = program();
        let steps = |nr: u32| {
            let call = Call {
                arch: ARCH,
                nr,
                args: [0; 6],
            };
            crate::seccomp::execute(&program, &call).1
        };
        let named = |nr: u32| rules.iter().any(|(number, _)| *number == i64::from(nr));
        let allowed = (0..1024).filter(|&nr| !named(nr)).map(steps).max();
        let refused = (0..1024).filter(|&nr| named(nr)).map(steps).max();
        assert!(
            allowed <= Some(13),
            "an allowed call: {allowed:?} instructions"
        );
        // A named call then runs its argument checks (two loads, a mask and two tests at most).
        assert!(
            refused <= Some(17),
            "a named call: {refused:?} instructions"
        );
    }

    #[test]
    fn every_denied_call_is_refused_with_eperm() {
        let program = program();
        for name in SECCOMP_DENIED {
            let number = syscall_number(name).expect("number");
            assert_eq!(answer(&program, number, [0; 6]), EPERM, "{name}");
            assert_eq!(answer(&program, number, [u64::MAX; 6]), EPERM, "{name}");
        }
    }

    #[test]
    fn clone3_and_openat2_answer_enosys() {
        let program = program();
        assert_eq!(answer(&program, libc::SYS_clone3, [0; 6]), ENOSYS);
        assert_eq!(answer(&program, libc::SYS_openat2, [0; 6]), ENOSYS);
    }

    #[test]
    fn ordinary_calls_are_allowed() {
        let program = program();
        for number in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_getpid,
            libc::SYS_execve,
            libc::SYS_mmap,
            libc::SYS_connect,
            libc::SYS_wait4,
            libc::SYS_landlock_restrict_self,
        ] {
            assert_eq!(
                answer(&program, number, [u64::MAX; 6]),
                Action::Allow,
                "{number}"
            );
        }
    }

    #[test]
    fn clone_with_a_namespace_flag_is_refused_and_fork_or_thread_is_not() {
        let program = program();
        let signal = libc::SIGCHLD as u64;
        for flag in NAMESPACE_FLAGS {
            let flag = flag as u64;
            assert_eq!(
                answer(&program, libc::SYS_clone, with(0, flag | signal)),
                EPERM
            );
            assert_eq!(
                answer(
                    &program,
                    libc::SYS_clone,
                    with(0, flag | 0xffff_ffff_0000_0000)
                ),
                EPERM
            );
        }
        let fork = (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64 | signal;
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        assert_eq!(
            answer(&program, libc::SYS_clone, with(0, fork)),
            Action::Allow
        );
        assert_eq!(
            answer(&program, libc::SYS_clone, with(0, thread)),
            Action::Allow
        );
    }

    #[test]
    fn packet_and_raw_sockets_are_refused() {
        let program = program();
        let socket = |domain: i32, kind: i32| {
            let mut args = with(0, domain as u64);
            args[1] = kind as u64;
            answer(&program, libc::SYS_socket, args)
        };
        assert_eq!(socket(libc::AF_PACKET, libc::SOCK_DGRAM), EPERM);
        assert_eq!(socket(libc::AF_INET, libc::SOCK_RAW), EPERM);
        assert_eq!(
            socket(libc::AF_INET6, libc::SOCK_RAW | libc::SOCK_CLOEXEC),
            EPERM
        );
        assert_eq!(
            socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK),
            Action::Allow
        );
        assert_eq!(
            socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC),
            Action::Allow
        );
    }

    #[test]
    fn typing_into_the_terminal_is_refused_and_other_ioctls_are_not() {
        let program = program();
        for request in [libc::TIOCSTI, libc::TIOCLINUX] {
            assert_eq!(answer(&program, libc::SYS_ioctl, with(1, request)), EPERM);
            // The kernel reads the request as 32 bits: high bits cannot hide it.
            assert_eq!(
                answer(&program, libc::SYS_ioctl, with(1, request | 1 << 40)),
                EPERM
            );
        }
        for request in [libc::TCGETS, libc::FIONREAD, libc::TIOCGWINSZ] {
            assert_eq!(
                answer(&program, libc::SYS_ioctl, with(1, request)),
                Action::Allow
            );
        }
    }

    #[test]
    fn setuid_and_setgid_modes_are_refused() {
        let program = program();
        for (number, index) in mode_arguments() {
            let index = usize::from(index);
            for mode in [0o4755, 0o2755, 0o6000] {
                assert_eq!(
                    answer(&program, number, with(index, mode)),
                    EPERM,
                    "{number}"
                );
            }
            for mode in [0o755, 0o1777, 0o644] {
                assert_eq!(
                    answer(&program, number, with(index, mode)),
                    Action::Allow,
                    "{number}"
                );
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_calls_are_refused() {
        let program = program();
        for number in [39, 165, 521] {
            assert_eq!(answer(&program, 0x4000_0000 + number, [0; 6]), EPERM);
        }
    }

    #[test]
    fn another_architecture_kills_the_process() {
        let call = Call {
            arch: crate::seccomp::AUDIT_ARCH_I386,
            nr: 39,
            args: [0; 6],
        };
        assert_eq!(run(&program(), &call), libc::SECCOMP_RET_KILL_PROCESS);
    }
}

//! The agent's confinement: prepared in pid 1, applied in the forked agent just before exec.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};
use rustix::process::{Resource, Rlimit};
use rustix::thread::{CapabilitiesSecureBits, CapabilitySet, CapabilitySets};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::protocol::GATE_SOCKET_INSIDE;
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

/// Everything the agent child applies to itself, built before the fork.
pub(crate) struct Confinement {
    landlock: Option<(RulesetCreated, i32)>,
    seccomp: Vec<BpfProgram>,
    last_capability: u32,
    /// Inside a podman container: no `CAP_SETPCAP` to lock secure bits or shrink the bounding
    /// set, which `--cap-drop ALL` already emptied (checked instead).
    container: bool,
}

impl Confinement {
    /// Builds the rules; `gate_port` is the one TCP port the agent may connect to, `landlock`
    /// and `seccomp` say whether to enforce each (the host has it).
    pub(crate) fn prepare(
        spec: &Spec,
        gate_port: u16,
        landlock: bool,
        seccomp: bool,
        container: bool,
    ) -> Result<Self, String> {
        let landlock = match (landlock, crate::probe::landlock_abi()) {
            (false, _) => None,
            (true, Some(abi)) => Some((
                landlock_ruleset(spec, gate_port, abi)
                    .map_err(|error| format!("could not build the landlock rules: {error}"))?,
                abi,
            )),
            (true, None) => return Err("landlock is not available inside the sandbox".to_owned()),
        };
        let seccomp = if seccomp {
            seccomp_filters()
                .map_err(|error| format!("could not build the seccomp filter: {error}"))?
        } else {
            Vec::new()
        };
        let last_capability = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(63);
        Ok(Self {
            landlock,
            seccomp,
            last_capability,
            container,
        })
    }

    /// The properties this confinement enforces, for the session record.
    pub(crate) fn enforced(&self) -> Vec<String> {
        let mut enforced = enforced_properties(
            self.landlock.as_ref().map(|(_, abi)| *abi),
            !self.seccomp.is_empty(),
        );
        if self.container {
            // The namespaces and the root are the runtime's; the podman backend records them.
            enforced
                .retain(|held| !held.starts_with("namespaces") && !held.starts_with("new root"));
        }
        enforced
    }

    /// Applied in the forked agent: rlimits, secure bits, capability sets, `no_new_privs`,
    /// Landlock, seccomp — in that order, seccomp last because it forbids nothing used here.
    pub(crate) fn apply(self) -> Result<(), String> {
        let zero = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        rustix::process::setrlimit(Resource::Core, zero)
            .map_err(|error| format!("could not set RLIMIT_CORE: {error}"))?;
        if self.container {
            self.check_bounding_set_empty()?;
        } else {
            self.lock_secure_bits_and_bounding_set()?;
        }
        rustix::thread::clear_ambient_capability_set()
            .map_err(|error| format!("could not clear ambient capabilities: {error}"))?;
        rustix::thread::set_no_new_privs(true)
            .map_err(|error| format!("could not set no_new_privs: {error}"))?;
        if let Some((ruleset, _)) = self.landlock {
            let status = ruleset
                .restrict_self()
                .map_err(|error| format!("could not apply landlock: {error}"))?;
            // Hard requirement: only the rights this ABI has were asked for, all must hold.
            if !matches!(status.ruleset, RulesetStatus::FullyEnforced) {
                return Err(format!(
                    "landlock was not fully enforced ({:?})",
                    status.ruleset
                ));
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
        .map_err(|error| format!("could not drop capabilities: {error}"))?;
        for filter in &self.seccomp {
            seccompiler::apply_filter(filter)
                .map_err(|error| format!("could not apply seccomp: {error}"))?;
        }
        Ok(())
    }

    /// Secure bits locked (no root privileges, no setuid fixups, no ambient raise), every
    /// capability dropped from the bounding set. Needs `CAP_SETPCAP` (the user namespace's).
    fn lock_secure_bits_and_bounding_set(&self) -> Result<(), String> {
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
        for capability in 0..=self.last_capability.min(63) {
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
    fn check_bounding_set_empty(&self) -> Result<(), String> {
        for capability in 0..=self.last_capability.min(63) {
            let held = rustix::thread::capability_is_in_bounding_set(
                CapabilitySet::from_bits_retain(1 << capability),
            )
            .unwrap_or(false);
            if held {
                return Err(format!(
                    "capability {capability} is still in the container's bounding set"
                ));
            }
        }
        Ok(())
    }
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

fn landlock_ruleset(
    spec: &Spec,
    gate_port: u16,
    abi: i32,
) -> Result<RulesetCreated, landlock::RulesetError> {
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
        (
            GATE_SOCKET_INSIDE.into(),
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
    if abi >= 4 {
        created = created.add_rule(NetPort::new(gate_port, AccessNet::ConnectTcp))?;
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

fn seccomp_filters() -> Result<Vec<BpfProgram>, seccompiler::Error> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(seccompiler::Error::Backend)?;
    let condition = |index: u8, length: SeccompCmpArgLen, operator: SeccompCmpOp, value: u64| {
        SeccompCondition::new(index, length, operator, value).map_err(seccompiler::Error::Backend)
    };
    let rule = |conditions: Vec<SeccompCondition>| {
        SeccompRule::new(conditions).map_err(seccompiler::Error::Backend)
    };

    let mut denied: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for name in SECCOMP_DENIED {
        if let Some(number) = syscall_number(name) {
            denied.insert(number, Vec::new());
        }
    }
    let mut namespace_rules = Vec::new();
    for flag in NAMESPACE_FLAGS {
        let flag = flag as u64;
        namespace_rules.push(rule(vec![condition(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )?])?);
    }
    denied.insert(libc::SYS_clone, namespace_rules);
    denied.insert(
        libc::SYS_socket,
        vec![
            rule(vec![condition(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                libc::AF_PACKET as u64,
            )?])?,
            rule(vec![condition(
                1,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::MaskedEq(0xf),
                libc::SOCK_RAW as u64,
            )?])?,
        ],
    );
    denied.insert(
        libc::SYS_ioctl,
        vec![
            rule(vec![condition(
                1,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                libc::TIOCSTI,
            )?])?,
            rule(vec![condition(
                1,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                libc::TIOCLINUX,
            )?])?,
        ],
    );
    // Setuid and setgid bits: a file the agent marks setuid in the workspace would run as the
    // host user who owns it, outside the sandbox (the mounts inside are nosuid already).
    for (number, mode_index) in mode_arguments() {
        let mut rules = Vec::new();
        for bit in [libc::S_ISUID, libc::S_ISGID] {
            let bit = u64::from(bit);
            rules.push(rule(vec![condition(
                mode_index,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::MaskedEq(bit),
                bit,
            )?])?);
        }
        denied.insert(number, rules);
    }
    let eperm = SeccompFilter::new(
        denied,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    // Arguments behind a pointer cannot be inspected: ENOSYS makes libc fall back to clone and
    // openat, whose flags and mode the filter above sees.
    let mut clone3 = BTreeMap::new();
    clone3.insert(libc::SYS_clone3, Vec::new());
    clone3.insert(libc::SYS_openat2, Vec::new());
    let enosys = SeccompFilter::new(
        clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    let mut filters = vec![eperm.try_into()?, enosys.try_into()?];
    #[cfg(target_arch = "x86_64")]
    filters.push(x32_refused());
    Ok(filters)
}

/// x32 shares the x86_64 audit arch but numbers its system calls with bit 30 set, so the
/// filters above, written for x86_64 numbers, would not see its `mount` or `ptrace`: every x32
/// call is refused instead (`EPERM`; nothing ordinary uses the ABI, and most kernels lack it).
#[cfg(target_arch = "x86_64")]
fn x32_refused() -> BpfProgram {
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let statement = |code: u32, k: u32| seccompiler::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    vec![
        // A = seccomp_data.nr
        statement(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        // A >= X32_SYSCALL_BIT ? refuse : allow
        seccompiler::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        statement(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        statement(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ]
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

    #[test]
    fn the_seccomp_filters_compile() {
        let filters = seccomp_filters().expect("compile");
        assert_eq!(
            filters.len(),
            if cfg!(target_arch = "x86_64") { 3 } else { 2 }
        );
    }
}

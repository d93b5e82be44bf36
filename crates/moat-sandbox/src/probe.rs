//! What this host can enforce, probed rather than assumed.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::Spec;

/// What this host can enforce.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostReport {
    /// Whether the kernel's knobs allow user namespaces. The real attempt is the sandbox init's
    /// own `unshare`, made before anything of the session runs; a refusal there (a seccomp
    /// filter or an LSM around this process) fails the session with the init's message. Not
    /// attempted here: that would cost every session a fork of the caller.
    pub user_namespaces: bool,
    /// The Landlock ABI version, `None` when Landlock is absent or disabled.
    pub landlock_abi: Option<i32>,
    /// Whether seccomp filters with `SECCOMP_RET_ERRNO` are available.
    pub seccomp: bool,
    /// Human-readable findings, lowercase, one per line.
    pub notes: Vec<String>,
}

/// A cgroup version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CgroupVersion {
    /// The legacy per-controller hierarchies.
    V1,
    /// The unified hierarchy.
    V2,
}

impl CgroupVersion {
    pub(crate) fn label(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "cgroup v1",
            CgroupVersion::V2 => "cgroup v2",
        }
    }
}

/// Where one controller's per-session groups are created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The cgroup version of this controller.
    pub version: CgroupVersion,
    /// The directory of the caller's own cgroup under which session groups are created.
    pub parent: PathBuf,
}

/// Which of the memory, pids and cpu limits can hold. `None`: neither a delegated v2 controller
/// nor a mounted, writable v1 hierarchy was found (checked by creating a probe group).
///
/// Probed apart from [`HostReport`], and only when a session asks for a limit: the probe
/// creates and removes a group per controller.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CgroupSupport {
    /// `unified`, `hybrid`, `legacy` or `none`: which hierarchies are mounted.
    pub layout: String,
    /// The memory limit.
    pub memory: Option<Placement>,
    /// The pids limit.
    pub pids: Option<Placement>,
    /// The cpu bandwidth limit.
    pub cpu: Option<Placement>,
    /// Human-readable findings, lowercase, one per line.
    pub notes: Vec<String>,
}

/// A cgroup controller moat uses, with its v2 and v1 limit files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    pub(crate) const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }

    /// How a held limit is recorded: `memory limit (cgroup v1)`.
    pub(crate) fn held(self, version: CgroupVersion) -> String {
        format!("{} limit ({})", self.name(), version.label())
    }

    /// A file that exists in a group where the controller can limit.
    fn limit_file(self, version: CgroupVersion) -> &'static str {
        match (self, version) {
            (Controller::Memory, CgroupVersion::V2) => "memory.max",
            (Controller::Memory, CgroupVersion::V1) => "memory.limit_in_bytes",
            (Controller::Pids, CgroupVersion::V2 | CgroupVersion::V1) => "pids.max",
            (Controller::Cpu, CgroupVersion::V2) => "cpu.max",
            (Controller::Cpu, CgroupVersion::V1) => "cpu.cfs_quota_us",
        }
    }
}

impl HostReport {
    /// What would hold for `spec` on this host, in the words of
    /// [`Outcome::enforced`](crate::Outcome::enforced): for the session-start record, before
    /// the sandbox runs. ([`run`](crate::run) refuses a required property that is missing.)
    /// Probes the cgroups ([`cgroup_support`](crate::cgroup_support)) only when `spec` asks
    /// for a limit.
    pub fn enforceable(&self, spec: &Spec) -> Vec<String> {
        let mut enforced = crate::confine::enforced_properties(self.landlock_abi, self.seccomp);
        let limits = &spec.limits;
        if limits.wants_cgroups() {
            let cgroups = crate::host::cgroup_support();
            for controller in Controller::ALL {
                if let (true, Some(placement)) =
                    (limits.wants(controller), cgroups.placement(controller))
                {
                    enforced.push(controller.held(placement.version));
                }
            }
        }
        if let Some(timeout) = limits.timeout {
            enforced.push(format!("timeout ({})", crate::host::seconds(timeout)));
        }
        enforced
    }
}

impl CgroupSupport {
    pub(crate) fn placement(&self, controller: Controller) -> Option<&Placement> {
        match controller {
            Controller::Memory => self.memory.as_ref(),
            Controller::Pids => self.pids.as_ref(),
            Controller::Cpu => self.cpu.as_ref(),
        }
    }
}

/// Probes this host: user namespaces, Landlock and seccomp (the cgroups: [`probe_cgroups`]).
pub fn probe() -> HostReport {
    let mut notes = Vec::new();
    let user_namespaces = probe_user_namespaces(&mut notes);
    let landlock_abi = landlock_abi();
    match landlock_abi {
        Some(abi) if abi < 4 => notes.push(format!(
            "landlock abi {abi} cannot restrict tcp; the empty network namespace still does"
        )),
        Some(_) => {}
        None => notes
            .push("landlock is not available (kernel ≥ 5.13 with lsm=landlock needed)".to_owned()),
    }
    let seccomp = probe_seccomp();
    if !seccomp {
        notes.push("seccomp filters are not available".to_owned());
    }
    HostReport {
        user_namespaces,
        landlock_abi,
        seccomp,
        notes,
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
}

fn probe_user_namespaces(notes: &mut Vec<String>) -> bool {
    if read_trimmed("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        notes.push("user namespaces are disabled (user.max_user_namespaces = 0)".to_owned());
        return false;
    }
    let root = rustix::process::geteuid().is_root();
    if !root && read_trimmed("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        notes.push(
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)"
                .to_owned(),
        );
        return false;
    }
    if !root
        && read_trimmed("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref()
            == Some("1")
    {
        notes.push(
            "apparmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)"
                .to_owned(),
        );
        return false;
    }
    true
}

/// The Landlock ABI version the running kernel reports.
pub(crate) fn landlock_abi() -> Option<i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    #[allow(unsafe_code)]
    // SAFETY: landlock_create_ruleset with a null attribute pointer, size 0 and the VERSION flag
    // only returns the ABI version (or an error); it reads and writes no memory.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (version > 0).then(|| i32::try_from(version).unwrap_or(i32::MAX))
}

/// Seccomp filters that can answer `EPERM`: the kernel has seccomp (`PR_GET_SECCOMP` answers
/// instead of failing with `EINVAL`: one system call where `/proc/self/status` was read and
/// searched for its `Seccomp:` line) and lists the `errno` action.
fn probe_seccomp() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: PR_GET_SECCOMP takes no pointer; it returns this thread's seccomp mode (0, or 2
    // under a filter) or fails with EINVAL when the kernel has no seccomp.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP) };
    let errno = read_trimmed("/proc/sys/kernel/seccomp/actions_avail")
        .is_some_and(|actions| actions.split_whitespace().any(|action| action == "errno"));
    mode >= 0 && errno
}

struct CgroupMount {
    version: CgroupVersion,
    root: String,
    mount_point: PathBuf,
    controllers: Vec<String>,
}

fn cgroup_mounts() -> Vec<CgroupMount> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mount_point), Some(fs_type)) =
            (left.get(3), left.get(4), right.first())
        else {
            continue;
        };
        let version = match *fs_type {
            "cgroup2" => CgroupVersion::V2,
            "cgroup" => CgroupVersion::V1,
            _ => continue,
        };
        let controllers = right
            .get(2)
            .map(|options| options.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        mounts.push(CgroupMount {
            version,
            root: unescape_mountinfo(root),
            mount_point: PathBuf::from(unescape_mountinfo(mount_point)),
            controllers,
        });
    }
    mounts
}

fn unescape_mountinfo(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The caller's own cgroup directory in a hierarchy: its `/proc/self/cgroup` path under the mount.
fn own_directory(
    mount: &CgroupMount,
    self_cgroup: &str,
    controller: Controller,
) -> Option<PathBuf> {
    let path = self_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (hierarchy, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let matches = match mount.version {
            CgroupVersion::V2 => hierarchy == "0" && controllers.is_empty(),
            CgroupVersion::V1 => controllers.split(',').any(|name| name == controller.name()),
        };
        matches.then(|| path.to_owned())
    })?;
    let relative = if mount.root == "/" {
        path.as_str()
    } else {
        path.strip_prefix(mount.root.as_str())
            .unwrap_or(path.as_str())
    };
    Some(mount.mount_point.join(relative.trim_start_matches('/')))
}

/// Creates and removes a probe group under `parent`; true when the limit file appears.
fn can_limit_under(parent: &Path, controller: Controller, version: CgroupVersion) -> bool {
    let probe = parent.join(format!("moat-probe-{}", std::process::id()));
    if fs::create_dir(&probe).is_err() {
        return false;
    }
    let limit_file = probe.join(controller.limit_file(version));
    let usable = fs::OpenOptions::new().write(true).open(&limit_file).is_ok();
    let _ = fs::remove_dir(&probe);
    usable
}

/// Probes which resource limits can hold here, and through which cgroup version: creates and
/// removes a group per controller.
pub fn probe_cgroups() -> CgroupSupport {
    let mut notes = Vec::new();
    let mounts = cgroup_mounts();
    let self_cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let has_v2 = mounts
        .iter()
        .any(|mount| mount.version == CgroupVersion::V2);
    let has_v1 = mounts
        .iter()
        .any(|mount| mount.version == CgroupVersion::V1);
    let layout = match (has_v2, has_v1) {
        (true, true) => "hybrid",
        (true, false) => "unified",
        (false, true) => "legacy",
        (false, false) => "none",
    };
    let mut support = CgroupSupport {
        layout: layout.to_owned(),
        ..CgroupSupport::default()
    };
    for controller in Controller::ALL {
        let placement = find_placement(&mounts, &self_cgroup, controller, &mut notes);
        match &placement {
            Some(found) => notes.push(format!(
                "{} limit holds through {} under {}",
                controller.name(),
                found.version.label(),
                found.parent.display()
            )),
            None => notes.push(format!(
                "{} limit cannot hold: no delegated cgroup v2 controller and no writable v1 hierarchy",
                controller.name()
            )),
        }
        match controller {
            Controller::Memory => support.memory = placement,
            Controller::Pids => support.pids = placement,
            Controller::Cpu => support.cpu = placement,
        }
    }
    support.notes = notes;
    support
}

fn find_placement(
    mounts: &[CgroupMount],
    self_cgroup: &str,
    controller: Controller,
    notes: &mut Vec<String>,
) -> Option<Placement> {
    for mount in mounts
        .iter()
        .filter(|mount| mount.version == CgroupVersion::V2)
    {
        let Some(parent) = own_directory(mount, self_cgroup, controller) else {
            continue;
        };
        let available = fs::read_to_string(parent.join("cgroup.subtree_control"))
            .unwrap_or_default()
            .split_whitespace()
            .any(|name| name == controller.name());
        if available && can_limit_under(&parent, controller, CgroupVersion::V2) {
            return Some(Placement {
                version: CgroupVersion::V2,
                parent,
            });
        }
        notes.push(format!(
            "cgroup v2 at {}: the {} controller is not delegated to child groups (cgroup.subtree_control)",
            parent.display(),
            controller.name()
        ));
    }
    for mount in mounts.iter().filter(|mount| {
        mount.version == CgroupVersion::V1
            && mount
                .controllers
                .iter()
                .any(|name| name == controller.name())
    }) {
        let Some(parent) = own_directory(mount, self_cgroup, controller) else {
            continue;
        };
        if can_limit_under(&parent, controller, CgroupVersion::V1) {
            return Some(Placement {
                version: CgroupVersion::V1,
                parent,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_directory_follows_proc_self_cgroup() {
        let mount = CgroupMount {
            version: CgroupVersion::V1,
            root: "/".to_owned(),
            mount_point: "/sys/fs/cgroup/memory".into(),
            controllers: vec!["rw".to_owned(), "memory".to_owned()],
        };
        let self_cgroup = "8:pids:/\n4:memory:/process_api/abc\n0::/\n";
        assert_eq!(
            own_directory(&mount, self_cgroup, Controller::Memory),
            Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"))
        );
        let unified = CgroupMount {
            version: CgroupVersion::V2,
            root: "/".to_owned(),
            mount_point: "/sys/fs/cgroup/unified".into(),
            controllers: vec![],
        };
        assert_eq!(
            own_directory(&unified, self_cgroup, Controller::Pids),
            Some(PathBuf::from("/sys/fs/cgroup/unified/"))
        );
    }

    #[test]
    fn the_cgroup_probe_names_every_limit() {
        let cgroups = probe_cgroups();
        for controller in Controller::ALL {
            assert!(
                cgroups
                    .notes
                    .iter()
                    .any(|note| note.starts_with(controller.name())),
                "{:?}",
                cgroups.notes
            );
        }
    }
}

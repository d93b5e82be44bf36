//! The new root: a tmpfs holding only what the agent needs, then `pivot_root`.
//!
//! Sources are reached through the old root at `/oldroot` (bubblewrap's layout), so no host
//! path is shadowed while the new root is built, even when the workspace lives under `/tmp`.

use std::ffi::CStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use rustix::fs::StatVfsMountFlags;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use crate::protocol::GATE_DIR_INSIDE;
use crate::spec::Spec;

/// Under the staging root: where the new root is built and where the host root is kept.
const NEW_ROOT: &str = "/newroot";
const OLD_ROOT: &str = "/oldroot";
/// Device nodes bound from the host `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// Top-level names that are merged-usr links (or directories bound read-only when not).
pub(crate) const USR_LINKS: [&str; 5] = ["bin", "sbin", "lib", "lib64", "lib32"];
/// Non-secret `/etc` entries bound read-only: CA roots (clients need them), the alternatives
/// links into `/usr` (Debian's `awk`, `editor`, …), the dynamic linker cache, time zone, and
/// the service and protocol names. No resolv.conf, no shadow, no hostname of the host.
/// Only `ssl/certs` and `ssl/openssl.cnf`: `/etc/ssl/private` holds host keys.
pub(crate) const ETC_BINDS: [&str; 9] = [
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    "alternatives",
    "ld.so.cache",
    "localtime",
    "services",
    "protocols",
];

fn err(what: String) -> impl FnOnce(rustix::io::Errno) -> String {
    move |error| format!("{what}: {error}")
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> String {
    move |error| format!("{what}: {error}")
}

/// `/newroot` + an absolute path inside the sandbox.
fn inside(path: &Path) -> PathBuf {
    Path::new(NEW_ROOT).join(path.strip_prefix("/").unwrap_or(path))
}

/// `/oldroot` + an absolute host path.
fn host(path: &Path) -> PathBuf {
    Path::new(OLD_ROOT).join(path.strip_prefix("/").unwrap_or(path))
}

/// Builds what every session's root has, with the host root still reachable: the staging
/// root, `/usr` and the merged-usr links, the read-only `/etc` entries, `/tmp` and `/dev`.
/// Runs in the init as soon as it has entered the namespaces, before the host has described
/// the session when it was forked early; [`build`] follows.
pub(crate) fn prepare() -> Result<(), String> {
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(err("could not make mounts private".to_owned()))?;
    stage()?;
    tmpfs(Path::new(NEW_ROOT), MountFlags::NODEV, c"mode=0755")?;

    bind_read_only(Path::new("/usr"), Path::new("/usr"))?;
    for name in USR_LINKS {
        let source = host(Path::new("/").join(name).as_path());
        match fs::read_link(&source) {
            Ok(target) => symlink(&target, inside(Path::new(name)))
                .map_err(io_err(format!("could not link /{name}")))?,
            Err(_) if source.is_dir() => {
                bind_read_only(&Path::new("/").join(name), &Path::new("/").join(name))?
            }
            Err(_) => {}
        }
    }
    let etc = inside(Path::new("/etc"));
    fs::create_dir(&etc).map_err(io_err(format!("could not create {}", etc.display())))?;
    for name in ETC_BINDS {
        let path = Path::new("/etc").join(name);
        if host(&path).exists() {
            bind_read_only(&path, &path)?;
        } else if let Ok(link) = fs::read_link(host(&path)) {
            // An absolute link resolves from the staging root, where it names nothing; one into
            // `/usr` (`/etc/localtime`) is made again as it is, and resolves inside.
            if link.starts_with("/usr/") {
                symlink(&link, inside(&path))
                    .map_err(io_err(format!("could not link {}", path.display())))?;
            }
        }
    }
    tmpfs(&inside(Path::new("/tmp")), MountFlags::NODEV, c"mode=1777")?;

    let dev = inside(Path::new("/dev"));
    tmpfs(&dev, MountFlags::NOEXEC, c"mode=0755")?;
    for name in DEVICES {
        let source = host(&Path::new("/dev").join(name));
        if !source.exists() {
            continue;
        }
        let target = dev.join(name);
        fs::write(&target, b"").map_err(io_err(format!("could not create /dev/{name}")))?;
        rustix::mount::mount_bind(&source, &target)
            .map_err(err(format!("could not bind /dev/{name}")))?;
        remount(
            &target,
            &source,
            MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::RDONLY,
        )?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(name)).map_err(io_err(format!("could not link /dev/{name}")))?;
    }
    tmpfs(
        &dev.join("shm"),
        MountFlags::NODEV | MountFlags::NOEXEC,
        c"mode=1777",
    )?;
    rustix::mount::mount_remount(
        &dev,
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NOEXEC,
        "mode=0755",
    )
    .map_err(err("could not make /dev read-only".to_owned()))
}

/// Completes the root [`prepare`] began with what the session's spec names and pivots into it.
/// Runs in pid 1 of the new namespaces (a fresh `/proc` shows the namespace of the process that
/// mounts it) while the session waits for its admission: everything the agent sees is in place
/// but its home files and the gate's socket, which appears in the mounted gate directory when
/// the gate admits the session. The host root is still mounted, out of sight, until the
/// returned [`OldRoot`] is detached.
pub(crate) fn build(spec: &Spec) -> Result<OldRoot, String> {
    let etc = inside(Path::new("/etc"));
    for (name, text) in etc_files(&spec.home, None) {
        fs::write(etc.join(name), text).map_err(io_err(format!("could not write /etc/{name}")))?;
    }
    tmpfs(&inside(&spec.home), MountFlags::NODEV, c"mode=0700")?;
    // Also under /usr: a separate mount there (e.g. /usr/local) is not part of the /usr bind.
    for path in &spec.ro_paths {
        bind_read_only(path, path)?;
    }
    bind(&spec.workspace, &spec.workspace, MountFlags::empty())?;

    let proc = inside(Path::new("/proc"));
    fs::create_dir_all(&proc).map_err(io_err("could not create /proc".to_owned()))?;
    rustix::mount::mount(
        "proc",
        &proc,
        "proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::RDONLY,
        None,
    )
    .map_err(err("could not mount a fresh /proc".to_owned()))?;

    // The gate binds the session's socket in this directory when it admits the session; the
    // read-only mount still lets the bridge connect to it.
    bind(
        &spec.gate_dir,
        Path::new(GATE_DIR_INSIDE),
        MountFlags::RDONLY | MountFlags::NOEXEC,
    )?;

    rustix::mount::mount_remount(
        NEW_ROOT,
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
        "mode=0755",
    )
    .map_err(err("could not make the root read-only".to_owned()))?;
    pivot()
}

/// Mounts a tmpfs at `target` (created first), nosuid and `flags`, with `mode`.
fn tmpfs(target: &Path, flags: MountFlags, mode: &CStr) -> Result<(), String> {
    fs::create_dir_all(target).map_err(io_err(format!("could not create {}", target.display())))?;
    rustix::mount::mount(
        "tmpfs",
        target,
        "tmpfs",
        flags | MountFlags::NOSUID,
        Some(mode),
    )
    .map_err(err(format!(
        "could not mount a tmpfs on {}",
        target.display()
    )))
}

/// Mounts the staging tmpfs and pivots into it, keeping the host root at [`OLD_ROOT`].
fn stage() -> Result<(), String> {
    let base = Path::new("/tmp");
    rustix::mount::mount(
        "tmpfs",
        base,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(c"mode=0755"),
    )
    .map_err(err("could not mount the staging tmpfs".to_owned()))?;
    for directory in ["newroot", "oldroot"] {
        fs::create_dir(base.join(directory))
            .map_err(io_err(format!("could not create /{directory}")))?;
    }
    rustix::process::chdir(base).map_err(err("could not enter the staging tmpfs".to_owned()))?;
    rustix::process::pivot_root(".", "oldroot")
        .map_err(err("could not pivot to the staging root".to_owned()))?;
    rustix::process::chdir("/").map_err(err("could not enter the staging root".to_owned()))
}

/// Pivots into the new root. The staging root, and the host root kept under it at
/// [`OLD_ROOT`], stay mounted over the new root until [`OldRoot::detach`]. Meanwhile a path
/// walk from `/` or the working directory stays in the new root (it does not enter a mount
/// stacked on the directory it starts from), but one that climbs to the root with `..` steps
/// into them ([`check_nothing_over_the_root`]): the init's own lookups of absolute paths are
/// safe, and nothing of the session's may run until the detach.
fn pivot() -> Result<OldRoot, String> {
    rustix::process::chdir(NEW_ROOT).map_err(err("could not enter the new root".to_owned()))?;
    rustix::process::pivot_root(".", ".")
        .map_err(err("could not pivot into the new root".to_owned()))?;
    rustix::process::chdir("/").map_err(err("could not enter /".to_owned()))?;
    Ok(OldRoot(()))
}

/// The staging root, still mounted over the new root after the pivot, with the host root under
/// it: nothing of the session's may start before it is detached.
#[must_use = "the host root stays mounted in the sandbox until the old root is detached"]
pub(crate) struct OldRoot(());

impl OldRoot {
    /// Detaches the staging root, and with it the host root under it: a lazy unmount takes the
    /// whole tree below the mount it names (as runc detaches the old root). One unmount, not
    /// bubblewrap's two (the host root first, then the staging root). Each waits for an
    /// expedited RCU grace period (`synchronize_rcu_expedited` in the kernel's
    /// `namespace_unlock`): 0.03 to 1.2 ms here, so the init hands this to a thread of its own
    /// ([`crate::init`]). Any thread of the init can call it: they share its root.
    pub(crate) fn detach(self) -> Result<(), String> {
        rustix::mount::unmount("/", UnmountFlags::DETACH)
            .map_err(err("could not detach the staging and host roots".to_owned()))
    }
}

/// Checks that nothing is mounted over the root: `/..` is `/` itself. Until the old root is
/// detached it is not: a walk that climbs to the root steps into the mount stacked on it, and
/// `/tmp/..` lists the host's root. Checked before the agent starts, after the detach.
pub(crate) fn check_nothing_over_the_root() -> Result<(), String> {
    let identity = |path: &str| {
        rustix::fs::stat(path)
            .map(|stat| (stat.st_dev, stat.st_ino))
            .map_err(err(format!("could not stat {path}")))
    };
    if identity("/")? != identity("/..")? {
        return Err("the host root is still mounted over the sandbox's root".to_owned());
    }
    Ok(())
}

fn bind_read_only(source: &Path, target: &Path) -> Result<(), String> {
    bind(source, target, MountFlags::RDONLY)
}

/// Binds a host path at a path inside (creating the mount point), nosuid and nodev; errors name
/// the host path as the spec gave it.
fn bind(source: &Path, target: &Path, extra: MountFlags) -> Result<(), String> {
    let named = source;
    let source = host(source);
    let target = inside(target);
    let metadata =
        fs::metadata(&source).map_err(io_err(format!("cannot mount {}", named.display())))?;
    if metadata.is_dir() {
        fs::create_dir_all(&target)
            .map_err(io_err(format!("could not create {}", target.display())))?;
    } else {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .map_err(io_err(format!("could not create {}", parent.display())))?;
        }
        fs::write(&target, b"")
            .map_err(io_err(format!("could not create {}", target.display())))?;
    }
    rustix::mount::mount_bind(&source, &target)
        .map_err(err(format!("could not bind {}", named.display())))?;
    remount(
        &target,
        &source,
        MountFlags::NOSUID | MountFlags::NODEV | extra,
    )
}

/// Re-mounts a bind with `flags`, keeping the source's locked `noexec` (a user namespace may
/// add restrictions to a mount it did not create, never remove them).
fn remount(target: &Path, source: &Path, flags: MountFlags) -> Result<(), String> {
    let mut flags = flags | MountFlags::BIND;
    let locked = rustix::fs::statvfs(source)
        .map(|stat| stat.f_flag)
        .unwrap_or(StatVfsMountFlags::empty());
    for (statvfs, mount) in [
        (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (StatVfsMountFlags::RDONLY, MountFlags::RDONLY),
    ] {
        if locked.contains(statvfs) {
            flags |= mount;
        }
    }
    rustix::mount::mount_remount(target, flags, "")
        .map_err(err(format!("could not restrict {}", target.display())))
}

/// The generated `/etc` files; `agent` adds a passwd and group entry for a non-root uid:gid
/// (the podman backend runs the agent as the host user; the embedded one maps it to 0).
pub(crate) fn etc_files(home: &Path, agent: Option<(u32, u32)>) -> [(&'static str, String); 5] {
    let home = home.display();
    let (mut passwd, mut group) = (
        format!("root:x:0:0:agent:{home}:/bin/sh\n"),
        "root:x:0:\n".to_owned(),
    );
    if let Some((uid, gid)) = agent.filter(|&(uid, _)| uid != 0) {
        passwd.push_str(&format!("agent:x:{uid}:{gid}:agent:{home}:/bin/sh\n"));
        if gid != 0 {
            group.push_str(&format!("agent:x:{gid}:\n"));
        }
    }
    passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    group.push_str("nogroup:x:65534:\n");
    [
        ("passwd", passwd),
        ("group", group),
        ("hosts", "127.0.0.1\tlocalhost moat\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_owned()),
        ("nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files\nservices: files\nprotocols: files\n".to_owned()),
        ("hostname", "moat\n".to_owned()),
    ]
}

/// Writes `files` (paths relative to `home`, already validated to stay inside it), mode 0600.
pub(crate) fn write_files(home: &Path, files: &[(PathBuf, Vec<u8>)]) -> Result<(), String> {
    for (relative, bytes) in files {
        let path = home.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(io_err(format!("could not create {}", parent.display())))?;
        }
        fs::write(&path, bytes).map_err(io_err(format!(
            "could not write $HOME/{}",
            relative.display()
        )))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(io_err(format!(
            "could not restrict $HOME/{}",
            relative.display()
        )))?;
    }
    Ok(())
}

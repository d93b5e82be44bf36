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
/// Only `ssl/certs` and `ssl/openssl.cnf`: `/etc/ssl/private` holds host keys. Not
/// `ca-certificates.conf` and `ca-certificates/`: only `update-ca-certificates` reads them, to
/// rebuild `ssl/certs`, which no session can write.
pub(crate) const ETC_BINDS: [&str; 7] = [
    "ssl/certs",
    "ssl/openssl.cnf",
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

    let mut binds = Binds::default();
    binds.bind_read_only(Path::new("/usr"), Path::new("/usr"))?;
    for name in USR_LINKS {
        let path = Path::new("/").join(name);
        match fs::read_link(host(&path)) {
            Ok(target) => symlink(&target, inside(&path))
                .map_err(io_err(format!("could not link /{name}")))?,
            Err(_) => {
                if let Ok(source) = Source::of(&path)
                    && source.is_dir
                {
                    binds.bind(&source, &path, MountFlags::RDONLY)?;
                }
            }
        }
    }
    let etc = inside(Path::new("/etc"));
    fs::create_dir(&etc).map_err(io_err(format!("could not create {}", etc.display())))?;
    for name in ETC_BINDS {
        let path = Path::new("/etc").join(name);
        if let Ok(source) = Source::of(&path) {
            binds.bind(&source, &path, MountFlags::RDONLY)?;
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
        let path = Path::new("/dev").join(name);
        let Ok(source) = Source::of(&path) else {
            continue;
        };
        binds.bind_device(&source, &path)?;
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
    let mut binds = Binds::default();
    // Also under /usr: a separate mount there (e.g. /usr/local) is not part of the /usr bind.
    for path in &spec.ro_paths {
        binds.bind_read_only(path, path)?;
    }
    binds.bind_as(&spec.workspace, &spec.workspace, MountFlags::empty())?;

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
    binds.bind_as(
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

/// A host path about to be bound into the new root, as its one `statx` found it.
struct Source {
    /// The host path, as the caller named it (for errors).
    named: PathBuf,
    /// The path seen from the staging root (under [`OLD_ROOT`]).
    path: PathBuf,
    is_dir: bool,
    /// The id of the mount it is on; `None` on kernels before 5.8.
    mount: Option<u64>,
}

impl Source {
    /// Looks up a host path (following links); fails when it does not exist.
    fn of(named: &Path) -> std::io::Result<Source> {
        let path = host(named);
        let found = rustix::fs::statx(
            rustix::fs::CWD,
            &path,
            rustix::fs::AtFlags::empty(),
            rustix::fs::StatxFlags::TYPE | rustix::fs::StatxFlags::MNT_ID,
        )?;
        let mount = (found.stx_mask & rustix::fs::StatxFlags::MNT_ID.bits() != 0)
            .then_some(found.stx_mnt_id);
        Ok(Source {
            named: named.to_owned(),
            path,
            is_dir: rustix::fs::FileType::from_raw_mode(found.stx_mode.into())
                == rustix::fs::FileType::Directory,
            mount,
        })
    }
}

/// Binds host paths into the new root, each then remounted nosuid, nodev (devices aside) and
/// with what else is asked. The remount must repeat the flags the host locked on the source's
/// mount (a user namespace cannot clear them), read with `statfs` once per mount rather than
/// once per bind: a root's binds come from two or three mounts (the host's root, its `/dev`).
#[derive(Default)]
struct Binds {
    /// The flags of each source mount seen so far, by mount id.
    locked: Vec<(u64, MountFlags)>,
}

impl Binds {
    fn bind_read_only(&mut self, source: &Path, target: &Path) -> Result<(), String> {
        self.bind_as(source, target, MountFlags::RDONLY)
    }

    /// Binds the host path `source` at `target` inside; errors name the host path as the spec
    /// gave it.
    fn bind_as(&mut self, source: &Path, target: &Path, extra: MountFlags) -> Result<(), String> {
        let found =
            Source::of(source).map_err(io_err(format!("cannot mount {}", source.display())))?;
        self.bind(&found, target, extra)
    }

    /// Binds `source` at `target` inside, nosuid, nodev and `extra`.
    fn bind(&mut self, source: &Source, target: &Path, extra: MountFlags) -> Result<(), String> {
        self.mount(
            source,
            target,
            MountFlags::NOSUID | MountFlags::NODEV | extra,
        )
    }

    /// Binds the host device `source` at `target` inside, read-only, nosuid and noexec.
    fn bind_device(&mut self, source: &Source, target: &Path) -> Result<(), String> {
        self.mount(
            source,
            target,
            MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::RDONLY,
        )
    }

    /// The bind itself at `target` inside (its mount point created first), then a remount with
    /// `flags` and those locked on the source's mount (a user namespace may not clear a locked
    /// `noexec`, `nosuid`, `nodev` or `ro`: the remount fails with EPERM unless it keeps them,
    /// as bubblewrap's does).
    fn mount(&mut self, source: &Source, target: &Path, flags: MountFlags) -> Result<(), String> {
        let target = &inside(target);
        if source.is_dir {
            fs::create_dir_all(target)
                .map_err(io_err(format!("could not create {}", target.display())))?;
        } else {
            mount_point_file(target)?;
        }
        rustix::mount::mount_bind(&source.path, target)
            .map_err(err(format!("could not bind {}", source.named.display())))?;
        let flags = flags | MountFlags::BIND | self.locked(source);
        rustix::mount::mount_remount(target, flags, "")
            .map_err(err(format!("could not restrict {}", target.display())))
    }

    /// The flags locked on the mount `source` is on.
    fn locked(&mut self, source: &Source) -> MountFlags {
        let known = source
            .mount
            .and_then(|id| self.locked.iter().find(|(seen, _)| *seen == id));
        if let Some(&(_, flags)) = known {
            return flags;
        }
        let on_source = rustix::fs::statvfs(&source.path)
            .map(|stat| stat.f_flag)
            .unwrap_or(StatVfsMountFlags::empty());
        let mut flags = MountFlags::empty();
        for (statvfs, mount) in [
            (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
            (StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
            (StatVfsMountFlags::NODEV, MountFlags::NODEV),
            (StatVfsMountFlags::RDONLY, MountFlags::RDONLY),
        ] {
            if on_source.contains(statvfs) {
                flags |= mount;
            }
        }
        if let Some(id) = source.mount {
            self.locked.push((id, flags));
        }
        flags
    }
}

/// Creates an empty file to bind a file on; its directory only when it is missing.
fn mount_point_file(target: &Path) -> Result<(), String> {
    let create = || fs::File::create(target).map(drop);
    create()
        .or_else(|error| match target.parent() {
            Some(parent) if error.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(parent).and_then(|()| create())
            }
            _ => Err(error),
        })
        .map_err(io_err(format!("could not create {}", target.display())))
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

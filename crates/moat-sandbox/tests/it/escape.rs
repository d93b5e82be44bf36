//! Each test makes one escape attempt from inside the sandbox and asserts that it fails, under
//! both backends (`name::embedded`, `name::podman`).

use std::fs;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::process::Command;

use moat_sandbox::Backend;

use crate::support::{
    HOME, Session, assert_planted_variable_unseen, on_every_backend, planted_run, python,
    rerun_with_planted_variable, test_name,
};

on_every_backend!(
    reading_a_planted_host_secret_fails,
    writing_outside_the_workspace_fails,
    tcp_to_another_host_loopback_port_fails,
    tcp_and_udp_to_a_public_address_fail,
    a_host_unix_socket_outside_the_workspace_is_unreachable,
    host_processes_are_invisible,
    signalling_a_host_process_fails,
    ptrace_and_reading_other_process_memory_fail,
    mount_fails,
    unshare_and_new_namespaces_fail,
    bpf_io_uring_keyctl_and_raw_sockets_fail,
    #[cfg(target_arch = "x86_64")]
    x32_system_calls_are_refused,
    the_host_environment_is_invisible,
    read_only_paths_are_readable_but_not_writable,
    setting_the_setuid_bit_fails,
    the_network_is_the_sandboxs_own_with_only_lo_up,
    climbing_above_the_root_stays_in_the_sandbox,
);

fn reading_a_planted_host_secret_fails(backend: Backend) {
    let secrets = tempfile::tempdir().expect("secret dir");
    let secret = secrets.path().join("api-key");
    fs::write(&secret, "sk-planted-host-secret").expect("plant");
    let session = Session::new();
    let ran = session.run_on(&backend, &format!(
        "cat {secret} && echo READ-SECRET\nls {dir} && echo LISTED-SECRET-DIR\ncat /etc/shadow && echo READ-SHADOW\nls /root && echo LISTED-ROOT\ncat /etc/resolv.conf && echo READ-RESOLV\ncat /oldroot/etc/hostname && echo READ-OLDROOT\ncat {gate_dir}/* && echo READ-GATE-DIR\nls /sys/fs/cgroup && echo LISTED-SYS\ncat /run/.containerenv && echo READ-CONTAINERENV",
        secret = secret.display(),
        dir = secrets.path().display(),
        gate_dir = session.gate_dir.path().display(),
    ));
    ran.completed()
        .refute("READ-SECRET")
        .refute("LISTED-SECRET-DIR")
        .refute("READ-SHADOW")
        .refute("LISTED-ROOT")
        .refute("READ-RESOLV")
        .refute("READ-OLDROOT")
        .refute("READ-GATE-DIR")
        .refute("LISTED-SYS")
        .refute("READ-CONTAINERENV")
        .refute("sk-planted-host-secret");
    if let Backend::Podman { .. } = backend {
        ran.held("podman container");
    }
}

fn writing_outside_the_workspace_fails(backend: Backend) {
    let outside = tempfile::tempdir().expect("outside dir");
    let session = Session::new();
    let target = outside.path().join("written");
    let ran = session.run_on(&backend, &format!(
        "echo x > {target} && echo WROTE-HOST-TMP\necho x > /etc/passwd && echo WROTE-ETC\necho x > /usr/moat && echo WROTE-USR\necho x > /moat && echo WROTE-ROOT\nmkdir /run/x && echo WROTE-RUN\necho x > /run/moat/init && echo WROTE-INIT\necho x > /dev/moat && echo WROTE-DEV\necho x > /proc/sys/kernel/hostname && echo WROTE-PROC\necho ok > inside && echo WROTE-WORKSPACE",
        target = target.display()
    ));
    ran.completed()
        .refute("WROTE-HOST-TMP")
        .refute("WROTE-ETC")
        .refute("WROTE-USR")
        .refute("WROTE-ROOT")
        .refute("WROTE-RUN")
        .refute("WROTE-INIT")
        .refute("WROTE-DEV")
        .refute("WROTE-PROC")
        .expect("WROTE-WORKSPACE");
    assert!(!target.exists(), "a file appeared outside the workspace");
    assert_eq!(
        fs::read_to_string(session.workspace().join("inside")).expect("workspace file"),
        "ok\n"
    );
}

fn tcp_to_another_host_loopback_port_fails(backend: Backend) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("host listener");
    let port = listener.local_addr().expect("address").port();
    let session = Session::new();
    let ran = session.run_on(&backend, &python(&format!(
        "import socket\nfor host, port in ((\"127.0.0.1\", {port}), (\"127.0.0.1\", 22), (\"127.0.0.1\", 80), (\"10.0.2.2\", {port})):\n    s = socket.socket()\n    s.settimeout(3)\n    try:\n        s.connect((host, port))\n        print(\"CONNECTED\", host, port)\n    except OSError as error:\n        print(\"refused\", host, port, error)"
    )));
    ran.completed().refute("CONNECTED").expect("refused");
}

fn tcp_and_udp_to_a_public_address_fail(backend: Backend) {
    let session = Session::new();
    let ran = session.run_on(&backend, &python(
        "import socket\nfor host in (\"1.1.1.1\", \"93.184.215.14\"):\n    s = socket.socket()\n    s.settimeout(3)\n    try:\n        s.connect((host, 443))\n        print(\"CONNECTED\", host)\n    except OSError as error:\n        print(\"refused\", host, error)\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ntry:\n    u.sendto(b\"x\", (\"8.8.8.8\", 53))\n    print(\"UDP-SENT\")\nexcept OSError as error:\n    print(\"udp refused\", error)\ntry:\n    socket.getaddrinfo(\"example.com\", 443)\n    print(\"RESOLVED\")\nexcept OSError as error:\n    print(\"no dns\", error)",
    ));
    ran.completed()
        .refute("CONNECTED")
        .refute("UDP-SENT")
        .refute("RESOLVED");
}

fn a_host_unix_socket_outside_the_workspace_is_unreachable(backend: Backend) {
    let dir = tempfile::tempdir().expect("socket dir");
    let path = dir.path().join("host.sock");
    let _listener = UnixListener::bind(&path).expect("host unix socket");
    let abstract_name = format!("moat-test-{}", std::process::id());
    let _abstract = {
        use std::os::linux::net::SocketAddrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .expect("abstract");
        UnixListener::bind_addr(&address).expect("abstract listener")
    };
    let session = Session::new();
    let ran = session.run_on(&backend, &python(&format!(
        "import socket\nfor address in ({path:?}, \"\\0{abstract_name}\", \"/run/docker.sock\", \"/var/run/docker.sock\"):\n    s = socket.socket(socket.AF_UNIX)\n    try:\n        s.connect(address)\n        print(\"CONNECTED\", repr(address))\n    except OSError as error:\n        print(\"refused\", repr(address), error)",
        path = path.display().to_string()
    )));
    ran.completed().refute("CONNECTED");
}

fn host_processes_are_invisible(backend: Backend) {
    let session = Session::new();
    let test_pid = std::process::id();
    let ran = session.run_on(&backend, &format!(
        "test -e /proc/{test_pid} && echo SAW-TEST-PROCESS\nps -e -o pid=,comm= > processes\ngrep -q -v -E 'moat-sandbox|init|sh|ps' processes && echo SAW-OTHER-PROCESS\nls /proc | grep -c -E '^[0-9]+$' > count\nhostname"
    ));
    ran.completed()
        .refute("SAW-TEST-PROCESS")
        .refute("SAW-OTHER-PROCESS")
        .expect("moat");
    let count: usize = fs::read_to_string(session.workspace().join("count"))
        .expect("count")
        .trim()
        .parse()
        .expect("number");
    assert!(count <= 5, "{count} processes visible in /proc");
}

fn signalling_a_host_process_fails(backend: Backend) {
    let mut victim = Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("host process");
    let session = Session::new();
    let ran = session.run_on(
        &backend,
        &format!(
            "kill -9 {pid} && echo KILLED-HOST\nkill -9 1 && echo KILLED-INIT",
            pid = victim.id()
        ),
    );
    ran.completed().refute("KILLED-HOST").refute("KILLED-INIT");
    assert!(
        victim.try_wait().expect("wait").is_none(),
        "the host process died"
    );
    victim.kill().expect("kill");
    victim.wait().expect("reap");
}

fn ptrace_and_reading_other_process_memory_fail(backend: Backend) {
    let session = Session::new();
    let attach = python(
        "import ctypes, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\npid = int(sys.argv[1]) if len(sys.argv) > 1 else 0\nfor target in (int(open(\"sleeper\").read()), 1):\n    result = libc.ptrace(16, target, 0, 0)\n    print(\"PTRACE-ATTACHED\" if result == 0 else \"ptrace refused errno %d\" % ctypes.get_errno(), target)\nbuf = ctypes.create_string_buffer(8)\nprint(\"TRACEME\" if libc.ptrace(0, 0, 0, 0) == 0 else \"traceme refused\")",
    );
    let ran = session.run_on(&backend, &format!(
        "sleep 30 & echo $! > sleeper\n{attach}\ncat /proc/1/environ && echo READ-INIT-ENVIRON\nhead -c1 /proc/1/mem && echo READ-INIT-MEM\nls /proc/1/root/ && echo READ-INIT-ROOT\nkill %1"
    ));
    ran.completed()
        .refute("PTRACE-ATTACHED")
        .refute("TRACEME")
        .refute("READ-INIT-ENVIRON")
        .refute("READ-INIT-MEM")
        .refute("READ-INIT-ROOT");
}

fn mount_fails(backend: Backend) {
    let session = Session::new();
    let ran = session.run_on(&backend, &format!(
        "mount -t tmpfs none /tmp && echo MOUNTED-TMPFS\nmount --bind /usr /tmp && echo MOUNTED-BIND\numount /proc && echo UNMOUNTED\n{}",
        python("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nr = libc.mount(b\"none\", b\"/tmp\", b\"tmpfs\", 0, None)\nprint(\"MOUNT-SYSCALL\" if r == 0 else \"mount errno %d\" % ctypes.get_errno())")
    ));
    ran.completed()
        .refute("MOUNTED-TMPFS")
        .refute("MOUNTED-BIND")
        .refute("UNMOUNTED")
        .refute("MOUNT-SYSCALL")
        .expect("mount errno 1");
}

fn unshare_and_new_namespaces_fail(backend: Backend) {
    let session = Session::new();
    let namespaces = python(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nfor flag, name in ((0x10000000, \"user\"), (0x00020000, \"mount\"), (0x40000000, \"net\"), (0x20000000, \"pid\")):\n    r = libc.unshare(flag)\n    print(\"UNSHARED\" if r == 0 else \"unshare refused errno %d\" % ctypes.get_errno(), name)\n    r = libc.syscall(56, flag | 17, 0, 0, 0, 0)\n    if r == 0:\n        os._exit(0)\n    print(\"CLONED\" if r > 0 else \"clone refused errno %d\" % ctypes.get_errno(), name)\nr = libc.syscall(308, 3, 0)\nprint(\"SETNS\" if r == 0 else \"setns refused\")",
    );
    let ran = session.run_on(&backend, &format!(
        "unshare -U true && echo UNSHARE-USER\nunshare -r true && echo UNSHARE-ROOT\nunshare -n true && echo UNSHARE-NET\n{namespaces}"
    ));
    ran.completed()
        .refute("UNSHARE-USER")
        .refute("UNSHARE-ROOT")
        .refute("UNSHARE-NET")
        .refute("UNSHARED")
        .refute("CLONED")
        .refute("SETNS")
        .expect("unshare refused errno 1 user");
}

fn bpf_io_uring_keyctl_and_raw_sockets_fail(backend: Backend) {
    let session = Session::new();
    let ran = session.run_on(&backend, &python(
        "import ctypes, socket, termios, fcntl\nlibc = ctypes.CDLL(None, use_errno=True)\nfor number, name in ((321, \"bpf\"), (425, \"io_uring_setup\"), (250, \"keyctl\"), (298, \"perf_event_open\"), (323, \"userfaultfd\")):\n    r = libc.syscall(number, 0, 0, 0, 0, 0)\n    errno = ctypes.get_errno()\n    print(\"%s errno %d\" % (name, errno) if r < 0 else \"ALLOWED \" + name)\nfor family, kind, name in ((socket.AF_INET, socket.SOCK_RAW, \"raw\"), (17, socket.SOCK_RAW, \"packet\"), (17, socket.SOCK_DGRAM, \"packet-dgram\")):\n    try:\n        socket.socket(family, kind, 0 if family == 17 else 1)\n        print(\"ALLOWED \" + name)\n    except OSError as error:\n        print(name, \"errno\", error.errno)\ntry:\n    fcntl.ioctl(0, termios.TIOCSTI, b\"x\")\n    print(\"ALLOWED tiocsti\")\nexcept OSError as error:\n    print(\"tiocsti errno\", error.errno)",
    ));
    ran.completed()
        .refute("ALLOWED")
        .expect("bpf errno 1")
        .expect("io_uring_setup errno 1")
        .expect("keyctl errno 1")
        .expect("raw errno 1")
        .expect("packet errno 1")
        .expect("tiocsti errno 1");
}

/// x32 numbers its system calls with bit 30 set, past the x86_64 numbers the filter names:
/// every x32 call is refused, so `mount` and `ptrace` cannot be reached that way either. (Most
/// kernels lack x32 and answer ENOSYS; inside, the filter answers EPERM before the kernel.)
#[cfg(target_arch = "x86_64")]
fn x32_system_calls_are_refused(backend: Backend) {
    let session = Session::new();
    let ran = session.run_on(&backend, &python(
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nfor number, name in ((0x40000000 + 165, \"x32-mount\"), (0x40000000 + 521, \"x32-ptrace\"), (0x40000000 + 39, \"x32-getpid\")):\n    r = libc.syscall(number, 0, 0, 0, 0, 0)\n    print(\"%s errno %d\" % (name, ctypes.get_errno()) if r < 0 else \"ALLOWED \" + name)",
    ));
    ran.completed()
        .refute("ALLOWED")
        .expect("x32-mount errno 1")
        .expect("x32-ptrace errno 1")
        .expect("x32-getpid errno 1");
}

/// The host's environment never reaches the sandbox. This test re-runs itself as a child
/// process with a planted variable (setting it in this multi-threaded test process would race),
/// and the child runs the sandbox.
fn the_host_environment_is_invisible(backend: Backend) {
    if !planted_run() {
        rerun_with_planted_variable(&test_name(
            "escape::the_host_environment_is_invisible",
            &backend,
        ));
        return;
    }
    let session = Session::new();
    let ran = session.run_on(
        &backend,
        "env > seen-env\ncat /proc/self/environ /proc/1/environ /proc/2/environ >> seen-env 2>/dev/null\ngrep -r -a planted /proc/*/environ /home /tmp /etc /run >> seen-env 2>/dev/null\ntrue",
    );
    ran.completed();
    assert_planted_variable_unseen(session.workspace());
}

fn read_only_paths_are_readable_but_not_writable(backend: Backend) {
    let toolchain = tempfile::tempdir().expect("toolchain dir");
    fs::write(toolchain.path().join("tool"), "#!/bin/sh\necho TOOL-RAN\n").expect("tool");
    let session = Session::new();
    let mut spec = session.spec(&format!(
        "sh {dir}/tool\necho x > {dir}/tool && echo WROTE-RO-PATH\ntouch {dir}/new && echo CREATED-IN-RO-PATH\nrm {dir}/tool && echo REMOVED-FROM-RO-PATH",
        dir = toolchain.path().display()
    ));
    spec.ro_paths = vec![toolchain.path().to_path_buf()];
    let ran = session.run_spec_on(&spec, &backend);
    ran.completed()
        .expect("TOOL-RAN")
        .refute("WROTE-RO-PATH")
        .refute("CREATED-IN-RO-PATH")
        .refute("REMOVED-FROM-RO-PATH");
    assert_eq!(
        fs::read_to_string(toolchain.path().join("tool")).expect("tool"),
        "#!/bin/sh\necho TOOL-RAN\n"
    );
}

fn setting_the_setuid_bit_fails(backend: Backend) {
    let session = Session::new();
    let ran = session.run_on(&backend, &format!(
        "cp /usr/bin/true tool\nchmod u+s tool && echo CHMOD-SETUID\nchmod g+s tool && echo CHMOD-SETGID\nchmod 755 tool && echo CHMOD-PLAIN\n{}",
        python(
            "import os\ntry:\n    os.close(os.open(\"created\", os.O_CREAT | os.O_WRONLY, 0o4755))\n    print(\"OPEN-SETUID\", oct(os.stat(\"created\").st_mode))\nexcept OSError as error:\n    print(\"open refused\", error.errno)"
        )
    ));
    ran.completed()
        .refute("CHMOD-SETUID")
        .refute("CHMOD-SETGID")
        .refute("OPEN-SETUID")
        .expect("CHMOD-PLAIN")
        .expect("open refused 1");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &fs::metadata(session.workspace().join("tool"))
            .expect("tool")
            .permissions(),
    );
    assert_eq!(mode & 0o6000, 0, "{mode:o}");
}

/// The host's mounts are detached from the sandbox, not only out of sight: its mount table lists
/// one root and the new root's own mounts (`/usr`, `/etc` entries, `/tmp` and the workspace in
/// it, `/dev`, `$HOME`, `/proc`, the gate directory), nothing of the host's tree (`/oldroot`,
/// `/sys`, `/boot`) and no staging root stacked on `/`. The embedded backend only: podman's
/// table is the runtime's.
#[test]
fn the_mount_table_holds_only_the_new_roots_mounts() {
    let session = Session::new();
    let ran = session.run("cat /proc/self/mountinfo && echo READ-MOUNTINFO");
    ran.completed().expect("READ-MOUNTINFO");
    let points: Vec<&str> = ran
        .stdout
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .collect();
    assert!(points.len() > 10, "too few mounts listed: {points:?}");
    assert_eq!(
        points.iter().filter(|point| **point == "/").count(),
        1,
        "more than one root mount: {points:?}"
    );
    let ours = |point: &str| {
        point == "/"
            || ["/usr", "/etc/", "/tmp", "/dev", HOME, "/proc", "/run/moat"]
                .iter()
                .any(|prefix| point.starts_with(prefix))
    };
    let host: Vec<&&str> = points.iter().filter(|point| !ours(point)).collect();
    assert!(host.is_empty(), "host mounts in the sandbox: {host:?}");
}

/// A walk that climbs to the root stays there: `/..` and `/tmp/..` are the sandbox's root. Until
/// the init detaches the old root, which is mounted over the new one after the pivot, they are
/// the host's: a walk that reaches the root steps into the mount stacked on it.
fn climbing_above_the_root_stays_in_the_sandbox(backend: Backend) {
    let session = Session::new();
    let ran = session.run_on(
        &backend,
        "stat -c %d:%i / /.. /tmp/.. && echo STATTED\nls /tmp/../oldroot && echo LISTED-OLDROOT",
    );
    ran.completed().expect("STATTED").refute("LISTED-OLDROOT");
    let identities: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|line| line.contains(':'))
        .collect();
    assert_eq!(identities.len(), 3, "{}", ran.stdout);
    assert!(
        identities.iter().all(|identity| *identity == identities[0]),
        "the root's parent is another directory: {identities:?}"
    );
}

/// The agent is in a network namespace of its own, not the host's: it lists one interface,
/// `lo`, which is up (its local routes exist only then), and the namespace is another than the
/// host's. Landlock refuses connections on its own; this holds without it.
fn the_network_is_the_sandboxs_own_with_only_lo_up(backend: Backend) {
    let session = Session::new();
    let ran = session.run_on(
        &backend,
        "cat /proc/self/net/dev && echo END-DEV && cat /proc/self/net/fib_trie && echo END-FIB \
         && readlink /proc/self/ns/net",
    );
    let (devices, rest) = ran
        .stdout
        .split_once("END-DEV")
        .unwrap_or_else(|| panic!("no device list: {}", ran.stdout));
    let interfaces: Vec<&str> = devices
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim())
        .collect();
    assert_eq!(interfaces, ["lo"], "{devices}");
    let (routes, namespace) = rest
        .split_once("END-FIB")
        .unwrap_or_else(|| panic!("no routes: {rest}"));
    assert!(
        routes.contains("127.0.0.1"),
        "lo is down (no local routes): {routes}"
    );
    let host = fs::read_link("/proc/self/ns/net").expect("the host's network namespace");
    let namespace = namespace.trim();
    assert!(namespace.starts_with("net:["), "{namespace}");
    assert_ne!(
        namespace,
        host.to_string_lossy(),
        "the host's network namespace"
    );
}

//! The one way out: `127.0.0.1:<gate_port>` inside, relayed to the bind-mounted gate socket.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use crate::protocol::GATE_SOCKET_INSIDE;

/// Connections relayed at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 256;

/// Brings the loopback interface of this thread's network namespace up, and opens the
/// namespace (`SIOCGSKNS`), for another thread to enter.
pub(crate) fn open_namespace_with_loopback_up() -> io::Result<OwnedFd> {
    let (_, socket) = loopback_flags(true)?;
    #[allow(unsafe_code)]
    // SAFETY: SIOCGSKNS takes no argument and returns a new descriptor, owned by nothing else.
    unsafe {
        let namespace = libc::ioctl(socket.as_raw_fd(), libc::SIOCGSKNS);
        if namespace < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(namespace))
    }
}

/// In a container the runtime brings `lo` up (`--network none` still has it) and the init has
/// no `CAP_NET_ADMIN`: check, and try to raise it only if it is down.
pub(crate) fn loopback_check() -> Result<(), String> {
    match loopback_flags(false) {
        Ok((flags, _)) if flags & libc::IFF_UP as libc::c_short != 0 => Ok(()),
        _ => loopback_flags(true).map(|_| ()).map_err(|error| {
            format!("lo is down in the container and could not be brought up: {error}")
        }),
    }
}

/// Reads the flags of `lo`, and with `raise` sets `IFF_UP | IFF_RUNNING`; with the socket it
/// used, which is in the namespace whose `lo` it is.
fn loopback_flags(raise: bool) -> io::Result<(libc::c_short, OwnedFd)> {
    let socket = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )?;
    #[allow(unsafe_code)]
    // SAFETY: an all-zero ifreq is valid; the name is copied within its 16-byte bound.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    #[allow(unsafe_code)]
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write an ifreq, and `request` is a live,
    // correctly sized ifreq; the union member touched is `ifru_flags`, the one these use.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(io::Error::last_os_error());
        }
        if raise {
            request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok((request.ifr_ifru.ifru_flags, socket))
    }
}

/// Accepts on `listener` forever (in a thread), relaying each connection to the gate socket.
pub(crate) fn spawn(listener: TcpListener) {
    let active = Arc::new(AtomicUsize::new(0));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                active.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let active = Arc::clone(&active);
            thread::spawn(move || {
                let _ = relay(tcp);
                active.fetch_sub(1, Ordering::AcqRel);
            });
        }
    });
}

fn relay(tcp: TcpStream) -> io::Result<()> {
    // Without TCP_NODELAY the last short write of a response waits for the client's delayed
    // ACK: ~40 ms per metadata request (measured: npm's metadata fetches took 45-49 ms through
    // the bridge against 5-8 ms direct).
    tcp.set_nodelay(true)?;
    let unix = UnixStream::connect(GATE_SOCKET_INSIDE)?;
    let (mut tcp_read, mut unix_write) = (tcp.try_clone()?, unix.try_clone()?);
    let upstream = thread::spawn(move || {
        let _ = io::copy(&mut tcp_read, &mut unix_write);
        let _ = unix_write.shutdown(Shutdown::Write);
    });
    let (mut unix_read, mut tcp_write) = (unix, tcp);
    let _ = io::copy(&mut unix_read, &mut tcp_write);
    let _ = tcp_write.shutdown(Shutdown::Write);
    let _ = upstream.join();
    Ok(())
}

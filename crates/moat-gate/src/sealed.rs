//! Large answers the gate serves again and again, in sealed memory the kernel sends by itself.
//!
//! [`seal`] copies a body (a verified artifact, a rendered index page) once into a memfd, seals
//! it against every change (no write, shrink or grow, no further seals: from then on nobody,
//! this process included, can alter those bytes through any descriptor or mapping), maps it
//! read-only and hands it out as ordinary [`Bytes`]. [`ZeroCopy`], the byte stream of every
//! client connection, recognises a write whose bytes lie inside such a mapping and has the
//! kernel send them straight from the memfd with `sendfile(2)`, the way nginx serves a file:
//! the same bytes (the mapping *is* those pages), one copy fewer. Any other write is an
//! ordinary one, and a sealed body read in memory (a test reading a response) is ordinary bytes.
//!
//! This module and its three `unsafe` blocks are the gate's only `unsafe` code; each says why
//! it holds.

#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::io::{IoSlice, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::net::{SendAncillaryBuffer, SendFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Bodies smaller than this are copied as usual. Measured on loopback (BENCHMARKS.md): sent by
/// `sendfile`, a 12 KB npm tarball was served 15-20% slower than copied (a second system call
/// per answer for little copying saved), a 60 KB wheel 10% faster.
pub(crate) const MIN_SEALED: usize = 16 * 1024;

/// Bodies larger than this are copied as usual too: by `sendfile` a 119 KB project page was
/// served as fast as copied, a 750 KB packument 30% slower.
pub(crate) const MAX_SEALED: usize = 256 * 1024;

/// `body` in sealed memory, or `None` (the caller then serves `body` itself, as before): when
/// its size is outside [`MIN_SEALED`]..=[`MAX_SEALED`], when as many bodies are sealed as this
/// process may hold descriptors for (a quarter of its `nofile` limit, so that sealing never
/// starves accepting connections), or when the kernel refuses.
pub(crate) fn seal(body: &[u8]) -> Option<Bytes> {
    if !(MIN_SEALED..=MAX_SEALED).contains(&body.len()) || !reserve() {
        return None;
    }
    match Mapping::new(body) {
        Ok(mapping) => Some(Bytes::from_owner(mapping)),
        Err(err) => {
            LIVE.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(error = %err, "cannot seal an answer; serving it from ordinary memory");
            None
        }
    }
}

/// How many mappings are alive (each holds one descriptor).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Count one more mapping if the budget allows it.
fn reserve() -> bool {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    let budget = *BUDGET.get_or_init(|| {
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let nofile = nofile.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        (nofile / 4).min(1 << 16)
    });
    LIVE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| {
        (live < budget).then_some(live + 1)
    })
    .is_ok()
}

/// Every live mapping by its start address: what [`ZeroCopy`] looks a write up in.
static REGIONS: RwLock<BTreeMap<usize, Region>> = RwLock::new(BTreeMap::new());

struct Region {
    len: usize,
    memfd: Arc<OwnedFd>,
}

/// The memfd and the mapping of `bytes` that lies at `bytes`' address, and where in it they start.
fn lookup(bytes: &[u8]) -> Option<(Arc<OwnedFd>, u64)> {
    if bytes.is_empty() || LIVE.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let at = bytes.as_ptr() as usize;
    let regions = REGIONS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (&start, region) = regions.range(..=at).next_back()?;
    let offset = at - start;
    (offset + bytes.len() <= region.len).then(|| (Arc::clone(&region.memfd), offset as u64))
}

/// A sealed memfd mapped read-only: the owner behind a sealed [`Bytes`]. Its descriptor lives
/// in [`REGIONS`] until the mapping is dropped.
struct Mapping {
    /// Start address (kept as an integer so that the type is `Send` and `Sync` on its own).
    start: usize,
    len: usize,
}

impl Mapping {
    fn new(body: &[u8]) -> std::io::Result<Mapping> {
        let memfd = rustix::fs::memfd_create(
            "moat-sealed",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let mut file = std::fs::File::from(memfd);
        file.write_all(body)?;
        let memfd = OwnedFd::from(file);
        rustix::fs::fcntl_add_seals(
            &memfd,
            SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
        )?;
        // SAFETY: a new read-only shared mapping of a descriptor this function owns, at an
        // address the kernel chooses; it aliases no Rust object. It stays mapped until `Drop`.
        let start = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                body.len(),
                ProtFlags::READ,
                MapFlags::SHARED,
                &memfd,
                0,
            )
        }? as usize;
        let region = Region {
            len: body.len(),
            memfd: Arc::new(memfd),
        };
        REGIONS
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(start, region);
        Ok(Mapping {
            start,
            len: body.len(),
        })
    }
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `start..start + len` is mapped readable for as long as `self` lives (unmapped
        // only in `Drop`), and its bytes can never change: the memfd is sealed against writes,
        // resizing and new seals before it is mapped, so no descriptor or mapping anywhere can
        // alter them while this shared borrow exists.
        unsafe { std::slice::from_raw_parts(self.start as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        REGIONS
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.start);
        // SAFETY: the mapping made in `new`, unmapped once: `Bytes` drops its owner only when
        // no slice of it is left, so nothing reads it any more.
        let unmapped = unsafe { rustix::mm::munmap(self.start as *mut c_void, self.len) };
        if let Err(err) = unmapped {
            tracing::warn!(error = %err, "cannot unmap a sealed answer");
        }
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket whose write readiness can be awaited and used by hand (tokio's TCP and unix streams).
pub(crate) trait Socket: AsyncRead + AsyncWrite + AsFd + Unpin {
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;
    fn try_write_io<R>(&self, f: impl FnOnce() -> std::io::Result<R>) -> std::io::Result<R>;
}

macro_rules! socket {
    ($stream:ty) => {
        impl Socket for $stream {
            fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
                <$stream>::poll_write_ready(self, cx)
            }
            fn try_write_io<R>(
                &self,
                f: impl FnOnce() -> std::io::Result<R>,
            ) -> std::io::Result<R> {
                self.try_io(Interest::WRITABLE, f)
            }
        }
    };
}
socket!(tokio::net::TcpStream);
socket!(tokio::net::UnixStream);

/// A client connection that sends sealed bytes with `sendfile(2)` (see the module docs).
pub(crate) struct ZeroCopy<S>(pub(crate) S);

impl<S: Socket> ZeroCopy<S> {
    /// Run the non-blocking write `f` once the socket can take it.
    fn poll_io(
        &self,
        cx: &mut Context<'_>,
        mut f: impl FnMut() -> std::io::Result<usize>,
    ) -> Poll<std::io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_io(&mut f) {
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
        }
    }

    fn sendfile(&self, memfd: &OwnedFd, offset: u64, len: usize) -> std::io::Result<usize> {
        let mut offset = offset;
        let sent = rustix::fs::sendfile(&self.0, memfd, Some(&mut offset), len)?;
        #[cfg(test)]
        tests::SENDFILE_BYTES.set(tests::SENDFILE_BYTES.get() + sent);
        Ok(sent)
    }

    fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let sealed = bufs
            .iter()
            .enumerate()
            .find_map(|(at, buf)| Some((at, lookup(buf)?)));
        let Some((at, (memfd, offset))) = sealed else {
            return Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
        };
        let len = bufs[at].len();
        if at == 0 {
            return self.poll_io(cx, || self.sendfile(&memfd, offset, len));
        }
        // The response head (and whatever precedes the sealed bytes), held back with MSG_MORE so
        // that it leaves in one segment with the start of the body.
        let plain = &bufs[..at];
        let plain_len: usize = plain.iter().map(|buf| buf.len()).sum();
        let flags = SendFlags::MORE | SendFlags::NOSIGNAL;
        let sent = ready!(self.poll_io(cx, || {
            let mut control = SendAncillaryBuffer::default();
            Ok(rustix::net::sendmsg(&self.0, plain, &mut control, flags)?)
        }))?;
        if sent < plain_len {
            return Poll::Ready(Ok(sent));
        }
        // The body if the socket takes it now; else the caller comes back for it. An error
        // here comes back on that next write, after the head is acknowledged as written.
        let body = self
            .0
            .try_write_io(|| self.sendfile(&memfd, offset, len))
            .unwrap_or(0);
        Poll::Ready(Ok(sent + body))
    }
}

impl<S: Socket> AsyncRead for ZeroCopy<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: Socket> AsyncWrite for ZeroCopy<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_slices(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_slices(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    thread_local! {
        /// Bytes this thread has sent with `sendfile(2)`.
        pub(super) static SENDFILE_BYTES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn small_and_very_large_bodies_stay_in_ordinary_memory() {
        assert!(seal(&body(MIN_SEALED - 1)).is_none());
        assert!(seal(&body(MAX_SEALED + 1)).is_none());
        assert!(seal(&body(MAX_SEALED)).is_some());
    }

    #[test]
    fn a_sealed_body_reads_as_the_original_and_is_found_by_any_slice_of_it() {
        let original = body(100_000);
        let sealed = seal(&original).expect("sealed");
        assert_eq!(&sealed[..], &original[..]);
        let (_, offset) = lookup(&sealed[1000..2000]).expect("found");
        assert_eq!(offset, 1000);
        assert!(lookup(&original).is_none(), "ordinary memory is not sealed");
        let (memfd, _) = lookup(&sealed).expect("found");
        drop(sealed);
        assert_eq!(
            Arc::strong_count(&memfd),
            1,
            "a dropped mapping is forgotten"
        );
    }

    #[test]
    fn nobody_can_change_sealed_bytes() {
        let sealed = seal(&body(MIN_SEALED)).expect("sealed");
        let (memfd, _) = lookup(&sealed).expect("found");
        // Not through a copy of the descriptor, nor a new one opened by path, nor by resizing.
        let mut file = std::fs::File::from(memfd.try_clone().expect("dup"));
        assert!(file.write_all(b"changed").is_err());
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&*memfd));
        if let Ok(mut reopened) = std::fs::OpenOptions::new().write(true).open(path) {
            assert!(reopened.write_all(b"changed").is_err());
        }
        assert!(rustix::fs::ftruncate(&*memfd, 0).is_err());
        assert_eq!(&sealed[..], &body(MIN_SEALED)[..]);
    }

    /// A response through hyper over a [`ZeroCopy`] socket: its sealed body leaves by
    /// `sendfile(2)`, whole and unchanged, in many pieces (the send buffer is made small), and
    /// the connection goes on to serve a second response after it.
    #[tokio::test]
    async fn hyper_sends_a_sealed_body_with_sendfile() {
        let original = body(MAX_SEALED - 17);
        let sealed = seal(&original).expect("sealed");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let request = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            stream.write_all(request.as_bytes()).await.expect("write");
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.expect("read");
            answer
        });
        let (stream, _) = listener.accept().await.expect("accept");
        rustix::net::sockopt::set_socket_send_buffer_size(&stream, 4096).expect("SO_SNDBUF");
        let service = hyper::service::service_fn(move |_| {
            let sealed = sealed.clone();
            async move {
                Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::from(
                    sealed,
                )))
            }
        });
        hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(ZeroCopy(stream)), service)
            .await
            .expect("served");
        let answer = client.await.expect("client");

        let mut rest = &answer[..];
        for _ in 0..2 {
            let head_end = rest
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("head")
                + 4;
            let head = String::from_utf8_lossy(&rest[..head_end]).to_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            assert!(
                head.contains(&format!("content-length: {}", original.len())),
                "{head}"
            );
            let body = &rest[head_end..head_end + original.len()];
            assert!(body == &original[..], "the body arrived changed");
            rest = &rest[head_end + original.len()..];
        }
        assert!(rest.is_empty());
        assert_eq!(
            SENDFILE_BYTES.get(),
            2 * original.len(),
            "every body byte went by sendfile"
        );
    }
}

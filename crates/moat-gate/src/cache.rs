//! In-memory caches of the warm path: evaluated packuments with their rewritten bytes, verified
//! tarballs, and single-flight locks so one upstream fetch serves concurrent requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderValue;
use moat_policy::PackageEvaluation;
use moat_registry::npm::{Dist, Packument, RewritePlan};

/// The two forms of a packument a client can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// `application/json`.
    Full,
    /// `application/vnd.npm.install-v1+json`.
    Abbreviated,
}

/// Rewritten bytes and their ETag.
#[derive(Debug)]
pub(crate) struct Rendered {
    pub(crate) body: Bytes,
    pub(crate) etag: HeaderValue,
}

/// One packument as fetched and evaluated, and its rewritten forms (rendered on first use).
#[derive(Debug)]
pub(crate) struct PackageEntry {
    pub(crate) fetched_at: Instant,
    pub(crate) upstream_etag: Option<String>,
    pub(crate) packument: Arc<Packument>,
    pub(crate) body_digest: Arc<str>,
    pub(crate) evaluation: PackageEvaluation,
    pub(crate) plan: RewritePlan,
    /// Hash of (upstream body digest, policy revision, advisory revision, blocked set): the ETag.
    pub(crate) identity: String,
    full: OnceLock<Rendered>,
    abbreviated: OnceLock<Rendered>,
    /// `dist` of the versions asked for so far: read out of the packument once per version,
    /// not on every tarball request.
    dists: Mutex<HashMap<String, Arc<Dist>>>,
}

impl PackageEntry {
    pub(crate) fn new(
        upstream_etag: Option<String>,
        packument: Arc<Packument>,
        body_digest: Arc<str>,
        evaluation: PackageEvaluation,
        plan: RewritePlan,
        identity: String,
    ) -> PackageEntry {
        PackageEntry {
            fetched_at: Instant::now(),
            upstream_etag,
            packument,
            body_digest,
            evaluation,
            plan,
            identity,
            full: OnceLock::new(),
            abbreviated: OnceLock::new(),
            dists: Mutex::default(),
        }
    }

    /// A version's upstream `dist` (see [`Packument::dist`]).
    pub(crate) fn dist(&self, version: &str) -> Option<Arc<Dist>> {
        if let Some(dist) = lock(&self.dists).get(version) {
            return Some(Arc::clone(dist));
        }
        let dist = Arc::new(self.packument.dist(version)?);
        lock(&self.dists).insert(version.to_owned(), Arc::clone(&dist));
        Some(dist)
    }

    /// The rewritten packument in `form`, rendered once.
    pub(crate) fn rendered(&self, form: Form) -> &Rendered {
        let (cell, tag) = match form {
            Form::Full => (&self.full, "f"),
            Form::Abbreviated => (&self.abbreviated, "a"),
        };
        cell.get_or_init(|| {
            let body = match form {
                Form::Full => self.packument.render_full(&self.plan),
                Form::Abbreviated => self.packument.render_abbreviated(&self.plan),
            };
            Rendered::new(body, tag, &self.identity)
        })
    }
}

impl Cached for PackageEntry {
    fn fetched_at(&self) -> Instant {
        self.fetched_at
    }
}

impl Rendered {
    /// `body` with the ETag `"moat-<tag>-<identity>"`; a large body in sealed memory.
    pub(crate) fn new(body: Vec<u8>, tag: &str, identity: &str) -> Rendered {
        let etag = HeaderValue::from_str(&format!("\"moat-{tag}-{identity}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("\"moat\""));
        Rendered {
            body: crate::sealed::seal(&body).unwrap_or_else(|| Bytes::from(body)),
            etag,
        }
    }
}

/// A metadata entry that knows when it was fetched (for the TTL).
pub(crate) trait Cached: Send + Sync {
    fn fetched_at(&self) -> Instant;
}

/// Evaluated metadata entries of one ecosystem by requested name, and the single-flight locks
/// of their upstream fetches.
#[derive(Debug)]
pub(crate) struct MetaCache<E> {
    entries: Mutex<HashMap<String, Arc<E>>>,
    pub(crate) flights: SingleFlight,
}

impl<E> Default for MetaCache<E> {
    fn default() -> Self {
        MetaCache {
            entries: Mutex::default(),
            flights: SingleFlight::default(),
        }
    }
}

impl<E: Cached> MetaCache<E> {
    pub(crate) fn get(&self, name: &str) -> Option<Arc<E>> {
        lock(&self.entries).get(name).cloned()
    }

    pub(crate) fn insert(&self, name: &str, entry: Arc<E>, max: usize, ttl: std::time::Duration) {
        let mut entries = lock(&self.entries);
        if entries.len() >= max {
            entries.retain(|_, entry| entry.fetched_at().elapsed() < ttl);
            if entries.len() >= max {
                entries.clear();
            }
        }
        entries.insert(name.to_owned(), entry);
    }

    pub(crate) fn remove(&self, name: &str) {
        lock(&self.entries).remove(name);
    }
}

/// Verified tarballs in memory, least recently used evicted first.
#[derive(Debug, Default)]
pub(crate) struct ArtifactMemory {
    inner: Mutex<ArtifactMemoryInner>,
}

#[derive(Debug, Default)]
struct ArtifactMemoryInner {
    items: HashMap<String, (Bytes, u64)>,
    total: u64,
    tick: u64,
}

impl ArtifactMemory {
    pub(crate) fn get(&self, key: &str) -> Option<Bytes> {
        let mut inner = lock(&self.inner);
        inner.tick += 1;
        let tick = inner.tick;
        let (bytes, used) = inner.items.get_mut(key)?;
        *used = tick;
        Some(bytes.clone())
    }

    /// Keep `bytes` under `key`, least recently used items evicted to make room, unless it is
    /// larger than `item_max` or `capacity`. Returns the bytes to serve: the kept copy (in
    /// sealed memory when its size suits `sendfile`, see [`crate::sealed`]), or `bytes`.
    pub(crate) fn insert(&self, key: String, bytes: Bytes, capacity: u64, item_max: u64) -> Bytes {
        let size = bytes.len() as u64;
        if size > item_max || size > capacity {
            return bytes;
        }
        let bytes = crate::sealed::seal(&bytes).unwrap_or(bytes);
        let mut inner = lock(&self.inner);
        while inner.total + size > capacity {
            let Some(oldest) = inner
                .items
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((evicted, _)) = inner.items.remove(&oldest) {
                inner.total -= evicted.len() as u64;
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((previous, _)) = inner.items.insert(key, (bytes.clone(), tick)) {
            inner.total -= previous.len() as u64;
        }
        inner.total += size;
        bytes
    }
}

/// Per-key async locks: the first request for a key fetches, the others wait and then find the
/// result in the cache.
#[derive(Debug, Default)]
pub(crate) struct SingleFlight {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while fetching one key.
pub(crate) struct Flight<'a> {
    owner: &'a SingleFlight,
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl SingleFlight {
    pub(crate) async fn begin(&self, key: &str) -> Flight<'_> {
        let lock = Arc::clone(lock(&self.locks).entry(key.to_owned()).or_default());
        let guard = Arc::clone(&lock).lock_owned().await;
        Flight {
            owner: self,
            key: key.to_owned(),
            lock,
            _guard: guard,
        }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut locks = lock(&self.owner.locks);
        // The map's, ours and our guard's: nobody else is waiting, so the entry can go.
        if Arc::strong_count(&self.lock) <= 3 {
            locks.remove(&self.key);
        }
    }
}

/// Lock a mutex, recovering the data if a panicking thread poisoned it (the caches hold no
/// invariant a panic could break halfway: entries are replaced whole).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

//! The verified, content-addressed artifact cache on disk: `<root>/<algorithm>/<hex digest>`.
//!
//! Only bytes that matched their published digest are written, through a temporary file that is
//! renamed into place, and bytes read back are checked again before use: a cached copy can only
//! ever be served for a version whose integrity names it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::Integrity;

/// The artifact cache of one ecosystem.
#[derive(Debug)]
pub struct ArtifactStore {
    root: PathBuf,
    counter: AtomicU64,
}

impl ArtifactStore {
    /// A store rooted at `root` (created lazily on first write).
    pub fn new(root: impl Into<PathBuf>) -> ArtifactStore {
        ArtifactStore {
            root: root.into(),
            counter: AtomicU64::new(0),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the artifact with this integrity lives.
    pub fn path_for(&self, integrity: &Integrity) -> PathBuf {
        self.root
            .join(integrity.algorithm().as_str())
            .join(integrity.hex())
    }

    /// The cached bytes for `integrity`, verified; a copy that fails verification (or is larger
    /// than `max_bytes`) is removed and reported as absent.
    pub async fn get(
        &self,
        integrity: &Integrity,
        max_bytes: u64,
    ) -> std::io::Result<Option<Bytes>> {
        let path = self.path_for(integrity);
        let metadata = match tokio::fs::metadata(&path).await {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        if metadata.len() > max_bytes {
            tokio::fs::remove_file(&path).await?;
            return Ok(None);
        }
        let bytes = Bytes::from(tokio::fs::read(&path).await?);
        if integrity.verify(&bytes).is_err() {
            tracing::warn!(path = %path.display(), "cached artifact failed verification; removed");
            tokio::fs::remove_file(&path).await?;
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// Store verified bytes: verifies again, writes a temporary file, fsyncs, renames.
    pub async fn put(&self, integrity: &Integrity, bytes: &Bytes) -> std::io::Result<()> {
        if let Err(err) = integrity.verify(bytes) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                err.to_string(),
            ));
        }
        let path = self.path_for(integrity);
        let dir = self.root.join(integrity.algorithm().as_str());
        tokio::fs::create_dir_all(&dir).await?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        let result = async {
            let mut file = tokio::fs::File::create(&temp).await?;
            tokio::io::AsyncWriteExt::write_all(&mut file, bytes).await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&temp, &path).await
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(dir.path().join("npm"));
        let bytes = Bytes::from_static(b"artifact");
        let shasum = hex::encode(crate::Algorithm::Sha1.digest(&bytes));
        let integrity = Integrity::from_dist(None, Some(&shasum)).unwrap();
        assert_eq!(store.get(&integrity, 1 << 20).await.unwrap(), None);
        store.put(&integrity, &bytes).await.unwrap();
        assert_eq!(
            store.get(&integrity, 1 << 20).await.unwrap(),
            Some(bytes.clone())
        );
        // wrong bytes are never stored
        assert!(
            store
                .put(&integrity, &Bytes::from_static(b"evil"))
                .await
                .is_err()
        );
        // a tampered copy is dropped, not served
        std::fs::write(store.path_for(&integrity), b"evil").unwrap();
        assert_eq!(store.get(&integrity, 1 << 20).await.unwrap(), None);
        assert!(!store.path_for(&integrity).exists());
    }
}

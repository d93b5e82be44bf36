//! Subresource integrity: what npm's `dist.integrity` (or the older `dist.shasum`) promises about
//! a tarball, and checking bytes against it.

use base64::Engine as _;
use sha1::Digest as _;

/// A hash algorithm npm metadata uses, strongest last in `Ord`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    /// SHA-1 (`dist.shasum`, legacy `sha1-` SRI).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512 (what npm publishes today).
    Sha512,
}

impl Algorithm {
    /// Lowercase name as in SRI strings and cache directories.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn from_sri(name: &str) -> Option<Algorithm> {
        match name {
            "sha1" => Some(Algorithm::Sha1),
            "sha256" => Some(Algorithm::Sha256),
            "sha384" => Some(Algorithm::Sha384),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    fn digest_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha384 => 48,
            Algorithm::Sha512 => 64,
        }
    }

    /// The digest of `bytes` with this algorithm.
    pub fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::Sha1 => sha1::Sha1::digest(bytes).to_vec(),
            Algorithm::Sha256 => sha2::Sha256::digest(bytes).to_vec(),
            Algorithm::Sha384 => sha2::Sha384::digest(bytes).to_vec(),
            Algorithm::Sha512 => sha2::Sha512::digest(bytes).to_vec(),
        }
    }
}

/// One expected digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Integrity {
    algorithm: Algorithm,
    digest: Vec<u8>,
}

/// Why integrity could not be established or did not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityError {
    /// Neither `dist.integrity` nor `dist.shasum` is usable.
    #[error("no usable integrity (dist.integrity or dist.shasum) published")]
    Missing,
    /// The published value cannot be parsed.
    #[error("malformed integrity value `{0}`")]
    Malformed(String),
    /// The bytes do not hash to the published digest.
    #[error("{algorithm} digest {actual} does not match the published {expected}")]
    Mismatch {
        /// Algorithm used.
        algorithm: &'static str,
        /// Published digest, hex.
        expected: String,
        /// Digest of the bytes received, hex.
        actual: String,
    },
}

impl Integrity {
    /// From a version's `dist.integrity` (SRI; the strongest supported hash is used) or, when
    /// that is absent, its `dist.shasum` (hex SHA-1).
    pub fn from_dist(
        integrity: Option<&str>,
        shasum: Option<&str>,
    ) -> Result<Integrity, IntegrityError> {
        if let Some(sri) = integrity.filter(|s| !s.trim().is_empty()) {
            return Integrity::parse_sri(sri);
        }
        let Some(shasum) = shasum.filter(|s| !s.trim().is_empty()) else {
            return Err(IntegrityError::Missing);
        };
        let digest =
            hex::decode(shasum.trim()).map_err(|_| IntegrityError::Malformed(shasum.to_owned()))?;
        Integrity::new(Algorithm::Sha1, digest, shasum)
    }

    /// Parse an SRI string (`sha512-<base64>`, possibly several space-separated; the strongest
    /// supported one wins; `?options` suffixes are ignored).
    pub fn parse_sri(sri: &str) -> Result<Integrity, IntegrityError> {
        let mut best: Option<Integrity> = None;
        for token in sri.split_ascii_whitespace() {
            let Some((algorithm, rest)) = token.split_once('-') else {
                continue;
            };
            let Some(algorithm) = Algorithm::from_sri(algorithm) else {
                continue;
            };
            let encoded = rest.split('?').next().unwrap_or(rest);
            let digest = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| IntegrityError::Malformed(sri.to_owned()))?;
            let candidate = Integrity::new(algorithm, digest, sri)?;
            if best
                .as_ref()
                .is_none_or(|b| candidate.algorithm > b.algorithm)
            {
                best = Some(candidate);
            }
        }
        best.ok_or_else(|| IntegrityError::Malformed(sri.to_owned()))
    }

    /// From a hex digest of `algorithm` (PyPI `#sha256=`, cargo `cksum`).
    pub fn from_hex(algorithm: Algorithm, hex_digest: &str) -> Result<Integrity, IntegrityError> {
        let digest = hex::decode(hex_digest.trim())
            .map_err(|_| IntegrityError::Malformed(hex_digest.to_owned()))?;
        Integrity::new(algorithm, digest, hex_digest)
    }

    fn new(
        algorithm: Algorithm,
        digest: Vec<u8>,
        source: &str,
    ) -> Result<Integrity, IntegrityError> {
        if digest.len() == algorithm.digest_len() {
            Ok(Integrity { algorithm, digest })
        } else {
            Err(IntegrityError::Malformed(source.to_owned()))
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The expected digest, lowercase hex (the content address in the cache).
    pub fn hex(&self) -> String {
        // By hand: `hex::encode` goes through `FromIterator<char>`, and this runs on every
        // artifact request (the memory cache's key).
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(self.digest.len() * 2);
        for byte in &self.digest {
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        hex
    }

    /// Check `bytes` against the expected digest.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), IntegrityError> {
        let actual = self.algorithm.digest(bytes);
        if actual == self.digest {
            Ok(())
        } else {
            Err(IntegrityError::Mismatch {
                algorithm: self.algorithm.as_str(),
                expected: self.hex(),
                actual: hex::encode(actual),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: &[u8] = b"hello tarball";

    fn sri(algorithm: Algorithm, bytes: &[u8]) -> String {
        let encoded = base64::engine::general_purpose::STANDARD.encode(algorithm.digest(bytes));
        format!("{}-{encoded}", algorithm.as_str())
    }

    #[test]
    fn sha512_sri_verifies_and_rejects() {
        let integrity = Integrity::from_dist(Some(&sri(Algorithm::Sha512, DATA)), None).unwrap();
        assert_eq!(integrity.algorithm(), Algorithm::Sha512);
        integrity.verify(DATA).unwrap();
        let err = integrity.verify(b"tampered").unwrap_err();
        assert!(
            matches!(
                err,
                IntegrityError::Mismatch {
                    algorithm: "sha512",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn shasum_is_the_fallback() {
        let shasum = hex::encode(Algorithm::Sha1.digest(DATA));
        let integrity = Integrity::from_dist(None, Some(&shasum)).unwrap();
        assert_eq!(integrity.algorithm(), Algorithm::Sha1);
        integrity.verify(DATA).unwrap();
        assert!(integrity.verify(b"other").is_err());
        // an empty integrity string also falls back
        assert!(Integrity::from_dist(Some(""), Some(&shasum)).is_ok());
    }

    #[test]
    fn strongest_hash_wins_and_integrity_beats_shasum() {
        let both = format!(
            "{} {}",
            sri(Algorithm::Sha1, DATA),
            sri(Algorithm::Sha512, DATA)
        );
        let wrong_shasum = hex::encode([0u8; 20]);
        let integrity = Integrity::from_dist(Some(&both), Some(&wrong_shasum)).unwrap();
        assert_eq!(integrity.algorithm(), Algorithm::Sha512);
        integrity.verify(DATA).unwrap();
    }

    #[test]
    fn hex_digests() {
        let hex_digest = hex::encode(Algorithm::Sha256.digest(DATA));
        let integrity = Integrity::from_hex(Algorithm::Sha256, &hex_digest).unwrap();
        integrity.verify(DATA).unwrap();
        assert_eq!(integrity.hex(), hex_digest);
        let every_byte = Integrity::new(Algorithm::Sha256, (0..=255).step_by(8).collect(), "x");
        assert_eq!(
            every_byte.unwrap().hex(),
            hex::encode((0..=255u8).step_by(8).collect::<Vec<_>>())
        );
        assert!(integrity.verify(b"other").is_err());
        assert!(Integrity::from_hex(Algorithm::Sha256, "abcd").is_err());
        assert!(Integrity::from_hex(Algorithm::Sha256, "zz").is_err());
    }

    #[test]
    fn missing_and_malformed_are_errors() {
        assert_eq!(
            Integrity::from_dist(None, None),
            Err(IntegrityError::Missing)
        );
        assert!(matches!(
            Integrity::from_dist(Some("sha512-short"), None),
            Err(IntegrityError::Malformed(_))
        ));
        assert!(matches!(
            Integrity::from_dist(Some("md5-abc"), None),
            Err(IntegrityError::Malformed(_))
        ));
        assert!(matches!(
            Integrity::from_dist(None, Some("zz")),
            Err(IntegrityError::Malformed(_))
        ));
    }
}

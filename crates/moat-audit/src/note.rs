//! Signed checkpoints: C2SP signed notes (<https://c2sp.org/signed-note>) over C2SP checkpoint
//! bodies (<https://c2sp.org/tlog-checkpoint>), with Ed25519 keys.
//!
//! A checkpoint body is `<origin>\n<tree size>\n<base64 root hash>\n`; the note adds a blank line
//! and `— <key name> <base64(key id || signature)>\n`, where the key id is the first four bytes
//! of `SHA-256(key name || 0x0A || 0x01 || public key)`. The log's key name is its origin.
//!
//! Keys are written as Go's `golang.org/x/mod/sumdb/note` writes them: the signer key as
//! `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`, the verifier key as
//! `<name>+<hex key id>+<base64(0x01 || public key)>`.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::merkle::Hash;

/// Signature type byte of Ed25519 in signed notes.
const ED25519: u8 = 0x01;

/// The em dash and space that begin a signature line.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a key, note or checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// A key string is malformed.
    #[error("malformed key: {0}")]
    Key(String),
    /// A note is malformed.
    #[error("malformed signed note: {0}")]
    Malformed(String),
    /// No signature by the expected key, or one that does not verify.
    #[error("{0}")]
    Signature(String),
    /// The note text is not a checkpoint.
    #[error("malformed checkpoint: {0}")]
    Checkpoint(String),
    /// The key file cannot be read, created or trusted.
    #[error("{0}")]
    KeyFile(String),
}

fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ED25519]);
    hasher.update(public.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// Split `<name>+<hex id>+<base64(0x01 || 32 bytes)>`, checking the type byte and length.
fn split_key(text: &str) -> Result<(&str, [u8; 4], [u8; 32]), NoteError> {
    let mut parts = text.trim().splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::Key("expected <name>+<key id>+<key>".into()));
    };
    if !valid_name(name) {
        return Err(NoteError::Key(format!("invalid key name {name:?}")));
    }
    let id: [u8; 4] = hex_id(id).ok_or_else(|| NoteError::Key("invalid key id".into()))?;
    let bytes = BASE64
        .decode(key)
        .map_err(|_| NoteError::Key("key is not base64".into()))?;
    let Some((&ED25519, key)) = bytes.split_first() else {
        return Err(NoteError::Key("not an Ed25519 key".into()));
    };
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| NoteError::Key("an Ed25519 key has 32 bytes".into()))?;
    Ok((name, id, key))
}

fn hex_id(text: &str) -> Option<[u8; 4]> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let value = u32::from_str_radix(text, 16).ok()?;
    Some(value.to_be_bytes())
}

fn hex(id: [u8; 4]) -> String {
    format!("{:08x}", u32::from_be_bytes(id))
}

/// A public key checkpoints are verified with: name, key id and Ed25519 key.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl VerifierKey {
    /// Parse `<name>+<hex key id>+<base64(0x01 || public key)>`; the id must match the key.
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let (name, id, key) = split_key(text)?;
        let key = VerifyingKey::from_bytes(&key)
            .ok()
            .filter(|key| !key.is_weak())
            .ok_or_else(|| NoteError::Key("not a valid Ed25519 public key".into()))?;
        if key_id(name, &key) != id {
            return Err(NoteError::Key(
                "key id does not match the name and key".into(),
            ));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// The key name, which is also the log's origin.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verify `note` and return its text (the part the signature covers).
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let (text, signatures) = self.signatures(note)?;
        for signature in &signatures {
            self.verify(text, signature)?;
        }
        Ok(text)
    }

    /// [`open`](Self::open) for many notes at once: Ed25519 batch verification, falling back to
    /// one by one for a batch that fails, so each result is what `open` would return.
    pub fn open_many<'a>(&self, notes: &[&'a str]) -> Vec<Result<&'a str, NoteError>> {
        let parsed: Vec<_> = notes.iter().map(|note| self.signatures(note)).collect();
        let mut messages: Vec<&[u8]> = Vec::with_capacity(notes.len());
        let mut signatures = Vec::with_capacity(notes.len());
        for (text, found) in parsed.iter().flatten() {
            for signature in found {
                messages.push(text.as_bytes());
                signatures.push(*signature);
            }
        }
        let keys = vec![self.key; signatures.len()];
        let all_good = ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok();
        parsed
            .into_iter()
            .map(|parsed| {
                let (text, found) = parsed?;
                if !all_good {
                    for signature in &found {
                        self.verify(text, signature)?;
                    }
                }
                Ok(text)
            })
            .collect()
    }

    fn verify(&self, text: &str, signature: &ed25519_dalek::Signature) -> Result<(), NoteError> {
        self.key
            .verify_strict(text.as_bytes(), signature)
            .map_err(|_| {
                NoteError::Signature(format!("signature by {} does not verify", self.name))
            })
    }

    /// The note's text and this key's signatures on it (at least one), unverified.
    fn signatures<'a>(
        &self,
        note: &'a str,
    ) -> Result<(&'a str, Vec<ed25519_dalek::Signature>), NoteError> {
        let Some(split) = note.rfind("\n\n") else {
            return Err(NoteError::Malformed(
                "no blank line before signatures".into(),
            ));
        };
        let text = &note[..=split];
        let lines = &note[split + 2..];
        if !lines.ends_with('\n') {
            return Err(NoteError::Malformed(
                "signature lines must end with a newline".into(),
            ));
        }
        let mut found = Vec::new();
        for line in lines.lines() {
            let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
                return Err(NoteError::Malformed(format!("bad signature line {line:?}")));
            };
            let Some((name, signature)) = rest.split_once(' ') else {
                return Err(NoteError::Malformed(format!("bad signature line {line:?}")));
            };
            let bytes = BASE64
                .decode(signature)
                .map_err(|_| NoteError::Malformed("signature is not base64".into()))?;
            if name != self.name || bytes.len() < 4 || bytes[..4] != self.id {
                // Another key's signature: ignored, as the spec requires.
                continue;
            }
            let signature = ed25519_dalek::Signature::from_slice(&bytes[4..])
                .map_err(|_| NoteError::Signature("signature has the wrong length".into()))?;
            found.push(signature);
        }
        if found.is_empty() {
            return Err(NoteError::Signature(format!(
                "not signed by {}+{}",
                self.name,
                hex(self.id)
            )));
        }
        Ok((text, found))
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = vec![ED25519];
        key.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{}+{}", self.name, hex(self.id), BASE64.encode(key))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

/// The log's signing key. Its `Debug` shows only the public half.
pub struct SignerKey {
    name: String,
    id: [u8; 4],
    key: SigningKey,
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerKey({}, private key redacted)", self.verifier())
    }
}

impl SignerKey {
    /// Parse `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`.
    pub fn parse(text: &str) -> Result<SignerKey, NoteError> {
        let Some(rest) = text.trim().strip_prefix("PRIVATE+KEY+") else {
            return Err(NoteError::Key("expected PRIVATE+KEY+…".into()));
        };
        let (name, id, seed) = split_key(rest)?;
        let key = SigningKey::from_bytes(&seed);
        if key_id(name, &key.verifying_key()) != id {
            return Err(NoteError::Key(
                "key id does not match the name and key".into(),
            ));
        }
        Ok(SignerKey {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// A new random key named `moat-audit/<16 hex digits of SHA-256(public key)>`.
    pub fn generate() -> Result<SignerKey, NoteError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| NoteError::KeyFile(format!("cannot generate a key: {e}")))?;
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        let digest = Sha256::digest(key.verifying_key().as_bytes());
        let name = format!(
            "moat-audit/{}",
            digest[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let id = key_id(&name, &key.verifying_key());
        Ok(SignerKey { name, id, key })
    }

    /// Read the key at `path`, or create it (mode 0600) when there is none. Creation is atomic
    /// (written beside, then linked into place), so two processes starting at once end up with
    /// the same key.
    pub fn load_or_generate(path: &Path) -> Result<SignerKey, NoteError> {
        if path.exists() {
            return SignerKey::load(path);
        }
        let key = SignerKey::generate()?;
        match key.write_new(path) {
            Ok(()) => Ok(key),
            Err(_) if path.exists() => SignerKey::load(path),
            Err(error) => Err(error),
        }
    }

    /// Read the key at `path`, refusing one that others may read.
    pub fn load(path: &Path) -> Result<SignerKey, NoteError> {
        let error =
            |e: std::io::Error| NoteError::KeyFile(format!("cannot read {}: {e}", path.display()));
        let metadata = std::fs::metadata(path).map_err(error)?;
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(NoteError::KeyFile(format!(
                "{} is accessible to other users (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            )));
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(error)?);
        SignerKey::parse(&text).map_err(|e| {
            NoteError::KeyFile(format!("{} is not a signing key: {e}", path.display()))
        })
    }

    fn write_new(&self, path: &Path) -> Result<(), NoteError> {
        let error = |e: std::io::Error| {
            NoteError::KeyFile(format!("cannot create {}: {e}", path.display()))
        };
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce)
            .map_err(|e| NoteError::KeyFile(format!("cannot generate a key: {e}")))?;
        let temporary = path.with_extension(format!("key.{:016x}", u64::from_le_bytes(nonce)));
        let mut seed = vec![ED25519];
        seed.extend_from_slice(self.key.as_bytes());
        let text = Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{}+{}\n",
            self.name,
            hex(self.id),
            BASE64.encode(&seed)
        ));
        seed.fill(0);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                file.sync_all()
            })
            // Linking fails if another process created the key first: theirs is kept.
            .and_then(|()| std::fs::hard_link(&temporary, path));
        let _ = std::fs::remove_file(&temporary);
        written.map_err(error)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(error)?;
        }
        Ok(())
    }

    /// The key name, which is also the log's origin.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// Sign `text` (ending in a newline) into a signed note.
    pub fn sign(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!(
            "{text}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            BASE64.encode(blob)
        )
    }
}

/// The extension line that chains a checkpoint to the one before it.
const PREVIOUS_LINE: &str = "previous ";

/// A checkpoint body: the log's origin, its size and its root hash, and (moat's one extension
/// line) the hash of the log's previous signed checkpoint.
///
/// The chain makes the checkpoints one history: each signed note vouches for every byte of the
/// note before it, so a removed, reordered or altered checkpoint breaks a link, and verifying
/// the newest signature vouches for all the notes before it (`moat audit verify` checks the
/// signatures of the others only where the chain does not hold).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The log's origin (its key name).
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash of the tree of `size` leaves.
    pub root: Hash,
    /// [`note_hash`] of the log's previous signed checkpoint note; `None` for the first one
    /// (and in logs written before checkpoints were chained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Hash>,
}

/// SHA-256 of a whole signed note (text and signature lines): what the next checkpoint's
/// `previous` line carries.
pub fn note_hash(note: &str) -> Hash {
    Hash(Sha256::digest(note.as_bytes()).into())
}

/// The text of a signed note (what its signatures cover), without checking them.
pub fn note_text(note: &str) -> &str {
    note.rfind("\n\n").map_or(note, |split| &note[..=split])
}

impl Checkpoint {
    /// `<origin>\n<size>\n<base64 root>\n`, then `previous <base64 hash>\n` when chained.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        if let Some(previous) = &self.previous {
            text.push_str(PREVIOUS_LINE);
            text.push_str(&previous.to_base64());
            text.push('\n');
        }
        text
    }

    /// Parse a checkpoint body (extension lines other than `previous` are allowed and ignored).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = text.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(NoteError::Checkpoint("fewer than three lines".into()));
        };
        if origin.is_empty() {
            return Err(NoteError::Checkpoint("empty origin".into()));
        }
        let size_ok = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size = size
            .parse()
            .ok()
            .filter(|_| size_ok)
            .ok_or_else(|| NoteError::Checkpoint(format!("bad tree size {size:?}")))?;
        let root = Hash::from_base64(root)
            .ok_or_else(|| NoteError::Checkpoint(format!("bad root hash {root:?}")))?;
        let mut previous = None;
        for line in lines {
            if let Some(hash) = line.strip_prefix(PREVIOUS_LINE) {
                let hash = Hash::from_base64(hash).ok_or_else(|| {
                    NoteError::Checkpoint(format!("bad previous checkpoint hash {hash:?}"))
                })?;
                if previous.replace(hash).is_some() {
                    return Err(NoteError::Checkpoint("two previous lines".into()));
                }
            }
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            previous,
        })
    }

    /// Verify a signed checkpoint note with `key` and parse it; its origin must be the key's
    /// name.
    pub fn open(note: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
        Checkpoint::from_text(key.open(note)?, key)
    }

    /// [`open`](Self::open) for many notes, with batch signature verification.
    pub fn open_many(notes: &[&str], key: &VerifierKey) -> Vec<Result<Checkpoint, NoteError>> {
        key.open_many(notes)
            .into_iter()
            .map(|text| Checkpoint::from_text(text?, key))
            .collect()
    }

    fn from_text(text: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
        let checkpoint = Checkpoint::parse(text)?;
        if checkpoint.origin != key.name() {
            return Err(NoteError::Checkpoint(format!(
                "origin {} is not the key's log {}",
                checkpoint.origin,
                key.name()
            )));
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_and_sign_checkpoints() {
        let key = SignerKey::generate().unwrap();
        let verifier = VerifierKey::parse(&key.verifier().to_string()).unwrap();
        assert_eq!(verifier, key.verifier());
        let checkpoint = Checkpoint {
            origin: key.name().to_owned(),
            size: 3,
            root: crate::merkle::leaf_hash(b"x"),
            previous: Some(crate::merkle::leaf_hash(b"before")),
        };
        let note = key.sign(&checkpoint.to_text());
        assert_eq!(Checkpoint::open(&note, &verifier).unwrap(), checkpoint);
        let tampered = note.replacen("\n3\n", "\n4\n", 1);
        assert!(Checkpoint::open(&tampered, &verifier).is_err());
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn batch_opening_gives_each_note_its_own_verdict() {
        let key = SignerKey::generate().unwrap();
        let verifier = key.verifier();
        let notes: Vec<String> = (0..10)
            .map(|size| {
                let checkpoint = Checkpoint {
                    origin: key.name().to_owned(),
                    size,
                    root: crate::merkle::empty_root(),
                    previous: None,
                };
                key.sign(&checkpoint.to_text())
            })
            .collect();
        let mut texts: Vec<&str> = notes.iter().map(String::as_str).collect();
        assert!(
            Checkpoint::open_many(&texts, &verifier)
                .iter()
                .all(Result::is_ok)
        );
        let forged = notes[3].replacen("\n3\n", "\n4\n", 1);
        texts[3] = &forged;
        texts[7] = "no signature\n";
        let opened = Checkpoint::open_many(&texts, &verifier);
        for (size, result) in opened.iter().enumerate() {
            assert_eq!(
                result.is_err(),
                size == 3 || size == 7,
                "{size}: {result:?}"
            );
            if let Ok(checkpoint) = result {
                assert_eq!(checkpoint.size, size as u64);
            }
        }
    }

    #[test]
    fn checkpoint_parsing_is_strict() {
        let root = crate::merkle::empty_root().to_base64();
        for bad in [
            format!("o\n01\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            "o\n1\nnot-base64\n".to_owned(),
            format!("\n1\n{root}\n"),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let created = SignerKey::load_or_generate(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = SignerKey::load_or_generate(&path).unwrap();
        assert_eq!(loaded.verifier(), created.verifier());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = SignerKey::load(&path).unwrap_err().to_string();
        assert!(error.contains("accessible to other users"), "{error}");
    }
}

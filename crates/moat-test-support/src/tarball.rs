//! Real npm tarballs: a gzip'd ustar archive with every file under `package/` (and the same
//! archive under another top directory, for `.crate` files and PyPI sdists).

use std::io::Write;

use base64::Engine as _;
use flate2::{Compression, write::GzEncoder};
use sha1::Digest as _;

const BLOCK: usize = 512;
/// A fixed mtime keeps tarballs byte-for-byte reproducible (2020-01-01T00:00:00Z).
const MTIME: u64 = 1_577_836_800;

/// Builds a `.tgz` from `(path inside package/, contents)` pairs.
pub fn build(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    build_with_prefix("package", files)
}

/// Builds a gzip'd ustar archive with every file under `prefix/` (e.g. `foo-1.0.0` for a
/// `.crate` or a PyPI sdist).
pub fn build_with_prefix(prefix: &str, files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (path, contents) in files {
        tar.extend_from_slice(&header(&format!("{prefix}/{path}"), contents.len()));
        tar.extend_from_slice(contents);
        let padding = (BLOCK - contents.len() % BLOCK) % BLOCK;
        tar.extend(std::iter::repeat_n(0u8, padding));
    }
    tar.extend(std::iter::repeat_n(0u8, 2 * BLOCK));
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(&tar)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// One ustar header block for a regular file.
fn header(path: &str, size: usize) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    let (prefix, name) = split_path(path);
    put(&mut block[0..100], name.as_bytes());
    put(&mut block[100..108], b"0000644\0");
    put(&mut block[108..116], b"0000000\0");
    put(&mut block[116..124], b"0000000\0");
    put(&mut block[124..136], format!("{size:011o}\0").as_bytes());
    put(&mut block[136..148], format!("{MTIME:011o}\0").as_bytes());
    block[156] = b'0';
    put(&mut block[257..263], b"ustar\0");
    put(&mut block[263..265], b"00");
    put(&mut block[345..500], prefix.as_bytes());
    // The checksum is computed with its own field read as eight spaces.
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&byte| u32::from(byte)).sum();
    put(&mut block[148..156], format!("{sum:06o}\0 ").as_bytes());
    block
}

/// Splits a long path into ustar's `prefix` (155 bytes) and `name` (100 bytes).
fn split_path(path: &str) -> (&str, &str) {
    if path.len() <= 100 {
        return ("", path);
    }
    let split = path
        .char_indices()
        .filter(|&(index, ch)| ch == '/' && path.len() - index - 1 <= 100 && index <= 155)
        .map(|(index, _)| index)
        .next()
        .unwrap_or_else(|| panic!("path too long for a ustar header: {path}"));
    (&path[..split], &path[split + 1..])
}

fn put(field: &mut [u8], value: &[u8]) {
    field[..value.len()].copy_from_slice(value);
}

/// `sha512-<base64>`, the form npm puts in `dist.integrity`.
pub fn integrity(bytes: &[u8]) -> String {
    let digest = sha2::Sha512::digest(bytes);
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Lowercase hex sha1, the form npm puts in `dist.shasum`.
pub fn shasum(bytes: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(bytes))
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn header_checksum_and_layout_are_valid_ustar() {
        let tgz = build(&[("index.js".into(), b"module.exports = 1;\n".to_vec())]);
        let tar = gunzip(&tgz);
        assert_eq!(tar.len() % BLOCK, 0);
        let header = &tar[..BLOCK];
        assert_eq!(&header[..16], b"package/index.js");
        assert_eq!(&header[257..263], b"ustar\0");
        let stored = std::str::from_utf8(&header[148..154]).expect("ascii");
        let stored = u32::from_str_radix(stored, 8).expect("octal");
        let mut copy = header.to_vec();
        copy[148..156].fill(b' ');
        assert_eq!(stored, copy.iter().map(|&b| u32::from(b)).sum::<u32>());
        assert_eq!(&tar[BLOCK..BLOCK + 20], b"module.exports = 1;\n");
    }

    #[test]
    fn tarballs_are_reproducible() {
        let files = [("a.js".to_string(), b"x".to_vec())];
        assert_eq!(build(&files), build(&files));
    }

    #[test]
    fn long_paths_use_the_prefix_field() {
        let long = format!("{}/file.js", "d".repeat(120));
        let (prefix, name) = split_path(&long);
        assert_eq!(format!("{prefix}/{name}"), long);
        assert!(name.len() <= 100 && prefix.len() <= 155);
    }

    #[test]
    fn digests_match_known_values() {
        assert_eq!(shasum(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert!(integrity(b"abc").starts_with("sha512-3a81oZNherrMQXNJriBBMRLm"));
    }
}

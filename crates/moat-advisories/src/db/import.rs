//! Reading OSV `all.zip` dumps: entries are decompressed and parsed on several threads.

use std::io::{Cursor, Read};
use std::path::Path;

use flate2::{Crc, Decompress, FlushDecompress, Status};
use zip::{CompressionMethod, ZipArchive};

use super::osv::{self, Parsed};
use crate::Error;

/// Parse outcomes of every `.json` entry of the dump at `path`, in archive order, each with
/// its entry name.
pub(crate) fn read_zip(path: &Path) -> Result<Vec<(String, Parsed)>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let zip_error = |error: zip::result::ZipError| Error::Zip {
        path: path.to_owned(),
        message: error.to_string(),
    };
    let archive = ZipArchive::new(Cursor::new(bytes.as_slice())).map_err(zip_error)?;
    let count = archive.len();
    let threads = if count < 256 {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, 4)
    };

    let mut outcomes: Vec<(usize, String, Parsed)> = Vec::with_capacity(count);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                let mut archive = archive.clone();
                scope.spawn(move || {
                    let mut scratch = Scratch::new();
                    let mut out = Vec::with_capacity(count / threads + 1);
                    for index in (worker..count).step_by(threads) {
                        if let Some((name, parsed)) = read_entry(&mut archive, index, &mut scratch)
                        {
                            out.push((index, name, parsed));
                        }
                    }
                    out
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(part) => outcomes.extend(part),
                // A panicking parser is a bug; surface it rather than hide records.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    outcomes.sort_unstable_by_key(|(index, _, _)| *index);
    Ok(outcomes
        .into_iter()
        .map(|(_, name, parsed)| (name, parsed))
        .collect())
}

/// Buffers and inflater reused across the entries one worker reads.
struct Scratch {
    raw: Vec<u8>,
    text: Vec<u8>,
    inflater: Decompress,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            raw: Vec::new(),
            text: Vec::new(),
            inflater: Decompress::new(false),
        }
    }
}

/// Largest entry accepted (an OSV record is a few kilobytes; this bounds memory on hostile
/// archives whose headers claim huge sizes).
const MAX_ENTRY_BYTES: u64 = 64 * 1024 * 1024;

/// Decompress and parse entry `index`; `None` for directories and non-JSON files.
///
/// The compressed bytes are inflated here with one reused inflater rather than through the zip
/// reader's per-entry decoder, which roughly halves import time; the CRC-32 is still checked.
fn read_entry(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    index: usize,
    scratch: &mut Scratch,
) -> Option<(String, Parsed)> {
    let mut file = match archive.by_index_raw(index) {
        Ok(file) => file,
        Err(error) => {
            return Some((
                format!("entry {index}"),
                Parsed::Malformed(error.to_string()),
            ));
        }
    };
    let name = file.name().to_owned();
    if file.is_dir() || !name.ends_with(".json") {
        return None;
    }
    let malformed = |message: String| Some((name.clone(), Parsed::Malformed(message)));
    let size = file.size();
    if size > MAX_ENTRY_BYTES || file.compressed_size() > MAX_ENTRY_BYTES {
        return malformed(format!("entry of {size} bytes is too large"));
    }
    let (method, expected_crc) = (file.compression(), file.crc32());
    scratch.raw.clear();
    if let Err(error) = file.read_to_end(&mut scratch.raw) {
        return malformed(error.to_string());
    }
    drop(file);
    scratch.text.clear();
    // `CompressionMethod` is non-exhaustive: compare rather than match.
    if method == CompressionMethod::Stored {
        scratch.text.extend_from_slice(&scratch.raw);
    } else if method == CompressionMethod::Deflated {
        scratch.inflater.reset(false);
        scratch.text.reserve(size as usize + 1);
        match scratch.inflater.decompress_vec(
            &scratch.raw,
            &mut scratch.text,
            FlushDecompress::Finish,
        ) {
            Ok(Status::StreamEnd) => {}
            Ok(Status::Ok | Status::BufError) => {
                return malformed("deflate stream is truncated or larger than stated".into());
            }
            Err(error) => return malformed(error.to_string()),
        }
    } else {
        return malformed(format!("unsupported compression method {method}"));
    }
    if scratch.text.len() as u64 != size {
        return malformed("entry size does not match its header".to_owned());
    }
    let mut crc = Crc::new();
    crc.update(&scratch.text);
    if crc.sum() != expected_crc {
        return malformed("crc-32 mismatch".to_owned());
    }
    match std::str::from_utf8(&scratch.text) {
        Ok(text) => Some((name, osv::parse(text))),
        Err(error) => malformed(error.to_string()),
    }
}

//! A tiny HTTP/1.1 client over `std::net::TcpStream`, for requests that must reach the server
//! exactly as written: odd path spellings, HEAD, Range. It sends `Connection: close` and reads
//! the whole answer, keeping the status line (with its reason phrase) as sent.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

/// A guard against hangs, not a timing assertion.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct RawResponse {
    /// `HTTP/1.1 403 moat: blocked …`
    pub status_line: String,
    pub status: u16,
    /// The reason phrase, possibly empty.
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "{}: body is not JSON ({error}): {}",
                self.status_line,
                self.text()
            )
        })
    }
}

/// `GET path` on `base` (`http://host:port`, any path part of `base` is ignored).
pub fn get(base: &str, path: &str) -> RawResponse {
    request(base, "GET", path, &[])
}

/// Asks for `path` with GET, HEAD and a ranged GET, and asserts each is refused: `403` with a
/// reason phrase starting with `reason`. Returns the two GETs' answers (plain, ranged), for
/// checks of their bodies.
pub fn assert_refused_every_way(base: &str, path: &str, reason: &str) -> [RawResponse; 2] {
    let ways: [(&str, &[(&str, &str)]); 3] = [
        ("GET", &[]),
        ("GET", &[("Range", "bytes=0-10")]),
        ("HEAD", &[]),
    ];
    let [plain, ranged, _] = ways.map(|(method, headers)| {
        let response = request(base, method, path, headers);
        let shown = format!("{method} {path} {headers:?}: {}", response.status_line);
        assert_eq!(response.status, 403, "{shown}");
        assert!(response.reason.starts_with(reason), "{shown}");
        response
    });
    [plain, ranged]
}

/// Sends one request; panics if the connection fails.
pub fn request(base: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    try_request(base, method, path, headers)
        .unwrap_or_else(|error| panic!("{method} {base}{path}: {error}"))
}

/// Sends one request; `Err` when the connection fails or the answer is not HTTP.
pub fn try_request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<RawResponse> {
    let authority = authority(base);
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&raw, method == "HEAD")
}

fn authority(base: &str) -> &str {
    let rest = base.strip_prefix("http://").unwrap_or(base);
    rest.split('/').next().unwrap_or(rest)
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

fn parse(raw: &[u8], head_only: bool) -> std::io::Result<RawResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid(format!("no header end in {} bytes", raw.len())))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default().to_owned();
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status = parts
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line: {status_line}")))?;
    let reason = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    let body = if head_only {
        Vec::new()
    } else if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(RawResponse {
        status_line,
        status,
        reason,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("truncated chunk size".into()))?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size {
            return Err(invalid("truncated chunk".into()));
        }
        body.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

/// Decodes `%XX` escapes (any case); invalid escapes are kept as written.
pub fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_answers_with_reason_phrases() {
        let raw = b"HTTP/1.1 403 moat: blocked x@1 (moat.denied)\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let response = parse(raw, false).unwrap();
        assert_eq!(response.status, 403);
        assert_eq!(response.reason, "moat: blocked x@1 (moat.denied)");
        assert_eq!(response.body, b"abcde");
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("/@scope%2fname"), "/@scope/name");
        assert_eq!(percent_decode("/%6Dinimist%"), "/minimist%");
    }
}

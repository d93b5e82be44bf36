//! Reading a PEP 503 HTML project page with a small tag scanner: anchors and their `data-*`
//! attributes, `<base href>`, the `pypi:repository-version` meta tag and the title.
//!
//! The scanner works on any bytes (invalid UTF-8 is replaced), in one linear pass, and never
//! panics: it only slices at ASCII delimiters, through `str::get`.

use std::collections::BTreeMap;

use crate::MetadataError;
use crate::pypi::page::{
    ProjectPage, RawFile, check_api_version, check_name, clean_hash, parse_page_url,
};

/// Longest entity name or number looked at (`&…;`).
const MAX_ENTITY_LEN: usize = 32;

impl ProjectPage {
    /// Read a PEP 503 HTML page: every `<a href>` is a file (named by its URL's last segment),
    /// with `data-requires-python`, `data-yanked`, and `data-core-metadata` or
    /// `data-dist-info-metadata` (`true` or `<algorithm>=<hex>`); hashes come from the
    /// `#sha256=` fragment. A title `Links for <name>` must PEP 503-normalise equal to
    /// `requested`; without one the page takes the requested name.
    pub fn parse_html(
        body: &[u8],
        page_url: &str,
        requested: &str,
    ) -> Result<ProjectPage, MetadataError> {
        let page = parse_page_url(page_url)?;
        let text = String::from_utf8_lossy(body);
        let mut scanner = Scanner::new(&text);
        let mut base_href = None;
        let mut title = None;
        let mut anchors = Vec::new();
        while let Some(tag) = scanner.next_tag() {
            if tag.closing {
                continue;
            }
            match tag.name.as_str() {
                "a" => anchors.push(tag),
                "base" if base_href.is_none() => {
                    base_href = tag.attribute("href").map(str::to_owned)
                }
                "meta" => {
                    let is_version = tag.attribute("name").is_some_and(|name| {
                        name.trim().eq_ignore_ascii_case("pypi:repository-version")
                    });
                    if is_version {
                        check_api_version(Some(tag.attribute("content").unwrap_or_default()))?;
                    }
                }
                "title" if title.is_none() => title = Some(scanner.text_until_close("title")),
                _ => {}
            }
        }
        let name = match title.as_deref().and_then(title_name) {
            Some(found) => {
                check_name(found, requested)?;
                found.to_owned()
            }
            None => requested.to_owned(),
        };
        let base = base_href
            .and_then(|href| page.join(href.trim()).ok())
            .unwrap_or(page);
        let raw_files = anchors
            .iter()
            .filter_map(|anchor| {
                let url = base.join(anchor.attribute("href")?.trim()).ok()?;
                Some(anchor_file(anchor, url))
            })
            .collect();
        Ok(ProjectPage::from_raw(&name, raw_files))
    }
}

/// The project name in a title `Links for <name>`.
fn title_name(title: &str) -> Option<&str> {
    let title = title.trim();
    let prefix = title.get(..10)?;
    let name = title.get(10..)?.trim();
    (prefix.eq_ignore_ascii_case("links for ") && !name.is_empty()).then_some(name)
}

fn anchor_file(anchor: &Tag, url: reqwest::Url) -> RawFile {
    let core_metadata = anchor
        .attribute("data-core-metadata")
        .or_else(|| anchor.attribute("data-dist-info-metadata"))
        .and_then(metadata_attribute);
    RawFile {
        filename: None,
        url,
        hashes: BTreeMap::new(),
        requires_python: anchor.attribute("data-requires-python").map(str::to_owned),
        upload_time: None,
        yanked: anchor.attribute("data-yanked").map(str::to_owned),
        core_metadata,
        size: None,
    }
}

/// `true` → metadata without a hash; `<algorithm>=<hex>` → with it; anything else → none.
fn metadata_attribute(value: &str) -> Option<BTreeMap<String, String>> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("true") {
        return Some(BTreeMap::new());
    }
    let (algorithm, digest) = value.split_once('=')?;
    let (algorithm, digest) = clean_hash(algorithm, digest)?;
    Some(BTreeMap::from([(algorithm, digest)]))
}

/// A start or end tag with its attributes (names lowercase, values entity-decoded).
struct Tag {
    name: String,
    closing: bool,
    attributes: Vec<(String, String)>,
}

impl Tag {
    /// The first attribute of that (lowercase) name, as HTML keeps the first of duplicates.
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A forward-only scanner over an HTML document.
struct Scanner<'a> {
    text: &'a str,
    /// `text` ASCII-lowercased: the same byte offsets, for case-insensitive matching.
    lower: String,
    position: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Scanner<'a> {
        Scanner {
            text,
            lower: text.to_ascii_lowercase(),
            position: 0,
        }
    }

    fn byte(&self, at: usize) -> Option<u8> {
        self.text.as_bytes().get(at).copied()
    }

    /// The next tag, skipping text, comments, doctypes, processing instructions and the content
    /// of `script` and `style`. `None` at the end, or when the document ends inside a tag.
    fn next_tag(&mut self) -> Option<Tag> {
        loop {
            let start = self.position + self.lower.get(self.position..)?.find('<')?;
            let rest = self.lower.get(start..)?;
            if rest.starts_with("<!--") {
                self.skip_past(start + 4, "-->");
                continue;
            }
            if rest.starts_with("<!") || rest.starts_with("<?") {
                self.skip_past(start + 2, ">");
                continue;
            }
            let closing = rest.starts_with("</");
            let name_start = start + 1 + usize::from(closing);
            if !self
                .byte(name_start)
                .is_some_and(|b| b.is_ascii_alphabetic())
            {
                // A `<` that opens no tag is text.
                self.position = start + 1;
                continue;
            }
            let name_end = self.scan_while(name_start, |b| !is_space(b) && b != b'/' && b != b'>');
            let name = self.lower.get(name_start..name_end)?.to_owned();
            self.position = name_end;
            let attributes = self.attributes()?;
            if !closing && (name == "script" || name == "style") {
                self.text_until_close(&name);
            }
            return Some(Tag {
                name,
                closing,
                attributes,
            });
        }
    }

    /// The attributes of the tag being read, up to and past its `>`.
    fn attributes(&mut self) -> Option<Vec<(String, String)>> {
        let mut attributes = Vec::new();
        loop {
            self.position = self.scan_while(self.position, |b| is_space(b) || b == b'/');
            match self.byte(self.position)? {
                b'>' => {
                    self.position += 1;
                    return Some(attributes);
                }
                first => {
                    // A leading `=` belongs to the name (HTML tokenizer), so the name is never
                    // empty and the scanner always moves on.
                    let from = self.position + usize::from(first == b'=');
                    let name_end =
                        self.scan_while(from, |b| !is_space(b) && !matches!(b, b'/' | b'>' | b'='));
                    let name = self.lower.get(self.position..name_end)?.to_owned();
                    self.position = self.scan_while(name_end, is_space);
                    let value = if self.byte(self.position) == Some(b'=') {
                        self.position = self.scan_while(self.position + 1, is_space);
                        self.attribute_value()?
                    } else {
                        String::new()
                    };
                    attributes.push((name, value));
                }
            }
        }
    }

    /// A quoted or unquoted attribute value, entity-decoded.
    fn attribute_value(&mut self) -> Option<String> {
        let start = self.position;
        let raw = match self.byte(start)? {
            quote @ (b'"' | b'\'') => {
                let end = start + 1 + self.text.get(start + 1..)?.find(char::from(quote))?;
                self.position = end + 1;
                self.text.get(start + 1..end)?
            }
            b'>' => "",
            _ => {
                let end = self.scan_while(start, |b| !is_space(b) && b != b'>');
                self.position = end;
                self.text.get(start..end)?
            }
        };
        Some(decode_entities(raw))
    }

    /// The text up to `</name`, entity-decoded; the scanner moves past that end tag.
    fn text_until_close(&mut self, name: &str) -> String {
        let start = self.position;
        let needle = format!("</{name}");
        let end = self
            .lower
            .get(start..)
            .and_then(|rest| rest.find(&needle))
            .map_or(self.text.len(), |at| start + at);
        self.skip_past(end, ">");
        decode_entities(self.text.get(start..end).unwrap_or_default())
    }

    /// Move past the next `needle` at or after `from` (to the end when there is none).
    fn skip_past(&mut self, from: usize, needle: &str) {
        self.position = self
            .lower
            .get(from..)
            .and_then(|rest| rest.find(needle))
            .map_or(self.text.len(), |at| from + at + needle.len());
    }

    /// The first offset at or after `from` whose byte does not satisfy `keep`.
    fn scan_while(&self, from: usize, keep: impl Fn(u8) -> bool) -> usize {
        let bytes = self.text.as_bytes();
        let mut at = from;
        while bytes.get(at).is_some_and(|b| keep(*b)) {
            at += 1;
        }
        at
    }
}

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// Decode the character references HTML pages use: `&lt;` `&gt;` `&amp;` `&quot;` `&apos;`
/// `&nbsp;` and numeric ones (`&#39;`, `&#x27;`). Unknown or unterminated references stay as
/// written; invalid code points become U+FFFD.
pub(crate) fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or_default());
        rest = rest.get(amp..).unwrap_or_default();
        let semicolon = rest
            .bytes()
            .skip(1)
            .take(MAX_ENTITY_LEN)
            .position(|b| b == b';');
        let decoded = semicolon.and_then(|at| {
            let entity = rest.get(1..1 + at)?;
            Some((decode_entity(entity)?, at + 2))
        });
        match decoded {
            Some((character, consumed)) => {
                out.push(character);
                rest = rest.get(consumed..).unwrap_or_default();
            }
            None => {
                out.push('&');
                rest = rest.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_entity(entity: &str) -> Option<char> {
    let named = match entity {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some('\u{a0}'),
        _ => None,
    };
    if named.is_some() {
        return named;
    }
    let number = entity.strip_prefix('#')?;
    let code = match number.strip_prefix(['x', 'X']) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16).ok()
        }
        None if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
            number.parse::<u32>().ok()
        }
        _ => return None,
    };
    Some(
        code.filter(|code| *code != 0)
            .and_then(char::from_u32)
            .unwrap_or(char::REPLACEMENT_CHARACTER),
    )
}

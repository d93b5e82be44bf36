//! PEP 691 content negotiation: which serialisation of a simple page a client asked for.

/// The `Content-Type` of a PEP 691 JSON page.
pub const SIMPLE_JSON: &str = "application/vnd.pypi.simple.v1+json";

/// The `Content-Type` of a PEP 503 HTML page served under PEP 691 negotiation.
pub const SIMPLE_HTML: &str = "application/vnd.pypi.simple.v1+html";

/// Media types answered with JSON.
const JSON_TYPES: &[&str] = &[SIMPLE_JSON, "application/vnd.pypi.simple.latest+json"];

/// Media types answered with HTML.
const HTML_TYPES: &[&str] = &[
    SIMPLE_HTML,
    "application/vnd.pypi.simple.latest+html",
    "text/html",
];

/// A serialisation of a simple-repository page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PEP 691 JSON.
    Json,
    /// PEP 503 HTML.
    Html,
}

impl Format {
    /// The `Content-Type` the page is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => SIMPLE_JSON,
            Format::Html => SIMPLE_HTML,
        }
    }
}

/// One media range of an `Accept` header.
struct MediaRange<'a> {
    /// `type/subtype`, either part possibly `*`.
    media_type: &'a str,
    /// Quality in `0.0..=1.0`.
    quality: f32,
}

/// Choose JSON or HTML from the `Accept` header value(s) (several headers joined with `,`),
/// honouring q-values and the precedence of more specific ranges. JSON only when it is
/// acceptable and strictly preferred; no header, `*/*`, a tie or nothing recognised give HTML,
/// which every client reads.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Html;
    };
    let ranges: Vec<MediaRange<'_>> = accept.split(',').filter_map(parse_range).collect();
    let json = best_quality(&ranges, JSON_TYPES);
    let html = best_quality(&ranges, HTML_TYPES);
    if json > 0.0 && json > html {
        Format::Json
    } else {
        Format::Html
    }
}

/// Parse `type/subtype; param=value; q=0.5`. A malformed `q` makes the range unacceptable.
fn parse_range(text: &str) -> Option<MediaRange<'_>> {
    let mut parts = text.split(';');
    let media_type = parts.next()?.trim();
    if !media_type.contains('/') {
        return None;
    }
    let mut quality = 1.0;
    for parameter in parts {
        let Some((key, value)) = parameter.split_once('=') else {
            continue;
        };
        if key.trim().eq_ignore_ascii_case("q") {
            quality = match value.trim().parse::<f32>() {
                Ok(q) if q.is_finite() => q.clamp(0.0, 1.0),
                _ => 0.0,
            };
        }
    }
    Some(MediaRange {
        media_type,
        quality,
    })
}

/// The highest quality any of `types` gets.
fn best_quality(ranges: &[MediaRange<'_>], types: &[&str]) -> f32 {
    types
        .iter()
        .map(|media_type| quality_of(ranges, media_type))
        .fold(0.0, f32::max)
}

/// The quality of one media type: that of the most specific matching range (exact, then
/// `type/*`, then `*/*`), the highest among equally specific ones; 0 when none matches.
fn quality_of(ranges: &[MediaRange<'_>], media_type: &str) -> f32 {
    let (main_type, _) = media_type.split_once('/').unwrap_or((media_type, ""));
    let mut best: Option<(u8, f32)> = None;
    for range in ranges {
        let (range_main, range_sub) = range
            .media_type
            .split_once('/')
            .unwrap_or((range.media_type, ""));
        let specificity = if range.media_type.eq_ignore_ascii_case(media_type) {
            2
        } else if range_sub.trim() == "*" && range_main.trim().eq_ignore_ascii_case(main_type) {
            1
        } else if range_main.trim() == "*" && range_sub.trim() == "*" {
            0
        } else {
            continue;
        };
        best = match best {
            Some((s, q)) if s > specificity || (s == specificity && q >= range.quality) => {
                Some((s, q))
            }
            _ => Some((specificity, range.quality)),
        };
    }
    best.map_or(0.0, |(_, quality)| quality)
}

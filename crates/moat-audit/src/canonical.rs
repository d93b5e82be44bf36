//! Canonical JSON (RFC 8785, the JSON Canonicalization Scheme) for the values audit events are
//! made of: strings, integers, booleans, null, arrays and objects.
//!
//! Object members are sorted by their names as UTF-16 code units; strings are written as
//! ECMAScript's `JSON.stringify` writes them (only `"`, `\` and the C0 controls escaped, the
//! five short escapes where they exist, `\u00xx` in lowercase otherwise); no whitespace.
//! Numbers other than integers within ±2^53 are refused rather than approximated: an event
//! carries none, and a refused event is an append error, never a silently different leaf.

use std::fmt::Write as _;

use serde_json::Value;

/// The largest integer IEEE 754 doubles (and so RFC 8785) represent exactly.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalError {
    /// A fraction or an integer beyond ±2^53: never part of an audit event.
    #[error("number {0} is not an integer within ±2^53")]
    Number(String),
}

/// `value` in canonical JSON.
pub fn to_canonical_string(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => {
            if let Some(n) = number.as_u64().filter(|n| *n <= MAX_SAFE_INTEGER) {
                let _ = write!(out, "{n}");
            } else if let Some(n) = number
                .as_i64()
                .filter(|n| n.unsigned_abs() <= MAX_SAFE_INTEGER)
            {
                let _ = write!(out, "{n}");
            } else {
                return Err(CanonicalError::Number(number.to_string()));
            }
        }
        Value::String(string) => write_string(out, string),
        Value::Array(items) => {
            out.push('[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (position, (name, item)) in sorted.into_iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_string(out, name);
                out.push(':');
                write_value(out, item)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_string(out: &mut String, string: &str) {
    out.push('"');
    for c in string.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(json: &str) -> String {
        to_canonical_string(&serde_json::from_str(json).unwrap()).unwrap()
    }

    /// RFC 8785 §3.2.2/§3.2.3 example without its `numbers` member (no fractions here).
    #[test]
    fn rfc8785_serialization_example_without_numbers() {
        let input = r#"{
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        assert_eq!(
            canonical(input),
            "{\"literals\":[null,true,false],\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}"
        );
    }

    /// RFC 8785 §3.2.3 sorting test data: names compare as UTF-16 code units, so the emoji
    /// (surrogates D83D DE00) sorts before U+FB33.
    #[test]
    fn rfc8785_property_sorting_example() {
        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        assert_eq!(
            canonical(input),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
             \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
             \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    #[test]
    fn nested_members_sort_and_integers_print_plainly() {
        assert_eq!(
            canonical(r#"{"b": {"y": -1, "x": 9007199254740991}, "a": [{"d": 1, "c": 0}]}"#),
            r#"{"a":[{"c":0,"d":1}],"b":{"x":9007199254740991,"y":-1}}"#
        );
    }

    #[test]
    fn fractions_and_huge_integers_are_refused() {
        for json in ["1.5", "9007199254740992", "-9007199254740992"] {
            let value = serde_json::from_str(json).unwrap();
            assert!(to_canonical_string(&value).is_err(), "{json}");
        }
    }

    #[test]
    fn every_control_character_is_escaped() {
        let all: String = (0u8..0x20).map(char::from).collect();
        let text = to_canonical_string(&Value::String(all)).unwrap();
        assert!(text.chars().all(|c| c >= ' '), "{text}");
        assert!(text.contains("\\u001f") && text.contains("\\b"), "{text}");
    }
}

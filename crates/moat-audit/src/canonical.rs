//! Canonical JSON (RFC 8785, the JSON Canonicalization Scheme) for the values audit events are
//! made of: strings, integers, booleans, null, arrays and objects.
//!
//! Object members are sorted by their names as UTF-16 code units; strings are written as
//! ECMAScript's `JSON.stringify` writes them (only `"`, `\` and the C0 controls escaped, the
//! five short escapes where they exist, `\u00xx` in lowercase otherwise); no whitespace.
//! Numbers other than integers within ±2^53 are refused rather than approximated: an event
//! carries none, and a refused event is an append error, never a silently different leaf.
//!
//! [`to_canonical`] is a serde serializer: it writes any `Serialize` value (an event, or a
//! `serde_json::Value`) straight to canonical text, with no intermediate `Value` tree. An
//! object's members are written into one scratch buffer as they come and copied out in sorted
//! order when the object ends.

use std::borrow::Cow;
use std::fmt::{Display, Write as _};
use std::ops::Range;

use serde::ser::{self, Serialize};

/// The largest integer IEEE 754 doubles (and so RFC 8785) represent exactly.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalError {
    /// A fraction or an integer beyond ±2^53: never part of an audit event.
    #[error("number {0} is not an integer within ±2^53")]
    Number(String),
    /// Something JSON has no form for here: bytes, a map key that is not a string.
    #[error("{0}")]
    Unsupported(String),
}

impl ser::Error for CanonicalError {
    fn custom<T: Display>(message: T) -> Self {
        CanonicalError::Unsupported(message.to_string())
    }
}

/// Any serializable value (an event, a `serde_json::Value`) in canonical JSON.
pub fn to_canonical<T: Serialize + ?Sized>(value: &T) -> Result<String, CanonicalError> {
    let mut out = String::with_capacity(512);
    value.serialize(Canonical { out: &mut out })?;
    Ok(out)
}

fn write_string(out: &mut String, string: &str) {
    out.push('"');
    let mut plain = 0;
    for (at, byte) in string.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0c => "\\f",
            b'\r' => "\\r",
            0..0x20 => "",
            _ => continue,
        };
        out.push_str(&string[plain..at]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        plain = at + 1;
    }
    out.push_str(&string[plain..]);
    out.push('"');
}

/// Sort object members into RFC 8785 order: names compared as UTF-16 code units. UTF-8 byte
/// order is the same unless a name holds a character above U+FFFF or in U+E000..U+FFFF (lead
/// bytes 0xEE and up), so that comparison is only paid for names that have one. Names in one
/// object are distinct, so an unstable sort gives the one order.
fn sort_members<T>(members: &mut [(Cow<'static, str>, T)]) {
    let plain = members
        .iter()
        .all(|(name, _)| name.bytes().all(|byte| byte < 0xee));
    if plain {
        members.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
    } else {
        members.sort_unstable_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    }
}

fn integer(value: impl Into<i128>) -> Result<String, CanonicalError> {
    let value: i128 = value.into();
    if value.unsigned_abs() <= u128::from(MAX_SAFE_INTEGER) {
        Ok(value.to_string())
    } else {
        Err(CanonicalError::Number(value.to_string()))
    }
}

/// `serialize_i8` … `serialize_u64`: the same `body` over each integer type.
macro_rules! integers {
    ($result:ty, |$this:ident, $v:ident| $body:expr) => {
        integers!(@each $result, $this, $v, $body; serialize_i8: i8, serialize_i16: i16,
            serialize_i32: i32, serialize_i64: i64, serialize_u8: u8, serialize_u16: u16,
            serialize_u32: u32, serialize_u64: u64);
    };
    (@each $result:ty, $this:ident, $v:ident, $body:expr; $($method:ident: $int:ty),*) => {$(
        fn $method(self, $v: $int) -> $result {
            let $this = self;
            $body
        }
    )*};
}

/// The serializer: writes one value to `out`.
struct Canonical<'a> {
    out: &'a mut String,
}

/// An array being written.
struct Array<'a> {
    out: &'a mut String,
    first: bool,
    /// For an enum's tuple variant, `{"variant":[…]}`: the object to close.
    close_object: bool,
}

/// An object being collected: member values written to `scratch`, then copied out sorted.
struct Object<'a> {
    out: &'a mut String,
    scratch: String,
    members: Vec<(Cow<'static, str>, Range<usize>)>,
    /// A map key waiting for its value.
    key: Option<String>,
    /// For an enum's struct variant, `{"variant":{…}}`: the outer object to close.
    close_object: bool,
}

impl Array<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        value.serialize(Canonical { out: self.out })
    }

    fn finish(self) {
        self.out.push(']');
        if self.close_object {
            self.out.push('}');
        }
    }
}

impl Object<'_> {
    fn member<T: Serialize + ?Sized>(
        &mut self,
        name: Cow<'static, str>,
        value: &T,
    ) -> Result<(), CanonicalError> {
        let start = self.scratch.len();
        value.serialize(Canonical {
            out: &mut self.scratch,
        })?;
        self.members.push((name, start..self.scratch.len()));
        Ok(())
    }

    fn finish(mut self) {
        sort_members(&mut self.members);
        self.out.push('{');
        for (position, (name, range)) in self.members.iter().enumerate() {
            if position > 0 {
                self.out.push(',');
            }
            write_string(self.out, name);
            self.out.push(':');
            self.out.push_str(&self.scratch[range.clone()]);
        }
        self.out.push('}');
        if self.close_object {
            self.out.push('}');
        }
    }
}

impl<'a> Canonical<'a> {
    fn array(self, close_object: bool) -> Array<'a> {
        self.out.push('[');
        Array {
            out: self.out,
            first: true,
            close_object,
        }
    }

    fn object(self, close_object: bool, len: Option<usize>) -> Object<'a> {
        Object {
            out: self.out,
            scratch: String::with_capacity(256),
            members: Vec::with_capacity(len.unwrap_or(8)),
            key: None,
            close_object,
        }
    }

    /// `{"variant":` before the variant's content.
    fn open_variant(&mut self, variant: &str) {
        self.out.push('{');
        write_string(self.out, variant);
        self.out.push(':');
    }

    fn raw(self, text: &str) -> Result<(), CanonicalError> {
        self.out.push_str(text);
        Ok(())
    }
}

impl<'a> ser::Serializer for Canonical<'a> {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), CanonicalError> {
        self.raw(if v { "true" } else { "false" })
    }
    integers!(Result<(), CanonicalError>, |this, v| this.raw(&integer(v)?));
    fn serialize_f32(self, v: f32) -> Result<(), CanonicalError> {
        Err(CanonicalError::Number(v.to_string()))
    }
    fn serialize_f64(self, v: f64) -> Result<(), CanonicalError> {
        Err(CanonicalError::Number(v.to_string()))
    }
    fn serialize_char(self, v: char) -> Result<(), CanonicalError> {
        write_string(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), CanonicalError> {
        write_string(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), CanonicalError> {
        Err(CanonicalError::Unsupported(
            "bytes have no JSON form".into(),
        ))
    }
    fn serialize_none(self) -> Result<(), CanonicalError> {
        self.raw("null")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CanonicalError> {
        self.raw("null")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), CanonicalError> {
        self.raw("null")
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), CanonicalError> {
        write_string(self.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.open_variant(variant);
        value.serialize(Canonical { out: self.out })?;
        self.out.push('}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, CanonicalError> {
        Ok(self.array(false))
    }
    fn serialize_tuple(self, _: usize) -> Result<Array<'a>, CanonicalError> {
        Ok(self.array(false))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Array<'a>, CanonicalError> {
        Ok(self.array(false))
    }
    fn serialize_tuple_variant(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Array<'a>, CanonicalError> {
        self.open_variant(variant);
        Ok(self.array(true))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, CanonicalError> {
        Ok(self.object(false, len))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Object<'a>, CanonicalError> {
        Ok(self.object(false, Some(len)))
    }
    fn serialize_struct_variant(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'a>, CanonicalError> {
        self.open_variant(variant);
        Ok(self.object(true, Some(len)))
    }
}

/// The four sequence traits, all writing elements of an [`Array`].
macro_rules! array_impl {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Array<'_> {
            type Ok = ();
            type Error = CanonicalError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
                self.element(value)
            }
            fn end(self) -> Result<(), CanonicalError> {
                self.finish();
                Ok(())
            }
        }
    )*};
}

array_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Self::Error> {
        self.key = Some(key.serialize(KeyName)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| CanonicalError::Unsupported("a map value without its key".into()))?;
        self.member(Cow::Owned(key), value)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.finish();
        Ok(())
    }
}

/// Struct fields, named by the type: members of an [`Object`].
macro_rules! struct_impl {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Object<'_> {
            type Ok = ();
            type Error = CanonicalError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Self::Error> {
                self.member(Cow::Borrowed(key), value)
            }
            fn end(self) -> Result<(), CanonicalError> {
                self.finish();
                Ok(())
            }
        }
    )*};
}

struct_impl!(SerializeStruct, SerializeStructVariant);

/// Map keys: JSON names are strings (serde_json also writes integer keys as strings; so do we).
struct KeyName;

impl ser::Serializer for KeyName {
    type Ok = String;
    type Error = CanonicalError;
    type SerializeSeq = ser::Impossible<String, CanonicalError>;
    type SerializeTuple = ser::Impossible<String, CanonicalError>;
    type SerializeTupleStruct = ser::Impossible<String, CanonicalError>;
    type SerializeTupleVariant = ser::Impossible<String, CanonicalError>;
    type SerializeMap = ser::Impossible<String, CanonicalError>;
    type SerializeStruct = ser::Impossible<String, CanonicalError>;
    type SerializeStructVariant = ser::Impossible<String, CanonicalError>;

    fn serialize_str(self, v: &str) -> Result<String, CanonicalError> {
        Ok(v.to_owned())
    }
    fn serialize_char(self, v: char) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    integers!(Result<String, CanonicalError>, |_this, v| Ok(v.to_string()));
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, CanonicalError> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, CanonicalError> {
        value.serialize(self)
    }
    fn serialize_bool(self, _: bool) -> Result<String, CanonicalError> {
        Err(not_a_name())
    }
    fn serialize_f32(self, _: f32) -> Result<String, CanonicalError> {
        Err(not_a_name())
    }
    fn serialize_f64(self, _: f64) -> Result<String, CanonicalError> {
        Err(not_a_name())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, CanonicalError> {
        Err(not_a_name())
    }
    fn serialize_none(self) -> Result<String, CanonicalError> {
        Err(not_a_name())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, CanonicalError> {
        Err(not_a_name())
    }
    fn serialize_unit(self) -> Result<String, CanonicalError> {
        Err(not_a_name())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, CanonicalError> {
        Err(not_a_name())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, CanonicalError> {
        Err(not_a_name())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, CanonicalError> {
        Err(not_a_name())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, CanonicalError> {
        Err(not_a_name())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, CanonicalError> {
        Err(not_a_name())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, CanonicalError> {
        Err(not_a_name())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, CanonicalError> {
        Err(not_a_name())
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, CanonicalError> {
        Err(not_a_name())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, CanonicalError> {
        Err(not_a_name())
    }
}

fn not_a_name() -> CanonicalError {
    CanonicalError::Unsupported("a JSON object member name must be a string".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn canonical(json: &str) -> String {
        to_canonical::<Value>(&serde_json::from_str(json).unwrap()).unwrap()
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
            assert!(to_canonical::<Value>(&value).is_err(), "{json}");
        }
    }

    #[test]
    fn every_control_character_is_escaped() {
        let all: String = (0u8..0x20).map(char::from).collect();
        let text = to_canonical::<Value>(&Value::String(all)).unwrap();
        assert!(text.chars().all(|c| c >= ' '), "{text}");
        assert!(text.contains("\\u001f") && text.contains("\\b"), "{text}");
    }

    /// serde_json's own writer, re-sorted through a `Value`: what the serializer must equal.
    fn through_value<T: Serialize>(value: &T) -> String {
        fn sort(value: Value) -> Value {
            match value {
                Value::Object(members) => {
                    let mut sorted: Vec<(String, Value)> = members.into_iter().collect();
                    sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
                    Value::Object(sorted.into_iter().map(|(k, v)| (k, sort(v))).collect())
                }
                Value::Array(items) => Value::Array(items.into_iter().map(sort).collect()),
                scalar @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)) => {
                    scalar
                }
            }
        }
        serde_json::to_string(&sort(serde_json::to_value(value).unwrap())).unwrap()
    }

    #[derive(serde::Serialize)]
    #[serde(tag = "type", rename_all = "kebab-case")]
    enum Tagged {
        Decision {
            zeta: Option<String>,
            alpha: Vec<String>,
            nested: std::collections::BTreeMap<String, i64>,
            count: u32,
            flag: bool,
        },
    }

    #[derive(serde::Serialize)]
    enum External {
        Unit,
        Newtype(String),
        Tuple(u8, i16),
        Struct { b: u8, a: u8 },
    }

    #[test]
    fn serializer_equals_serde_json_resorted_for_events_and_enums() {
        let tagged = Tagged::Decision {
            zeta: None,
            alpha: vec!["x\"y".into(), "\u{7}\u{1f600}".into()],
            nested: [("b".to_owned(), -3), ("a".to_owned(), 1 << 40)]
                .into_iter()
                .collect(),
            count: 7,
            flag: true,
        };
        assert_eq!(to_canonical(&tagged).unwrap(), through_value(&tagged));
        for external in [
            External::Unit,
            External::Newtype("n".into()),
            External::Tuple(1, -2),
            External::Struct { b: 2, a: 1 },
        ] {
            assert_eq!(to_canonical(&external).unwrap(), through_value(&external));
        }
        assert_eq!(
            to_canonical(&Tagged::Decision {
                zeta: Some("z".into()),
                alpha: Vec::new(),
                nested: Default::default(),
                count: 0,
                flag: false
            })
            .unwrap(),
            r#"{"alpha":[],"count":0,"flag":false,"nested":{},"type":"decision","zeta":"z"}"#
        );
    }

    #[test]
    fn non_ascii_names_sort_by_utf16_in_nested_objects_too() {
        let value: Value =
            serde_json::from_str(r#"{"o": {"\ufb33": 1, "\ud83d\ude00": 2, "\u00f6": 3, "a": 4}}"#)
                .unwrap();
        assert_eq!(
            to_canonical(&value).unwrap(),
            "{\"o\":{\"a\":4,\"\u{f6}\":3,\"\u{1f600}\":2,\"\u{fb33}\":1}}"
        );
    }

    #[test]
    fn floats_and_bytes_have_no_canonical_form_here() {
        assert!(matches!(
            to_canonical(&1.0f64),
            Err(CanonicalError::Number(_))
        ));
        assert!(to_canonical(&Bytes).is_err());
        assert!(to_canonical(&u64::MAX).is_err());
        assert_eq!(
            to_canonical(&((1u64 << 53) - 1)).unwrap(),
            "9007199254740991"
        );
    }

    struct Bytes;
    impl Serialize for Bytes {
        fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(b"raw")
        }
    }
}

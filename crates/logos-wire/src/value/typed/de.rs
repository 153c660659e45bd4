//! `serde::Deserializer` reading from a [`Value`] (the `from_value` direction).
//!
//! Owns the Value → Rust half of the typed mapping and its error messages: every mismatch says
//! what was expected, what was found and where (`a.b[2]: expected i64, found text`). Never
//! coerces silently: integers convert only within range, text never becomes a number, null
//! never becomes a default.
//!
//! The deserializer reads from `&mut Value`, so one pass serves both kinds of target: text and
//! bytes move out of the value when the target owns them (`String`, `ByteBuf`: no copy) and are
//! lent when it borrows them (`&str`, `&[u8]`, `#[serde(borrow)]` fields: no copy either). What
//! was moved out is left empty; callers read a value once.

use crate::error::WireError;
use crate::value::Value;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Visitor};
use std::collections::btree_map;
use std::fmt::{self, Display};

/// One step on the way to a nested item.
#[derive(Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A conversion failure and where it happened, innermost step last-pushed.
#[derive(Debug)]
pub(super) struct Error {
    /// Steps from the failing item outwards (reversed when rendered).
    path: Vec<Segment>,
    msg: String,
}

impl Error {
    fn msg(msg: String) -> Self {
        Error {
            path: Vec::new(),
            msg,
        }
    }

    fn at(mut self, seg: Segment) -> Self {
        self.path.push(seg);
        self
    }

    pub(super) fn into_wire(self) -> WireError {
        WireError::Value(self.to_string())
    }
}

impl Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.path.iter().rev().enumerate() {
            match seg {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        if !self.path.is_empty() {
            f.write_str(": ")?;
        }
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error::msg(msg.to_string())
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error::msg(format!("expected {exp}, found {}", unexpected(&unexp)))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error::msg(format!("expected {exp}, found {}", unexpected(&unexp)))
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        Error::msg(format!("expected {exp}, found {len} items"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Error::msg(format!(
            "unknown variant {variant:?}, expected one of {}",
            quoted(expected)
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Error::msg(format!(
            "unknown field {field:?}, expected one of {}",
            quoted(expected)
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        Error::msg(format!("missing field {field:?}"))
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// serde's description of a found item, in this crate's type vocabulary.
fn unexpected(u: &de::Unexpected<'_>) -> String {
    use de::Unexpected as U;
    match *u {
        U::Bool(b) => format!("bool {b}"),
        U::Unsigned(n) => format!("int {n}"),
        U::Signed(n) => format!("int {n}"),
        U::Float(x) => format!("float {x}"),
        U::Char(c) => format!("text {c:?}"),
        U::Str(s) => format!("text {s:?}"),
        U::Bytes(_) => "bytes".into(),
        U::Unit | U::Option => "null".into(),
        U::NewtypeStruct | U::NewtypeVariant => "a newtype".into(),
        U::Seq => "list".into(),
        U::Map => "map".into(),
        U::Enum | U::UnitVariant | U::TupleVariant | U::StructVariant => "an enum variant".into(),
        U::Other(s) => s.into(),
    }
}

type Result<T> = std::result::Result<T, Error>;

fn mismatch(expected: &str, found: &Value) -> Error {
    Error::msg(format!("expected {expected}, found {}", found.type_name()))
}

/// Reads one [`Value`], moving out what the target owns and lending what it borrows.
pub(super) struct Deserializer<'de> {
    value: &'de mut Value,
}

impl<'de> Deserializer<'de> {
    pub(super) fn new(value: &'de mut Value) -> Self {
        Deserializer { value }
    }

    /// The integer in range of `T`, or an error naming `T` (as `name`) and what was found.
    fn int<T: TryFrom<i128>>(&self, name: &str) -> Result<T> {
        let n = self
            .value
            .as_i128()
            .ok_or_else(|| mismatch(name, self.value))?;
        T::try_from(n)
            .map_err(|_| Error::msg(format!("expected {name}, found int {n} (out of range)")))
    }

    fn float(&self, name: &str) -> Result<f64> {
        // Every integer of magnitude up to 2^53 is exactly a double; larger ones might round.
        const EXACT: i128 = 1 << 53;
        match *self.value {
            Value::Float(x) => Ok(x),
            _ => match self.value.as_i128() {
                Some(n) if (-EXACT..=EXACT).contains(&n) => Ok(n as f64),
                Some(n) => Err(Error::msg(format!(
                    "expected {name}, found int {n} (not exactly representable)"
                ))),
                None => Err(mismatch(name, self.value)),
            },
        }
    }
}

macro_rules! deserialize_int {
    ($($method:ident => $ty:ty, $visit:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let n: $ty = self.int(stringify!($ty))?;
            visitor.$visit(n)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Deserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::UInt(u) => visitor.visit_u64(*u),
            Value::Float(x) => visitor.visit_f64(*x),
            Value::Text(s) => visitor.visit_string(std::mem::take(s)),
            Value::Bytes(b) => visitor.visit_byte_buf(Vec::from(std::mem::take(b))),
            Value::List(items) => visit_list(items, visitor),
            Value::Map(m) => visit_map(m, visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.value {
            Value::Bool(b) => visitor.visit_bool(*b),
            other => Err(mismatch("bool", other)),
        }
    }

    deserialize_int! {
        deserialize_i8 => i8, visit_i8;
        deserialize_i16 => i16, visit_i16;
        deserialize_i32 => i32, visit_i32;
        deserialize_i64 => i64, visit_i64;
        deserialize_i128 => i128, visit_i128;
        deserialize_u8 => u8, visit_u8;
        deserialize_u16 => u16, visit_u16;
        deserialize_u32 => u32, visit_u32;
        deserialize_u64 => u64, visit_u64;
        deserialize_u128 => u128, visit_u128;
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f32(self.float("f32")? as f32)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f64(self.float("f64")?)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if let Value::Text(s) = &*self.value {
            let mut chars = s.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                return visitor.visit_char(c);
            }
            return Err(Error::msg(format!(
                "expected a single character, found text {s:?}"
            )));
        }
        Err(mismatch("a single character", self.value))
    }

    /// Lends the text: a borrowing target (`&str`) gets it without a copy; an owning one that
    /// asks this way copies it, as serde does.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.value {
            Value::Text(s) => visitor.visit_borrowed_str(s),
            other => Err(mismatch("text", other)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.value {
            Value::Text(s) => visitor.visit_string(std::mem::take(s)),
            other => Err(mismatch("text", other)),
        }
    }

    /// Lends the bytes, as [`Self::deserialize_str`] lends text.
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.value {
            Value::Bytes(b) => visitor.visit_borrowed_bytes(b),
            other => Err(mismatch("bytes", other)),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.value {
            Value::Bytes(b) => visitor.visit_byte_buf(Vec::from(std::mem::take(b))),
            other => Err(mismatch("bytes", other)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            other => Err(mismatch("null", other)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        if name == super::pass::TOKEN {
            // A `Value` asking for itself (`pass.rs`): its bytes move over whole; anything
            // else is read directly, without the visitor looking in the hand-over slot.
            let Value::Bytes(b) = self.value else {
                return self.deserialize_any(visitor);
            };
            super::pass::offer(std::mem::take(b));
            let r = visitor.visit_newtype_struct(serde::de::value::UnitDeserializer::new());
            super::pass::clear();
            return r;
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        // So that a plain `Vec<u8>` (no serde_bytes) reads bytes too.
        bytes_as_list(self.value);
        match self.value {
            Value::List(items) => visit_list(items, visitor),
            other => Err(mismatch("list", other)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        // So that `[u8; N]` reads bytes too.
        bytes_as_list(self.value);
        match self.value {
            Value::List(items) => visit_list(items, visitor),
            other => Err(mismatch(&format!("list of {len} items"), other)),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.value {
            Value::Map(m) => visit_map(m, visitor),
            other => Err(mismatch("map", other)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.value {
            Value::Map(m) => visit_map(m, visitor),
            other => Err(mismatch(&format!("map (struct {name})"), other)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let not_enum = |found: &Value| {
            Error::msg(format!(
                "expected enum {name} (variant name as text, or a one-entry map {{variant: content}}), found {}",
                describe(found)
            ))
        };
        match self.value {
            Value::Text(variant) => visitor.visit_enum(Enum {
                variant,
                content: None,
            }),
            Value::Map(m) => {
                if m.len() != 1 {
                    return Err(not_enum(&Value::Map(std::mem::take(m))));
                }
                match m.iter_mut().next() {
                    Some((variant, content)) => visitor.visit_enum(Enum {
                        variant,
                        content: Some(content),
                    }),
                    None => Err(Error::msg(format!("expected enum {name}, found empty map"))),
                }
            }
            other => Err(not_enum(other)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
}

/// The type of `v`, with the entry count for maps (the common enum mistake).
fn describe(v: &Value) -> String {
    match v {
        Value::Map(m) => format!("map of {} entries", m.len()),
        other => other.type_name().to_owned(),
    }
}

/// Turns bytes into a list of ints in place, for list targets reading bytes.
fn bytes_as_list(value: &mut Value) {
    if let Value::Bytes(b) = value {
        let items = b.iter().map(|x| Value::from(*x)).collect();
        *value = Value::List(items);
    }
}

fn visit_list<'de, V: Visitor<'de>>(items: &'de mut [Value], visitor: V) -> Result<V::Value> {
    let len = items.len();
    let mut seq = Seq {
        items: items.iter_mut().enumerate(),
    };
    let out = visitor.visit_seq(&mut seq)?;
    let left = seq.items.len();
    if left > 0 {
        return Err(Error::msg(format!(
            "expected a list of {} items, found {len}",
            len - left
        )));
    }
    Ok(out)
}

fn visit_map<'de, V: Visitor<'de>>(
    m: &'de mut std::collections::BTreeMap<String, Value>,
    visitor: V,
) -> Result<V::Value> {
    visitor.visit_map(Map {
        entries: m.iter_mut(),
        pending: None,
    })
}

struct Seq<'de> {
    items: std::iter::Enumerate<std::slice::IterMut<'de, Value>>,
}

impl<'de> de::SeqAccess<'de> for Seq<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        match self.items.next() {
            Some((i, v)) => seed
                .deserialize(Deserializer::new(v))
                .map(Some)
                .map_err(|e| e.at(Segment::Index(i))),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'de> {
    entries: btree_map::IterMut<'de, String, Value>,
    pending: Option<(&'de str, &'de mut Value)>,
}

impl<'de> de::MapAccess<'de> for Map<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        match self.entries.next() {
            Some((k, v)) => {
                let key = seed
                    .deserialize(BorrowedStrDeserializer::new(k.as_str()))
                    .map_err(|e: Error| e.at(Segment::Key(k.clone())))?;
                self.pending = Some((k.as_str(), v));
                Ok(Some(key))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value> {
        let (k, v) = self.pending.take().ok_or_else(|| {
            Error::msg("map value requested before its key (a Deserialize impl bug)".into())
        })?;
        seed.deserialize(Deserializer::new(v))
            .map_err(|e| e.at(Segment::Key(k.to_owned())))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct Enum<'de> {
    variant: &'de String,
    content: Option<&'de mut Value>,
}

impl<'de> de::EnumAccess<'de> for Enum<'de> {
    type Error = Error;
    type Variant = Variant<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Variant<'de>)> {
        let v = seed.deserialize(BorrowedStrDeserializer::new(self.variant.as_str()))?;
        Ok((
            v,
            Variant {
                name: self.variant.as_str(),
                content: self.content,
            },
        ))
    }
}

struct Variant<'de> {
    name: &'de str,
    content: Option<&'de mut Value>,
}

impl<'de> Variant<'de> {
    fn content(self, expected: &str) -> Result<Deserializer<'de>> {
        match self.content {
            Some(v) => Ok(Deserializer::new(v)),
            None => Err(Error::msg(format!(
                "variant {:?} needs content ({expected}): write it as {{{:?}: …}}",
                self.name, self.name
            ))),
        }
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        match self.content {
            None | Some(Value::Null) => Ok(()),
            Some(other) => Err(Error::msg(format!(
                "variant {:?} takes no content, found {}",
                self.name,
                other.type_name()
            ))
            .at(Segment::Key(self.name.to_owned()))),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        let name = self.name.to_owned();
        seed.deserialize(self.content("a value")?)
            .map_err(|e| e.at(Segment::Key(name)))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        let name = self.name.to_owned();
        de::Deserializer::deserialize_tuple(self.content("a list")?, len, visitor)
            .map_err(|e| e.at(Segment::Key(name)))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let name = self.name.to_owned();
        de::Deserializer::deserialize_struct(self.content("a map")?, "variant", fields, visitor)
            .map_err(|e| e.at(Segment::Key(name)))
    }
}

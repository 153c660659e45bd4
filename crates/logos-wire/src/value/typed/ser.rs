//! `serde::Serializer` producing a [`Value`] (the `to_value` direction).
//!
//! Owns the Rust → Value half of the typed mapping. Never produces a map with a non-text key or
//! an integer outside i64/u64: those are errors.

use crate::error::WireError;
use crate::value::Value;
use serde::ser::{self, Serialize};
use std::collections::BTreeMap;

type Result<T> = std::result::Result<T, WireError>;

/// Serializes into a [`Value`].
pub(super) struct Serializer;

fn int128(n: i128) -> Result<Value> {
    if let Ok(i) = i64::try_from(n) {
        Ok(Value::Int(i))
    } else if let Ok(u) = u64::try_from(n) {
        Ok(Value::UInt(u))
    } else {
        Err(WireError::Value(format!(
            "integer {n} is outside the range of a value (i64::MIN..=u64::MAX)"
        )))
    }
}

fn single(key: &str, content: Value) -> Value {
    let mut m = BTreeMap::new();
    m.insert(key.to_owned(), content);
    Value::Map(m)
}

impl ser::Serializer for Serializer {
    type Ok = Value;
    type Error = WireError;
    type SerializeSeq = SeqSerializer;
    type SerializeTuple = SeqSerializer;
    type SerializeTupleStruct = SeqSerializer;
    type SerializeTupleVariant = VariantSeqSerializer;
    type SerializeMap = MapSerializer;
    type SerializeStruct = MapSerializer;
    type SerializeStructVariant = VariantMapSerializer;

    fn serialize_bool(self, v: bool) -> Result<Value> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value> {
        Ok(Value::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<Value> {
        Ok(Value::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<Value> {
        Ok(Value::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<Value> {
        Ok(Value::Int(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Value> {
        int128(v)
    }
    fn serialize_u8(self, v: u8) -> Result<Value> {
        Ok(Value::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<Value> {
        Ok(Value::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<Value> {
        Ok(Value::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<Value> {
        Ok(Value::from(v))
    }
    fn serialize_u128(self, v: u128) -> Result<Value> {
        match u64::try_from(v) {
            Ok(u) => Ok(Value::from(u)),
            Err(_) => Err(WireError::Value(format!(
                "integer {v} is outside the range of a value (i64::MIN..=u64::MAX)"
            ))),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<Value> {
        Ok(Value::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<Value> {
        Ok(Value::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Value> {
        Ok(Value::Text(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value> {
        Ok(Value::Text(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value> {
        let shared = super::pass::claim(v);
        Ok(Value::Bytes(
            shared.unwrap_or_else(|| bytes::Bytes::copy_from_slice(v)),
        ))
    }
    fn serialize_none(self) -> Result<Value> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value> {
        Ok(Value::Text(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value> {
        Ok(single(variant, value.serialize(Serializer)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSerializer> {
        Ok(SeqSerializer {
            items: Vec::with_capacity(len.unwrap_or(0).min(1024)),
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqSerializer> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<SeqSerializer> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantSeqSerializer> {
        Ok(VariantSeqSerializer {
            variant,
            seq: self.serialize_seq(Some(len))?,
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<MapSerializer> {
        Ok(MapSerializer::default())
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<MapSerializer> {
        Ok(MapSerializer::default())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<VariantMapSerializer> {
        Ok(VariantMapSerializer {
            variant,
            map: MapSerializer::default(),
        })
    }
}

/// Lists: sequences, tuples, tuple structs.
pub(super) struct SeqSerializer {
    items: Vec<Value>,
}

impl ser::SerializeSeq for SeqSerializer {
    type Ok = Value;
    type Error = WireError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.items.push(value.serialize(Serializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value> {
        Ok(Value::List(self.items))
    }
}

impl ser::SerializeTuple for SeqSerializer {
    type Ok = Value;
    type Error = WireError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Value> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for SeqSerializer {
    type Ok = Value;
    type Error = WireError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Value> {
        ser::SerializeSeq::end(self)
    }
}

/// `{variant: [fields...]}`.
pub(super) struct VariantSeqSerializer {
    variant: &'static str,
    seq: SeqSerializer,
}

impl ser::SerializeTupleVariant for VariantSeqSerializer {
    type Ok = Value;
    type Error = WireError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        ser::SerializeSeq::serialize_element(&mut self.seq, value)
    }
    fn end(self) -> Result<Value> {
        Ok(single(self.variant, ser::SerializeSeq::end(self.seq)?))
    }
}

/// Maps and structs.
#[derive(Default)]
pub(super) struct MapSerializer {
    map: BTreeMap<String, Value>,
    key: Option<String>,
}

impl MapSerializer {
    fn insert(&mut self, key: String, value: Value) -> Result<()> {
        if self.map.contains_key(&key) {
            return Err(WireError::Value(format!("duplicate map key {key:?}")));
        }
        self.map.insert(key, value);
        Ok(())
    }
}

impl ser::SerializeMap for MapSerializer {
    type Ok = Value;
    type Error = WireError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let key = self.key.take().ok_or_else(|| {
            WireError::Value("map value serialized before its key (a Serialize impl bug)".into())
        })?;
        let value = value.serialize(Serializer)?;
        self.insert(key, value)
    }
    fn end(self) -> Result<Value> {
        Ok(Value::Map(self.map))
    }
}

impl ser::SerializeStruct for MapSerializer {
    type Ok = Value;
    type Error = WireError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        let value = value.serialize(Serializer)?;
        self.insert(key.to_owned(), value)
    }
    fn end(self) -> Result<Value> {
        ser::SerializeMap::end(self)
    }
}

/// `{variant: {fields...}}`.
pub(super) struct VariantMapSerializer {
    variant: &'static str,
    map: MapSerializer,
}

impl ser::SerializeStructVariant for VariantMapSerializer {
    type Ok = Value;
    type Error = WireError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        ser::SerializeStruct::serialize_field(&mut self.map, key, value)
    }
    fn end(self) -> Result<Value> {
        Ok(single(self.variant, ser::SerializeMap::end(self.map)?))
    }
}

/// Accepts only what is text: strings, chars and unit variants (enum keys).
struct KeySerializer;

fn not_text(found: &str) -> WireError {
    WireError::Value(format!("map keys must be text, found {found}"))
}

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = WireError;
    type SerializeSeq = ser::Impossible<String, WireError>;
    type SerializeTuple = ser::Impossible<String, WireError>;
    type SerializeTupleStruct = ser::Impossible<String, WireError>;
    type SerializeTupleVariant = ser::Impossible<String, WireError>;
    type SerializeMap = ser::Impossible<String, WireError>;
    type SerializeStruct = ser::Impossible<String, WireError>;
    type SerializeStructVariant = ser::Impossible<String, WireError>;

    fn serialize_str(self, v: &str) -> Result<String> {
        Ok(v.to_owned())
    }
    fn serialize_char(self, v: char) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String> {
        value.serialize(self)
    }
    fn serialize_bool(self, _v: bool) -> Result<String> {
        Err(not_text("bool"))
    }
    fn serialize_i8(self, _v: i8) -> Result<String> {
        Err(not_text("int"))
    }
    fn serialize_i16(self, _v: i16) -> Result<String> {
        Err(not_text("int"))
    }
    fn serialize_i32(self, _v: i32) -> Result<String> {
        Err(not_text("int"))
    }
    fn serialize_i64(self, _v: i64) -> Result<String> {
        Err(not_text("int"))
    }
    fn serialize_i128(self, _v: i128) -> Result<String> {
        Err(not_text("int"))
    }
    fn serialize_u8(self, _v: u8) -> Result<String> {
        Err(not_text("int"))
    }
    fn serialize_u16(self, _v: u16) -> Result<String> {
        Err(not_text("int"))
    }
    fn serialize_u32(self, _v: u32) -> Result<String> {
        Err(not_text("int"))
    }
    fn serialize_u64(self, _v: u64) -> Result<String> {
        Err(not_text("int"))
    }
    fn serialize_u128(self, _v: u128) -> Result<String> {
        Err(not_text("int"))
    }
    fn serialize_f32(self, _v: f32) -> Result<String> {
        Err(not_text("float"))
    }
    fn serialize_f64(self, _v: f64) -> Result<String> {
        Err(not_text("float"))
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String> {
        Err(not_text("bytes"))
    }
    fn serialize_none(self) -> Result<String> {
        Err(not_text("null"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<String> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<String> {
        Err(not_text("null"))
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String> {
        Err(not_text("null"))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String> {
        Err(not_text("map"))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq> {
        Err(not_text("list"))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple> {
        Err(not_text("list"))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        Err(not_text("list"))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(not_text("map"))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap> {
        Err(not_text("map"))
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct> {
        Err(not_text("map"))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(not_text("map"))
    }
}

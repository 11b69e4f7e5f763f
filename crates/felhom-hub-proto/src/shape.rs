//! `Shape`: any serializable value flattened to JSON paths with their JSON type and scalar value,
//! and the drift between two shapes (how the golden contract test names a rename or retype).
//!
//! It is a serde `Serializer`, so it needs no JSON library: the same function flattens a
//! [`HostReport`](crate::HostReport) and a parsed golden file (`serde_json::Value` is
//! `Serialize`), and both go through the same rules.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::{self, Serialize};

/// The JSON type of a value, with integers told apart from floats (`4` vs `4.0` is drift).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool,
    /// A number without fraction or exponent.
    Integer,
    /// A floating-point number.
    Float,
    /// A string.
    String,
    /// An array (its elements are listed under `path[i]`).
    Array,
    /// An object (its members are listed under `path.key`).
    Object,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Null => "null",
            Kind::Bool => "boolean",
            Kind::Integer => "integer",
            Kind::Float => "float",
            Kind::String => "string",
            Kind::Array => "array",
            Kind::Object => "object",
        })
    }
}

/// What sits at one path: its kind and, for a scalar, its value as text (strings quoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The JSON type.
    pub kind: Kind,
    /// The scalar's value (`true`, `42`, `0.25`, `"pve"`); `None` for arrays and objects.
    pub value: Option<String>,
}

/// A value flattened: every path (`host.cpu_usage`, `guests[0].spec.cores`; the root is `""`)
/// to what sits there, containers included, so an empty array still has an entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shape(pub BTreeMap<String, Leaf>);

/// The value could not be flattened (a map key that is not a string or number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError(String);

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot flatten value: {}", self.0)
    }
}

impl std::error::Error for ShapeError {}

impl ser::Error for ShapeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ShapeError(msg.to_string())
    }
}

/// One difference between an expected shape (the golden file) and an actual one (the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// A path of the expected shape is gone (its sub-paths are implied).
    Missing {
        /// The path.
        path: String,
        /// What it was.
        kind: Kind,
    },
    /// A path the expected shape does not have (its sub-paths are implied).
    Added {
        /// The path.
        path: String,
        /// What it is.
        kind: Kind,
    },
    /// One path gone and one added under the same parent with the same kind: most likely a
    /// rename.
    Renamed {
        /// The expected path.
        from: String,
        /// The actual path.
        to: String,
        /// The kind both have.
        kind: Kind,
    },
    /// Same path, another JSON type.
    TypeChanged {
        /// The path.
        path: String,
        /// The expected kind.
        expected: Kind,
        /// The actual kind.
        actual: Kind,
    },
    /// Same path and kind, another scalar value.
    ValueChanged {
        /// The path.
        path: String,
        /// The expected value.
        expected: String,
        /// The actual value.
        actual: String,
    },
}

impl Drift {
    /// Whether this drift changes the contract (names or types), not only the sample's values.
    pub fn is_contract_change(&self) -> bool {
        !matches!(self, Drift::ValueChanged { .. })
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Missing { path, kind } => write!(f, "{}: {kind} is missing", show(path)),
            Drift::Added { path, kind } => write!(f, "{}: {kind} was added", show(path)),
            Drift::Renamed { from, to, kind } => {
                write!(f, "{}: {kind} renamed to {}", show(from), show(to))
            }
            Drift::TypeChanged {
                path,
                expected,
                actual,
            } => write!(
                f,
                "{}: type changed from {expected} to {actual}",
                show(path)
            ),
            Drift::ValueChanged {
                path,
                expected,
                actual,
            } => write!(
                f,
                "{}: value changed from {expected} to {actual}",
                show(path)
            ),
        }
    }
}

fn show(path: &str) -> &str {
    if path.is_empty() {
        "(root)"
    } else {
        path
    }
}

/// Flattens `value` as serde would write it as JSON.
pub fn shape_of<T: Serialize + ?Sized>(value: &T) -> Result<Shape, ShapeError> {
    let mut out = BTreeMap::new();
    value.serialize(Flattener {
        out: &mut out,
        path: String::new(),
    })?;
    Ok(Shape(out))
}

/// The drift from `expected` to `actual`, renames and retypes first, then additions, removals
/// and value changes. Empty when they are the same.
pub fn diff(expected: &Shape, actual: &Shape) -> Vec<Drift> {
    let (exp, act) = (&expected.0, &actual.0);
    // Only the top of a missing or added subtree is reported: its parent exists on both sides.
    let is_root = |path: &str, other: &BTreeMap<String, Leaf>| {
        parent(path).is_none_or(|p| other.contains_key(p))
    };
    let missing: Vec<(&String, Kind)> = exp
        .iter()
        .filter(|(p, _)| !act.contains_key(*p) && is_root(p, act))
        .map(|(p, l)| (p, l.kind))
        .collect();
    let added: Vec<(&String, Kind)> = act
        .iter()
        .filter(|(p, _)| !exp.contains_key(*p) && is_root(p, exp))
        .map(|(p, l)| (p, l.kind))
        .collect();

    let mut renamed = Vec::new();
    let mut paired = std::collections::BTreeSet::new();
    for (from, kind) in &missing {
        let parent_of = parent(from);
        let same_place = |p: &&(&String, Kind)| parent(p.0) == parent_of && p.1 == *kind;
        let gone: Vec<_> = missing.iter().filter(same_place).collect();
        let new: Vec<_> = added.iter().filter(same_place).collect();
        // Only an unambiguous one-for-one swap is called a rename.
        if let ([_], [(to, _)]) = (gone.as_slice(), new.as_slice()) {
            paired.insert((*from).clone());
            paired.insert((*to).clone());
            renamed.push(Drift::Renamed {
                from: (*from).clone(),
                to: (*to).clone(),
                kind: *kind,
            });
        }
    }

    let mut drifts = renamed;
    for (path, e) in exp {
        if let Some(a) = act.get(path) {
            if e.kind != a.kind {
                drifts.push(Drift::TypeChanged {
                    path: path.clone(),
                    expected: e.kind,
                    actual: a.kind,
                });
            }
        }
    }
    drifts.extend(
        added
            .iter()
            .filter(|(p, _)| !paired.contains(*p))
            .map(|(p, kind)| Drift::Added {
                path: (*p).clone(),
                kind: *kind,
            }),
    );
    drifts.extend(
        missing
            .iter()
            .filter(|(p, _)| !paired.contains(*p))
            .map(|(p, kind)| Drift::Missing {
                path: (*p).clone(),
                kind: *kind,
            }),
    );
    for (path, e) in exp {
        if let Some(a) = act.get(path) {
            if e.kind == a.kind && e.value != a.value {
                drifts.push(Drift::ValueChanged {
                    path: path.clone(),
                    expected: e.value.clone().unwrap_or_default(),
                    actual: a.value.clone().unwrap_or_default(),
                });
            }
        }
    }
    drifts
}

/// The parent path (`a.b[0]` of `a.b[0].c`, `a.b` of `a.b[0]`, `""` of `a`); `None` for the root.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(path.rfind(['.', '[']).map_or("", |i| &path[..i]))
}

fn child_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

struct Flattener<'a> {
    out: &'a mut BTreeMap<String, Leaf>,
    path: String,
}

impl<'a> Flattener<'a> {
    fn scalar(self, kind: Kind, value: String) -> Result<(), ShapeError> {
        self.out.insert(
            self.path,
            Leaf {
                kind,
                value: Some(value),
            },
        );
        Ok(())
    }

    fn container(self, kind: Kind) -> Compound<'a> {
        self.out
            .insert(self.path.clone(), Leaf { kind, value: None });
        Compound {
            out: self.out,
            path: self.path,
            index: 0,
            key: None,
        }
    }

    /// serde_json writes `{"Variant": value}` for non-unit enum variants.
    fn variant(self, variant: &str) -> Flattener<'a> {
        self.out.insert(
            self.path.clone(),
            Leaf {
                kind: Kind::Object,
                value: None,
            },
        );
        Flattener {
            path: child_key(&self.path, variant),
            out: self.out,
        }
    }
}

struct Compound<'a> {
    out: &'a mut BTreeMap<String, Leaf>,
    path: String,
    index: usize,
    key: Option<String>,
}

impl Compound<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ShapeError> {
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        value.serialize(Flattener {
            out: self.out,
            path,
        })
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), ShapeError> {
        value.serialize(Flattener {
            out: self.out,
            path: child_key(&self.path, key),
        })
    }
}

impl<'a> ser::Serializer for Flattener<'a> {
    type Ok = ();
    type Error = ShapeError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), ShapeError> {
        self.scalar(Kind::Bool, v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<(), ShapeError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), ShapeError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), ShapeError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), ShapeError> {
        self.scalar(Kind::Integer, v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<(), ShapeError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), ShapeError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), ShapeError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), ShapeError> {
        self.scalar(Kind::Integer, v.to_string())
    }
    fn serialize_f32(self, v: f32) -> Result<(), ShapeError> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), ShapeError> {
        self.scalar(Kind::Float, format!("{v:?}"))
    }
    fn serialize_char(self, v: char) -> Result<(), ShapeError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), ShapeError> {
        self.scalar(Kind::String, format!("{v:?}"))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), ShapeError> {
        let mut seq = self.container(Kind::Array);
        for b in v {
            seq.element(b)?;
        }
        Ok(())
    }
    fn serialize_none(self) -> Result<(), ShapeError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), ShapeError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), ShapeError> {
        self.scalar(Kind::Null, "null".into())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), ShapeError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), ShapeError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), ShapeError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), ShapeError> {
        value.serialize(self.variant(variant))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, ShapeError> {
        Ok(self.container(Kind::Array))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>, ShapeError> {
        Ok(self.container(Kind::Array))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, ShapeError> {
        Ok(self.container(Kind::Array))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, ShapeError> {
        Ok(self.variant(variant).container(Kind::Array))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, ShapeError> {
        Ok(self.container(Kind::Object))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, ShapeError> {
        Ok(self.container(Kind::Object))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, ShapeError> {
        Ok(self.variant(variant).container(Kind::Object))
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = ShapeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ShapeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), ShapeError> {
        Ok(())
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = ShapeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ShapeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), ShapeError> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = ShapeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ShapeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), ShapeError> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = ShapeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ShapeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), ShapeError> {
        Ok(())
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = ShapeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ShapeError> {
        self.key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ShapeError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| ShapeError("map value without a key".into()))?;
        self.field(&key, value)
    }
    fn end(self) -> Result<(), ShapeError> {
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = ShapeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ShapeError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), ShapeError> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = ShapeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ShapeError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), ShapeError> {
        Ok(())
    }
}

/// Map keys become JSON object keys: strings, or numbers written as strings (as serde_json does).
struct KeySerializer;

fn key_error() -> ShapeError {
    ShapeError("a map key must be a string or an integer".into())
}

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = ShapeError;
    type SerializeSeq = ser::Impossible<String, ShapeError>;
    type SerializeTuple = ser::Impossible<String, ShapeError>;
    type SerializeTupleStruct = ser::Impossible<String, ShapeError>;
    type SerializeTupleVariant = ser::Impossible<String, ShapeError>;
    type SerializeMap = ser::Impossible<String, ShapeError>;
    type SerializeStruct = ser::Impossible<String, ShapeError>;
    type SerializeStructVariant = ser::Impossible<String, ShapeError>;

    fn serialize_str(self, v: &str) -> Result<String, ShapeError> {
        Ok(v.to_owned())
    }
    fn serialize_char(self, v: char) -> Result<String, ShapeError> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, ShapeError> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, ShapeError> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, ShapeError> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, ShapeError> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, ShapeError> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, ShapeError> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, ShapeError> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, ShapeError> {
        Ok(v.to_string())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, ShapeError> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, ShapeError> {
        value.serialize(self)
    }
    fn serialize_bool(self, _v: bool) -> Result<String, ShapeError> {
        Err(key_error())
    }
    fn serialize_f32(self, _v: f32) -> Result<String, ShapeError> {
        Err(key_error())
    }
    fn serialize_f64(self, _v: f64) -> Result<String, ShapeError> {
        Err(key_error())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String, ShapeError> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<String, ShapeError> {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, ShapeError> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<String, ShapeError> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, ShapeError> {
        Err(key_error())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, ShapeError> {
        Err(key_error())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, ShapeError> {
        Err(key_error())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, ShapeError> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, ShapeError> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, ShapeError> {
        Err(key_error())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, ShapeError> {
        Err(key_error())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, ShapeError> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, ShapeError> {
        Err(key_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(v: serde_json::Value) -> Shape {
        shape_of(&v).unwrap()
    }

    fn drifts(expected: serde_json::Value, actual: serde_json::Value) -> Vec<String> {
        diff(&shape(expected), &shape(actual))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn flattens_paths_kinds_and_values() {
        let s = shape(json!({"a": {"b": [1, 2.5, "x", null, true]}, "e": [], "o": {}}));
        let get = |p: &str| s.0.get(p).cloned().unwrap();
        assert_eq!(get("").kind, Kind::Object);
        assert_eq!(get("a.b").kind, Kind::Array);
        assert_eq!(get("a.b[0]").value.as_deref(), Some("1"));
        assert_eq!(get("a.b[0]").kind, Kind::Integer);
        assert_eq!(get("a.b[1]").kind, Kind::Float);
        assert_eq!(get("a.b[2]").value.as_deref(), Some("\"x\""));
        assert_eq!(get("a.b[3]").kind, Kind::Null);
        assert_eq!(get("a.b[4]").kind, Kind::Bool);
        assert_eq!(get("e").kind, Kind::Array);
        assert_eq!(get("o").kind, Kind::Object);
        assert_eq!(s.0.len(), 10);
    }

    #[test]
    fn a_struct_and_its_json_flatten_alike() {
        let report = crate::golden::sample_host_report();
        let via_json = serde_json::to_value(&report).unwrap();
        assert_eq!(shape_of(&report).unwrap(), shape(via_json));
    }

    #[test]
    fn identical_values_have_no_drift() {
        assert!(drifts(json!({"a": [1, {"b": "c"}]}), json!({"a": [1, {"b": "c"}]})).is_empty());
    }

    #[test]
    fn names_a_rename_once_with_its_subtree() {
        assert_eq!(
            drifts(
                json!({"host": {"node": "pve", "cpu": 1}}),
                json!({"host": {"node_name": "pve", "cpu": 1}})
            ),
            ["host.node: string renamed to host.node_name"]
        );
        assert_eq!(
            drifts(
                json!({"host": {"a": 1, "b": 2}, "x": 1}),
                json!({"node": {"a": 1, "b": 2}, "x": 1})
            ),
            ["host: object renamed to node"]
        );
    }

    #[test]
    fn names_type_changes_additions_and_removals() {
        assert_eq!(
            drifts(
                json!({"cpu_count": 4, "gone": "x", "same": [1]}),
                json!({"cpu_count": 4.0, "new": [1, 2], "extra": true, "same": [1]})
            ),
            [
                "cpu_count: type changed from integer to float",
                "extra: boolean was added",
                "new: array was added",
                "gone: string is missing",
            ]
        );
    }

    #[test]
    fn value_changes_are_not_contract_changes() {
        let d = diff(&shape(json!({"a": 1})), &shape(json!({"a": 2})));
        assert_eq!(d.len(), 1);
        assert!(!d[0].is_contract_change());
        assert_eq!(d[0].to_string(), "a: value changed from 1 to 2");
        let d = diff(&shape(json!({"a": 1})), &shape(json!({"a": "1"})));
        assert!(d[0].is_contract_change());
    }

    #[test]
    fn a_root_type_change_is_named_as_root() {
        assert_eq!(
            drifts(json!([]), json!({})),
            ["(root): type changed from array to object"]
        );
    }

    #[test]
    fn non_string_map_keys_are_refused() {
        let mut m = BTreeMap::new();
        m.insert(vec![1u8], 1);
        assert!(shape_of(&m).is_err());
        let mut m = BTreeMap::new();
        m.insert(7u32, "x");
        assert_eq!(shape_of(&m).unwrap().0["7"].kind, Kind::String);
    }
}

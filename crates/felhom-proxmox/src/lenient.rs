//! Serde helpers that accept the shapes PVE really sends for numbers, booleans and lists.
//!
//! PVE is Perl: whether a value leaves `to_json` as a JSON number or a string depends on how the
//! scalar was last used, not on the schema (PVE-API.md §7). So a `u64` may arrive as `5`, `"5"`,
//! `5.0` or `1.2e+15`, a boolean as `1`, `"1"`, `true` or `"on"`. Use these with
//! `#[serde(default, deserialize_with = "lenient::opt_u64")]` etc.; absent keys become `None`.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Any scalar PVE might send where a number or boolean is meant.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    U(u64),
    I(i64),
    F(f64),
    B(bool),
    S(String),
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, a numeric string or a boolean")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::B(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::U(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::I(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::F(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::S(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::S(v))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// Parses a number written as a string: plain integer first (exact), then float (covers
/// `"2895.985"` and scientific notation such as `"1.2e+15"`).
fn parse_number_str(s: &str) -> Option<Scalar> {
    let s = s.trim();
    if let Ok(u) = s.parse::<u64>() {
        return Some(Scalar::U(u));
    }
    if let Ok(i) = s.parse::<i64>() {
        return Some(Scalar::I(i));
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Scalar::F)
}

/// An integral float (from scientific notation) as an exact integer, if it is one.
fn integral(f: f64) -> Option<f64> {
    (f.is_finite() && f.fract() == 0.0).then_some(f)
}

fn to_u64(v: Scalar) -> Result<u64, String> {
    match v {
        Scalar::U(u) => Ok(u),
        Scalar::I(i) => {
            u64::try_from(i).map_err(|_| format!("expected an unsigned integer, got {i}"))
        }
        Scalar::F(f) => match integral(f) {
            // 2^64 is exactly representable; anything at or above it overflows.
            Some(f) if (0.0..18_446_744_073_709_551_616.0).contains(&f) => Ok(f as u64),
            _ => Err(format!("expected an unsigned integer, got {f}")),
        },
        Scalar::B(b) => Err(format!("expected an unsigned integer, got boolean {b}")),
        Scalar::S(s) => match parse_number_str(&s) {
            Some(n) => to_u64(n),
            None => Err(format!("expected an unsigned integer, got string {s:?}")),
        },
    }
}

fn to_i64(v: Scalar) -> Result<i64, String> {
    match v {
        Scalar::U(u) => i64::try_from(u).map_err(|_| format!("integer {u} out of range")),
        Scalar::I(i) => Ok(i),
        Scalar::F(f) => match integral(f) {
            Some(f) if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) => {
                Ok(f as i64)
            }
            _ => Err(format!("expected an integer, got {f}")),
        },
        Scalar::B(b) => Err(format!("expected an integer, got boolean {b}")),
        Scalar::S(s) => match parse_number_str(&s) {
            Some(n) => to_i64(n),
            None => Err(format!("expected an integer, got string {s:?}")),
        },
    }
}

fn to_f64(v: Scalar) -> Result<f64, String> {
    match v {
        Scalar::U(u) => Ok(u as f64),
        Scalar::I(i) => Ok(i as f64),
        Scalar::F(f) => Ok(f),
        Scalar::B(b) => Err(format!("expected a number, got boolean {b}")),
        Scalar::S(s) => match parse_number_str(&s) {
            Some(n) => to_f64(n),
            None => Err(format!("expected a number, got string {s:?}")),
        },
    }
}

fn to_bool(v: Scalar) -> Result<bool, String> {
    match v {
        Scalar::B(b) => Ok(b),
        Scalar::U(0) | Scalar::I(0) => Ok(false),
        Scalar::U(1) | Scalar::I(1) => Ok(true),
        Scalar::F(0.0) => Ok(false),
        Scalar::F(1.0) => Ok(true),
        Scalar::S(s) => match s.trim().to_ascii_lowercase().as_str() {
            // The set proxmox-serde's perl deserializer and PVE's config parser accept.
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(format!("expected a boolean, got string {s:?}")),
        },
        other => Err(format!("expected a boolean, got {other:?}")),
    }
}

fn opt<'de, D, T>(d: D, conv: fn(Scalar) -> Result<T, String>) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<Scalar>::deserialize(d)? {
        None => Ok(None),
        Some(v) => conv(v).map(Some).map_err(de::Error::custom),
    }
}

/// A `u64` from a number, numeric string or integral float.
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    to_u64(Scalar::deserialize(d)?).map_err(de::Error::custom)
}

/// An optional `u64`; `null` is `None` (pair with `#[serde(default)]` for absent keys).
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    opt(d, to_u64)
}

/// A `u32` (vmids, core counts) from anything [`u64()`] accepts, range-checked.
pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = to_u64(Scalar::deserialize(d)?).map_err(de::Error::custom)?;
    u32::try_from(v).map_err(|_| de::Error::custom(format!("integer {v} out of range for u32")))
}

/// An optional `u32`.
pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    opt(d, |s| {
        let v = to_u64(s)?;
        u32::try_from(v).map_err(|_| format!("integer {v} out of range for u32"))
    })
}

/// An `i64` from a number, numeric string or integral float.
pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    to_i64(Scalar::deserialize(d)?).map_err(de::Error::custom)
}

/// An optional `i64`.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    opt(d, to_i64)
}

/// An `f64` from a number or numeric string (`"0.16"`, `"2895.985"`).
pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    to_f64(Scalar::deserialize(d)?).map_err(de::Error::custom)
}

/// An optional `f64`.
pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    opt(d, to_f64)
}

/// A boolean from `true`/`false`, `0`/`1`, or `"1"|"0"|"true"|"false"|"yes"|"no"|"on"|"off"`.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    to_bool(Scalar::deserialize(d)?).map_err(de::Error::custom)
}

/// An optional boolean.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    opt(d, to_bool)
}

/// A boolean PVE omits when false (`template`, `protected`): absent or `null` is `false`.
/// Pair with `#[serde(default)]`.
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(opt(d, to_bool)?.unwrap_or(false))
}

/// A list of numbers (node `loadavg` arrives as `["0.16","0.10","0.02"]`).
pub fn vec_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let raw = Option::<Vec<Scalar>>::deserialize(d)?.unwrap_or_default();
    raw.into_iter()
        .map(|v| to_f64(v).map_err(de::Error::custom))
        .collect()
}

/// Splits a PVE list string on the separators PVE's `split_list` accepts (`,` `;` whitespace
/// and NUL), dropping empty items.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c == ';' || c == '\0' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A list sent as one string (`tags: "a;b"`, storage `content: "rootdir,images"`) or as a JSON
/// array; absent or `null` is empty.
pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None => Vec::new(),
        Some(Raw::One(s)) => split_list(&s),
        Some(Raw::Many(v)) => v.iter().flat_map(|s| split_list(s)).collect(),
    })
}

/// A string that PVE may send as a number (the task status `id`, a vmid in a string field).
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?.map(|v| match v {
        Scalar::U(u) => u.to_string(),
        Scalar::I(i) => i.to_string(),
        Scalar::F(f) => f.to_string(),
        Scalar::B(b) => u8::from(b).to_string(),
        Scalar::S(s) => s,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct T {
        #[serde(default, deserialize_with = "opt_u64")]
        u: Option<u64>,
        #[serde(default, deserialize_with = "opt_i64")]
        i: Option<i64>,
        #[serde(default, deserialize_with = "opt_f64")]
        f: Option<f64>,
        #[serde(default, deserialize_with = "opt_bool")]
        b: Option<bool>,
        #[serde(default, deserialize_with = "flag")]
        flag: bool,
        #[serde(default, deserialize_with = "list")]
        tags: Vec<String>,
        #[serde(default, deserialize_with = "opt_string")]
        id: Option<String>,
    }

    fn t(json: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn unsigned_integers_in_every_shape() {
        for (json, want) in [
            (r#"{"u":5}"#, 5),
            (r#"{"u":"5"}"#, 5),
            (r#"{"u":" 17 "}"#, 17),
            (r#"{"u":5.0}"#, 5),
            (r#"{"u":1.2e+15}"#, 1_200_000_000_000_000),
            (r#"{"u":"1.2e+15"}"#, 1_200_000_000_000_000),
            (r#"{"u":"18446744073709551615"}"#, u64::MAX),
        ] {
            assert_eq!(t(json).unwrap().u, Some(want), "{json}");
        }
        assert_eq!(t("{}").unwrap().u, None);
        assert_eq!(t(r#"{"u":null}"#).unwrap().u, None);
    }

    #[test]
    fn unsigned_integers_reject_what_is_not_one() {
        for json in [
            r#"{"u":-1}"#,
            r#"{"u":1.5}"#,
            r#"{"u":"abc"}"#,
            r#"{"u":true}"#,
            r#"{"u":1e30}"#,
            r#"{"u":[1]}"#,
        ] {
            assert!(t(json).is_err(), "{json} should be rejected");
        }
    }

    #[test]
    fn signed_integers_and_floats() {
        assert_eq!(t(r#"{"i":"-3"}"#).unwrap().i, Some(-3));
        assert_eq!(t(r#"{"i":-3.0}"#).unwrap().i, Some(-3));
        assert!(t(r#"{"i":"x"}"#).is_err());
        assert_eq!(t(r#"{"f":"2895.985"}"#).unwrap().f, Some(2895.985));
        assert_eq!(t(r#"{"f":0.00616}"#).unwrap().f, Some(0.00616));
        assert_eq!(t(r#"{"f":3}"#).unwrap().f, Some(3.0));
        assert_eq!(t(r#"{"f":"1e3"}"#).unwrap().f, Some(1000.0));
        assert!(
            t(r#"{"f":"NaN"}"#).is_err(),
            "non-finite values are not numbers here"
        );
        assert!(t(r#"{"f":false}"#).is_err());
    }

    #[test]
    fn booleans_in_every_shape() {
        for (json, want) in [
            (r#"{"b":1}"#, true),
            (r#"{"b":0}"#, false),
            (r#"{"b":true}"#, true),
            (r#"{"b":"1"}"#, true),
            (r#"{"b":"0"}"#, false),
            (r#"{"b":"true"}"#, true),
            (r#"{"b":"False"}"#, false),
            (r#"{"b":"on"}"#, true),
            (r#"{"b":"off"}"#, false),
            (r#"{"b":"yes"}"#, true),
            (r#"{"b":"no"}"#, false),
            (r#"{"b":1.0}"#, true),
        ] {
            assert_eq!(t(json).unwrap().b, Some(want), "{json}");
        }
        assert!(t(r#"{"b":2}"#).is_err());
        assert!(t(r#"{"b":"maybe"}"#).is_err());
    }

    #[test]
    fn flags_default_to_false_when_absent() {
        assert!(!t("{}").unwrap().flag);
        assert!(!t(r#"{"flag":null}"#).unwrap().flag);
        assert!(t(r#"{"flag":1}"#).unwrap().flag);
    }

    #[test]
    fn lists_from_strings_or_arrays() {
        assert_eq!(t(r#"{"tags":"a;b"}"#).unwrap().tags, ["a", "b"]);
        assert_eq!(
            t(r#"{"tags":"rootdir,images"}"#).unwrap().tags,
            ["rootdir", "images"]
        );
        assert_eq!(t(r#"{"tags":"a b;;c"}"#).unwrap().tags, ["a", "b", "c"]);
        assert_eq!(t(r#"{"tags":["x","y;z"]}"#).unwrap().tags, ["x", "y", "z"]);
        assert!(t(r#"{"tags":""}"#).unwrap().tags.is_empty());
        assert!(t("{}").unwrap().tags.is_empty());
    }

    #[test]
    fn strings_that_arrive_as_numbers() {
        assert_eq!(t(r#"{"id":100}"#).unwrap().id.as_deref(), Some("100"));
        assert_eq!(t(r#"{"id":"100"}"#).unwrap().id.as_deref(), Some("100"));
        assert_eq!(t(r#"{"id":""}"#).unwrap().id.as_deref(), Some(""));
    }

    #[test]
    fn loadavg_strings_become_floats() {
        #[derive(Deserialize)]
        struct L {
            #[serde(deserialize_with = "vec_f64")]
            loadavg: Vec<f64>,
        }
        let l: L = serde_json::from_str(r#"{"loadavg":["0.16","0.10",0.02]}"#).unwrap();
        assert_eq!(l.loadavg, [0.16, 0.10, 0.02]);
        assert!(serde_json::from_str::<L>(r#"{"loadavg":["x"]}"#).is_err());
    }

    #[test]
    fn u32_is_range_checked() {
        #[derive(Deserialize)]
        struct V {
            #[serde(deserialize_with = "u32")]
            vmid: u32,
        }
        assert_eq!(
            serde_json::from_str::<V>(r#"{"vmid":"106"}"#).unwrap().vmid,
            106
        );
        assert!(serde_json::from_str::<V>(r#"{"vmid":4294967296}"#).is_err());
    }
}

//! Reading the config file: bounded, strict JSON (a repeated key is an error), then the
//! environment overlay and the conversion into domain types.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use crate::sections::{kind, Ctx};
use crate::{env, sections, Config, ConfigError, Problem};

/// Largest config file read: a real one is a few KiB, even with many signers.
pub(crate) const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

impl Config {
    /// Reads the config file at `path`, overlays the `FELHOM_AGENT_*` variables of `env` (the
    /// binaries pass `std::env::vars_os()`; other variables are ignored, and one of ours that
    /// is not UTF-8 is a problem naming it) and converts the result.
    pub fn load<I, K, V>(path: &Path, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let read_err = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(read_err)?
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
                limit: MAX_CONFIG_BYTES,
            });
        }
        Config::from_json(&bytes, path, env)
    }

    /// Like [`Config::load`] with the file's content already in hand; `path` only names it in
    /// errors.
    pub fn from_json<I, K, V>(json: &[u8], path: &Path, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let StrictValue(mut doc) =
            serde_json::from_slice(json).map_err(|e| parse_error(path, &e))?;
        let mut ctx = Ctx::default();
        let env = env::ours(env, &mut ctx);
        let Some(map) = doc.as_object_mut() else {
            return Err(ConfigError::Invalid(vec![Problem {
                key: "(root)".into(),
                msg: format!("expected an object, got {}", kind(&doc)),
            }]));
        };
        env::apply(map, &env, &mut ctx);
        let config = sections::config(&doc, &mut ctx);
        match config {
            Some(c) if ctx.problems.is_empty() => Ok(c),
            _ => Err(ConfigError::Invalid(ctx.problems)),
        }
    }

    /// The whole effective config (defaults included) as pretty JSON in the file's format,
    /// every secret replaced by `[redacted]`: what `felhom-agent check-config` prints.
    pub fn redacted(&self) -> crate::Redacted<'_> {
        crate::Redacted(self)
    }
}

fn parse_error(path: &Path, e: &serde_json::Error) -> ConfigError {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    ConfigError::Parse {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        msg: full.strip_suffix(&suffix).unwrap_or(&full).to_owned(),
    }
}

/// A JSON value that refuses duplicate object keys (serde_json keeps the last silently; in a
/// config, a repeated key is a mistake that would hide one of the two values).
pub(crate) struct StrictValue(pub(crate) Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_none<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(StrictValue(Value::Array(items)))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut out = Map::new();
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(StrictValue(Value::Object(out)))
    }
}

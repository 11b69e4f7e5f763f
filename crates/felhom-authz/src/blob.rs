//! The op blob: the JSON an operator signs. Parsed strictly (every field present, none unknown,
//! right types, RFC 3339 UTC times, a sane window) from the exact bytes that were verified.

use std::time::Duration;

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

const MAX_OP_LEN: usize = 64;
const MAX_HOST_ID_LEN: usize = 253;
const MAX_NONCE_LEN: usize = 128;
const MAX_KEY_ID_LEN: usize = 128;

/// What is wrong with an op blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// Larger than [`crate::MAX_BLOB_LEN`].
    #[error("{len} bytes, the limit is {max}")]
    TooLarge {
        /// Received length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON, or a field is missing, unknown, duplicated or of the wrong type.
    #[error("{0}")]
    Json(String),
    /// A field has the right type but an unacceptable value.
    #[error("field {field}: {problem}")]
    Field {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// `not_before` is after `not_after`.
    #[error("not_before {not_before} is after not_after {not_after}")]
    WindowInverted {
        /// As written in the blob.
        not_before: String,
        /// As written in the blob.
        not_after: String,
    },
    /// The window is longer than the verifier allows.
    #[error("the window is {}s long, the limit is {}s", window.as_secs(), max.as_secs())]
    WindowTooLong {
        /// `not_after - not_before`.
        window: Duration,
        /// The verifier's maximum.
        max: Duration,
    },
}

/// The wire shape; every field is required (`guest_id` may be `null` but must be present).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    op: String,
    host_id: String,
    #[serde(deserialize_with = "required_nullable")]
    guest_id: Option<u64>,
    params: serde_json::Map<String, serde_json::Value>,
    nonce: String,
    not_before: String,
    not_after: String,
    key_id: String,
}

/// With `deserialize_with`, serde reports a missing field instead of defaulting to `None`.
fn required_nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<u64>::deserialize(d)
}

/// A parsed, validated op blob.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OpBlob {
    pub(crate) op: String,
    pub(crate) host_id: String,
    pub(crate) guest_id: Option<u32>,
    pub(crate) params: serde_json::Map<String, serde_json::Value>,
    pub(crate) nonce: String,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
    pub(crate) key_id: String,
}

/// Parses and validates a blob. Pure; `max_window` is the verifier's policy.
pub(crate) fn parse(bytes: &[u8], max_window: Duration) -> Result<OpBlob, BlobError> {
    let wire: Wire = serde_json::from_slice(bytes).map_err(|e| BlobError::Json(e.to_string()))?;

    check_text("op", &wire.op, MAX_OP_LEN, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
    })?;
    check_text("host_id", &wire.host_id, MAX_HOST_ID_LEN, |c| {
        c.is_ascii_graphic()
    })?;
    check_text("nonce", &wire.nonce, MAX_NONCE_LEN, |c| {
        c.is_ascii_graphic()
    })?;
    check_text("key_id", &wire.key_id, MAX_KEY_ID_LEN, |c| {
        c == ' ' || !(c.is_control() || c.is_whitespace())
    })?;

    let guest_id = match wire.guest_id.map(felhom_types::Vmid::new) {
        None => None,
        Some(Ok(vmid)) => Some(vmid.get()),
        Some(Err(e)) => {
            return Err(BlobError::Field {
                field: "guest_id",
                problem: format!(
                    "{} is not a Proxmox vmid ({}..={})",
                    e.got,
                    felhom_types::Vmid::MIN,
                    felhom_types::Vmid::MAX
                ),
            })
        }
    };

    let not_before = parse_time("not_before", &wire.not_before)?;
    let not_after = parse_time("not_after", &wire.not_after)?;
    if not_before > not_after {
        return Err(BlobError::WindowInverted {
            not_before: wire.not_before,
            not_after: wire.not_after,
        });
    }
    let window = not_after - not_before;
    let window = Duration::try_from(window).unwrap_or(Duration::MAX);
    if window > max_window {
        return Err(BlobError::WindowTooLong {
            window,
            max: max_window,
        });
    }

    Ok(OpBlob {
        op: wire.op,
        host_id: wire.host_id,
        guest_id,
        params: wire.params,
        nonce: wire.nonce,
        not_before,
        not_after,
        key_id: wire.key_id,
    })
}

fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), BlobError> {
    let problem = if value.is_empty() {
        "must not be empty".to_string()
    } else if value.chars().count() > max {
        format!("longer than {max} characters")
    } else if let Some(bad) = value.chars().find(|&c| !allowed(c)) {
        format!("character {bad:?} is not allowed")
    } else {
        return Ok(());
    };
    Err(BlobError::Field { field, problem })
}

fn parse_time(field: &'static str, value: &str) -> Result<OffsetDateTime, BlobError> {
    let t = OffsetDateTime::parse(value, &Rfc3339).map_err(|e| BlobError::Field {
        field,
        problem: format!("{value:?} is not an RFC 3339 time: {e}"),
    })?;
    if t.offset() != UtcOffset::UTC {
        return Err(BlobError::Field {
            field,
            problem: format!("{value:?} is not in UTC (write it with a Z suffix)"),
        });
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const DAY: Duration = Duration::from_secs(86_400);

    fn valid() -> serde_json::Value {
        serde_json::json!({
            "op": "destroy_guest", "host_id": "pve-01", "guest_id": 105, "params": {},
            "nonce": "3f9c0a1b", "not_before": "2026-11-23T10:00:00Z",
            "not_after": "2026-11-23T10:15:00Z", "key_id": "ops-anna"
        })
    }

    fn parse_value(v: &serde_json::Value) -> Result<OpBlob, BlobError> {
        parse(&serde_json::to_vec(v).unwrap(), DAY)
    }

    fn with(field: &str, value: serde_json::Value) -> Result<OpBlob, BlobError> {
        let mut v = valid();
        v[field] = value;
        parse_value(&v)
    }

    fn field_error(r: Result<OpBlob, BlobError>) -> &'static str {
        match r {
            Err(BlobError::Field { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_spec_example() {
        let blob = parse_value(&valid()).unwrap();
        assert_eq!(blob.op, "destroy_guest");
        assert_eq!(blob.host_id, "pve-01");
        assert_eq!(blob.guest_id, Some(105));
        assert!(blob.params.is_empty());
        assert_eq!(blob.nonce, "3f9c0a1b");
        assert_eq!(blob.not_before, datetime!(2026-11-23 10:00:00 UTC));
        assert_eq!(blob.not_after, datetime!(2026-11-23 10:15:00 UTC));
        assert_eq!(blob.key_id, "ops-anna");
    }

    #[test]
    fn null_guest_is_a_host_level_op_but_the_field_is_required() {
        assert_eq!(
            with("guest_id", serde_json::Value::Null).unwrap().guest_id,
            None
        );
        let mut v = valid();
        v.as_object_mut().unwrap().remove("guest_id");
        let err = parse_value(&v).unwrap_err();
        assert!(
            matches!(&err, BlobError::Json(m) if m.contains("missing field `guest_id`")),
            "{err}"
        );
    }

    #[test]
    fn every_field_is_required() {
        for field in [
            "op",
            "host_id",
            "guest_id",
            "params",
            "nonce",
            "not_before",
            "not_after",
            "key_id",
        ] {
            let mut v = valid();
            v.as_object_mut().unwrap().remove(field);
            let err = parse_value(&v).unwrap_err();
            assert!(
                matches!(&err, BlobError::Json(m) if m.contains(&format!("missing field `{field}`"))),
                "{field}: {err}"
            );
        }
    }

    #[test]
    fn unknown_duplicate_and_mistyped_fields_are_refused() {
        let mut v = valid();
        v["extra"] = serde_json::json!(1);
        assert!(
            matches!(parse_value(&v), Err(BlobError::Json(m)) if m.contains("unknown field `extra`"))
        );
        let dup = br#"{"op":"a","op":"b","host_id":"h","guest_id":null,"params":{},"nonce":"n","not_before":"2026-01-01T00:00:00Z","not_after":"2026-01-01T00:00:00Z","key_id":"k"}"#;
        assert!(
            matches!(parse(dup, DAY), Err(BlobError::Json(m)) if m.contains("duplicate field"))
        );
        for (field, value) in [
            ("guest_id", serde_json::json!("105")),
            ("guest_id", serde_json::json!(105.5)),
            ("guest_id", serde_json::json!(-1)),
            ("params", serde_json::json!([])),
            ("params", serde_json::Value::Null),
            ("op", serde_json::json!(1)),
            ("nonce", serde_json::Value::Null),
        ] {
            assert!(
                matches!(with(field, value.clone()), Err(BlobError::Json(_))),
                "{field}={value}"
            );
        }
        assert!(matches!(parse(b"not json", DAY), Err(BlobError::Json(_))));
        assert!(matches!(parse(b"[]", DAY), Err(BlobError::Json(_))));
        let mut trailing = serde_json::to_vec(&valid()).unwrap();
        trailing.extend(b" {}");
        assert!(matches!(parse(&trailing, DAY), Err(BlobError::Json(_))));
    }

    #[test]
    fn values_are_validated() {
        assert_eq!(
            field_error(with("guest_id", serde_json::json!(99))),
            "guest_id"
        );
        assert_eq!(
            field_error(with("guest_id", serde_json::json!(1_000_000_000u64))),
            "guest_id"
        );
        assert_eq!(
            with("guest_id", serde_json::json!(999_999_999u64))
                .unwrap()
                .guest_id,
            Some(999_999_999)
        );
        assert_eq!(field_error(with("op", serde_json::json!(""))), "op");
        assert_eq!(field_error(with("op", serde_json::json!("Destroy"))), "op");
        assert_eq!(
            field_error(with("host_id", serde_json::json!("pve 01"))),
            "host_id"
        );
        assert_eq!(field_error(with("nonce", serde_json::json!(""))), "nonce");
        assert_eq!(
            field_error(with("nonce", serde_json::json!("a\nb"))),
            "nonce"
        );
        assert_eq!(
            field_error(with("nonce", serde_json::json!("n".repeat(129)))),
            "nonce"
        );
        assert_eq!(field_error(with("key_id", serde_json::json!(""))), "key_id");
        assert_eq!(
            with("key_id", serde_json::json!("Anna Ops"))
                .unwrap()
                .key_id,
            "Anna Ops"
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(
            field_error(with("not_before", serde_json::json!("2026-11-23 10:00:00"))),
            "not_before"
        );
        assert_eq!(
            field_error(with(
                "not_after",
                serde_json::json!("2026-11-23T12:15:00+02:00")
            )),
            "not_after"
        );
        assert_eq!(
            field_error(with("not_after", serde_json::json!("yesterday"))),
            "not_after"
        );
        let blob = with(
            "not_after",
            serde_json::json!("2026-11-23T10:15:00.5+00:00"),
        )
        .unwrap();
        assert_eq!(blob.not_after, datetime!(2026-11-23 10:15:00.5 UTC));
    }

    #[test]
    fn windows_must_be_ordered_and_bounded() {
        let err = with("not_after", serde_json::json!("2026-11-23T09:59:59Z")).unwrap_err();
        assert!(matches!(err, BlobError::WindowInverted { .. }), "{err}");
        // An empty window (not_before == not_after) is allowed; the skew tolerance widens it.
        with("not_after", serde_json::json!("2026-11-23T10:00:00Z")).unwrap();
        with("not_after", serde_json::json!("2026-11-24T10:00:00Z")).unwrap();
        let err = with("not_after", serde_json::json!("2026-11-24T10:00:01Z")).unwrap_err();
        assert_eq!(
            err,
            BlobError::WindowTooLong {
                window: DAY + Duration::from_secs(1),
                max: DAY
            }
        );
    }
}

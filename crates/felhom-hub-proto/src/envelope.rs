//! `ControlEnvelope`: the hub's answer to a host report.

use serde::{Deserialize, Deserializer, Serialize};

/// The body the hub answers a host report with.
///
/// Read leniently because the hub evolves on its own schedule: every field may be absent or
/// `null` (it then takes the default documented on it) and unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ControlEnvelope {
    /// The interval the hub wants between reports, in seconds. The agent clamps it to
    /// `[60, 3600]`. Absent: the agent keeps its configured `hub.poll_seconds`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Option::is_none"
    )]
    pub poll_interval_seconds: Option<u64>,
    /// The hub has blocked (`true`) or unblocked (`false`) this host (e.g. unpaid,
    /// decommissioned): a blocked agent keeps reporting but applies no desired state. Absent or
    /// `null`: no statement — the agent keeps the state it last knew (a block ends only with an
    /// explicit `false`, so an empty or partial answer never lifts one).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Option::is_none"
    )]
    pub blocked: Option<bool>,
    /// The generation of the desired state the hub holds for this host; it grows when the
    /// desired state changes, so the agent fetches it only then. `0`: none published. Absent: `0`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub desired_generation: u64,
    /// The hub holds operator-signed ops for this host that the agent should fetch. Absent:
    /// `false`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub has_signed_ops: bool,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_object_is_all_defaults() {
        let e: ControlEnvelope = serde_json::from_str("{}").unwrap();
        assert_eq!(e, ControlEnvelope::default());
        assert_eq!(e.poll_interval_seconds, None);
        assert!(e.blocked.is_none() && !e.has_signed_ops);
        assert_eq!(e.desired_generation, 0);
    }

    #[test]
    fn nulls_and_unknown_fields_are_tolerated() {
        let e: ControlEnvelope = serde_json::from_str(
            r#"{"poll_interval_seconds":null,"blocked":null,"desired_generation":null,
                "has_signed_ops":true,"motd":"hello","new_feature":{"a":[1]}}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            ControlEnvelope {
                has_signed_ops: true,
                ..ControlEnvelope::default()
            }
        );
    }

    #[test]
    fn round_trips_and_omits_an_unset_interval() {
        let e = ControlEnvelope {
            poll_interval_seconds: Some(300),
            blocked: Some(true),
            desired_generation: 7,
            has_signed_ops: false,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"poll_interval_seconds":300,"blocked":true,"desired_generation":7,"has_signed_ops":false}"#
        );
        assert_eq!(serde_json::from_str::<ControlEnvelope>(&json).unwrap(), e);
        let unset = serde_json::to_string(&ControlEnvelope::default()).unwrap();
        assert!(!unset.contains("poll_interval_seconds"), "{unset}");
        assert!(!unset.contains("blocked"), "{unset}");
        let lifted: ControlEnvelope = serde_json::from_str(r#"{"blocked":false}"#).unwrap();
        assert_eq!(lifted.blocked, Some(false));
    }

    #[test]
    fn a_wrongly_typed_field_is_an_error() {
        // Lenient about absence, not about types: a hub sending "300" has a bug worth seeing.
        assert!(
            serde_json::from_str::<ControlEnvelope>(r#"{"poll_interval_seconds":"300"}"#).is_err()
        );
        assert!(
            serde_json::from_str::<ControlEnvelope>(r#"{"poll_interval_seconds":-1}"#).is_err()
        );
    }
}

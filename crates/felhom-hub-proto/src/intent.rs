//! Hub-served intent: the desired state the hub holds for a host (`GET /api/v1/desired-state`)
//! and the operator-signed ops waiting for it (`GET /api/v1/signed-ops`). The agent fetches
//! them when the [`ControlEnvelope`](crate::ControlEnvelope) says so (`desired_generation`
//! changed, `has_signed_ops`).
//!
//! A guest entry is exactly a guest of the agent's desired-state file (`vmid`, `run_state`,
//! `spec`, `description`, `present`), read as strictly: an unknown key in a guest or its `spec`
//! is an error, so a typo never silently unmanages a field. The envelope of each body (its
//! top-level object) ignores unknown keys like the report's envelope does.

use serde::{Deserialize, Serialize};

/// Where the agent GETs the hub's desired state, relative to the hub's base URL.
pub const DESIRED_STATE_PATH: &str = "/api/v1/desired-state";

/// Where the agent GETs the signed ops waiting for it, relative to the hub's base URL.
pub const SIGNED_OPS_PATH: &str = "/api/v1/signed-ops";

/// `GET /api/v1/desired-state`'s body: the hub's desired state for this host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DesiredStateBody {
    /// The generation, ≥ 1; the one the envelope's `desired_generation` announced. Required.
    pub generation: u64,
    /// One entry per managed guest (required, may be empty: the explicit "desire nothing"). A
    /// guest that is not listed is unmanaged, never destroyed.
    pub guests: Vec<DesiredGuestEntry>,
}

/// One guest of a [`DesiredStateBody`]: every field but `vmid` optional, absent = unmanaged.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredGuestEntry {
    /// The guest's vmid (100..=999999999).
    pub vmid: u64,
    /// `"running"` or `"stopped"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_state: Option<DesiredRunState>,
    /// Sizes, each optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<DesiredSpec>,
    /// The guest's description (`""`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `false`: the guest should not exist, a destructive change that runs only with a matching
    /// operator-signed op. Absent or `true`: it should exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

/// A guest's `run_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredRunState {
    /// Started.
    Running,
    /// Stopped.
    Stopped,
}

/// A guest's `spec`: sizes in bytes, each optional.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredSpec {
    /// CPU cores (1..=8192).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u64>,
    /// Memory in bytes (≥ 16 MiB; PVE keeps whole MiB, so it is rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Swap in bytes (rounded up to whole MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_bytes: Option<u64>,
    /// Root disk in bytes: recorded, never reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
}

/// `GET /api/v1/signed-ops`'s body: the signed ops waiting for this host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SignedOpsBody {
    /// Required, may be empty.
    pub ops: Vec<SignedOpEntry>,
}

/// One signed op as the hub stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOpEntry {
    /// The exact bytes the operator signed, as a JSON string: its UTF-8 bytes are what the
    /// agent verifies. The hub composes it once with
    /// [`OpBlob::to_canonical_json`](crate::OpBlob::to_canonical_json) and must then store and
    /// serve it verbatim: a blob re-serialised (reordered keys, added whitespace) no longer
    /// matches its signature and is refused.
    pub blob: String,
    /// The armored SSH signature (`-----BEGIN SSH SIGNATURE-----` …), namespace
    /// [`OP_SIGNATURE_NAMESPACE`](crate::OP_SIGNATURE_NAMESPACE).
    pub signature: String,
}

impl SignedOpEntry {
    /// The bytes to verify: the blob string's UTF-8, never a re-serialisation.
    pub fn blob_bytes(&self) -> &[u8] {
        self.blob.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_reads_like_the_desired_file_and_rejects_typos() {
        let body: DesiredStateBody = serde_json::from_str(
            r#"{"generation":4,"guests":[{"vmid":101,"run_state":"running",
                "spec":{"cores":2,"memory_bytes":1073741824},"description":"web"},
                {"vmid":105,"present":false}],"etag":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(body.generation, 4);
        assert_eq!(body.guests[0].run_state, Some(DesiredRunState::Running));
        assert_eq!(body.guests[0].spec.as_ref().unwrap().cores, Some(2));
        assert_eq!(body.guests[1].present, Some(false));
        for bad in [
            r#"{"generation":1,"guests":[{"vmid":101,"runstate":"running"}]}"#,
            r#"{"generation":1,"guests":[{"vmid":101,"spec":{"core":2}}]}"#,
            r#"{"generation":1,"guests":[{"vmid":101,"run_state":"paused"}]}"#,
            r#"{"guests":[]}"#,
            r#"{"generation":1}"#,
        ] {
            assert!(
                serde_json::from_str::<DesiredStateBody>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn absent_fields_are_omitted_when_written() {
        let body = DesiredStateBody {
            generation: 1,
            guests: vec![DesiredGuestEntry {
                vmid: 100,
                ..DesiredGuestEntry::default()
            }],
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"generation":1,"guests":[{"vmid":100}]}"#
        );
    }

    #[test]
    fn a_blob_is_its_string_bytes() {
        let body: SignedOpsBody = serde_json::from_str(
            r#"{"ops":[{"blob":"{\"op\":\"destroy_guest\"}","signature":"sig"}],"more":1}"#,
        )
        .unwrap();
        assert_eq!(body.ops[0].blob_bytes(), br#"{"op":"destroy_guest"}"#);
        assert!(serde_json::from_str::<SignedOpsBody>(r#"{"ops":[{"blob":"x"}]}"#).is_err());
    }
}

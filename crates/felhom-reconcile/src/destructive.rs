//! The destructive actions: what destroys or overwrites customer data (or changes who may
//! authorize that), each with the stable wire name an operator signs (the blob's `op`) and one
//! canonical `params` object.
//!
//! | wire name         | guest | params                                                  |
//! |-------------------|-------|---------------------------------------------------------|
//! | `destroy_guest`   | vmid  | `{}`                                                    |
//! | `rollback`        | vmid  | `{"snapname": "…", "start": false}`                     |
//! | `delete_snapshot` | vmid  | `{"snapname": "…"}`                                     |
//! | `restore_over`    | vmid  | `{"archive": "<volid>", "storage": "…"}`                |
//! | `rotate_signers`  | null  | `{"signers": [{"key_id", "role", "public_key"}, …]}`    |
//!
//! The names come from felhom-authz's [`Op`] list (one catalogue for the verifier, felhom-sign
//! and this gate). Params are compared with a signed blob's as JSON values, so key order and
//! whitespace do not matter while every key and value does; a blob whose params carry an
//! unknown or missing key is not an action at all ([`ActionFromBlobError`]).

use std::fmt;

use felhom_authz::{Expectation, Op, Role};
use serde_json::{json, Map, Value};

/// One signer of a `rotate_signers` set, as carried in the signed params and persisted in the
/// signers file: the same three fields as a configured signer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerSpec {
    /// The signer's name (advisory; identity is the key material).
    pub key_id: String,
    /// `operational` or `recovery`.
    #[serde(with = "role_str")]
    pub role: Role,
    /// The `authorized_keys` line of its public key.
    pub public_key: String,
}

/// A destructive action. Guest-level ones name a vmid; [`DestructiveAction::RotateSigners`] is
/// host-level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestructiveAction {
    /// Stop the guest if it runs, then delete it with its disks (`purge=1`,
    /// `destroy-unreferenced-disks=1`).
    DestroyGuest {
        /// The guest.
        vmid: u32,
    },
    /// Roll the guest back to a snapshot (everything after it is lost); start it afterwards
    /// when `start`.
    Rollback {
        /// The guest.
        vmid: u32,
        /// The snapshot.
        snapname: String,
        /// Start the guest after the rollback.
        start: bool,
    },
    /// Delete one of the guest's snapshots.
    DeleteSnapshot {
        /// The guest.
        vmid: u32,
        /// The snapshot.
        snapname: String,
    },
    /// Restore a backup over the existing (stopped) guest (`restore=1`, `force=1`).
    RestoreOver {
        /// The guest.
        vmid: u32,
        /// The backup's volid.
        archive: String,
        /// Where the restored volumes go.
        storage: String,
    },
    /// Replace the pinned signer set the agent trusts (no PVE request).
    RotateSigners {
        /// The new set, in the order signed.
        signers: Vec<SignerSpec>,
    },
}

impl DestructiveAction {
    /// The signed-op vocabulary entry.
    pub fn op(&self) -> Op {
        match self {
            Self::DestroyGuest { .. } => Op::DestroyGuest,
            Self::Rollback { .. } => Op::Rollback,
            Self::DeleteSnapshot { .. } => Op::DeleteSnapshot,
            Self::RestoreOver { .. } => Op::RestoreOver,
            Self::RotateSigners { .. } => Op::RotateSigners,
        }
    }

    /// The wire name (`destroy_guest`, …): the blob's `op`, the journal's action.
    pub fn wire_name(&self) -> &'static str {
        self.op().wire_name()
    }

    /// The guest, or `None` for a host-level action.
    pub fn guest_id(&self) -> Option<u32> {
        match self {
            Self::DestroyGuest { vmid }
            | Self::Rollback { vmid, .. }
            | Self::DeleteSnapshot { vmid, .. }
            | Self::RestoreOver { vmid, .. } => Some(*vmid),
            Self::RotateSigners { .. } => None,
        }
    }

    /// The queue key: the vmid, or [`HOST_QUEUE_KEY`] for a host-level action (so rotations
    /// run one at a time, never concurrently with each other).
    pub fn queue_key(&self) -> u32 {
        self.guest_id().unwrap_or(HOST_QUEUE_KEY)
    }

    /// The canonical `params` object.
    pub fn params(&self) -> Value {
        match self {
            Self::DestroyGuest { .. } => json!({}),
            Self::Rollback {
                snapname, start, ..
            } => json!({ "snapname": snapname, "start": start }),
            Self::DeleteSnapshot { snapname, .. } => json!({ "snapname": snapname }),
            Self::RestoreOver {
                archive, storage, ..
            } => json!({ "archive": archive, "storage": storage }),
            Self::RotateSigners { signers } => json!({ "signers": signers }),
        }
    }

    /// What a signature must name to authorize exactly this action.
    pub fn expectation(&self) -> Expectation {
        Expectation::new(self.op(), self.guest_id(), self.params())
    }

    /// The action a (not yet verified) blob's `op`, `guest_id` and `params` name. Only a
    /// proposal: the gate then verifies the blob's bytes and binds them to this action.
    pub fn from_parts(
        op: &str,
        guest_id: Option<u32>,
        params: &Map<String, Value>,
    ) -> Result<Self, ActionFromBlobError> {
        let op: Op = op
            .parse()
            .map_err(|_| ActionFromBlobError::UnknownOp(op.chars().take(64).collect()))?;
        let p = Params { op, params };
        let vmid = || {
            guest_id.ok_or(ActionFromBlobError::GuestId {
                op,
                reason: "must be a vmid",
            })
        };
        let action = match op {
            Op::DestroyGuest => {
                p.only(&[])?;
                Self::DestroyGuest { vmid: vmid()? }
            }
            Op::Rollback => {
                p.only(&["snapname", "start"])?;
                Self::Rollback {
                    vmid: vmid()?,
                    snapname: p.string("snapname")?,
                    start: p.boolean("start")?,
                }
            }
            Op::DeleteSnapshot => {
                p.only(&["snapname"])?;
                Self::DeleteSnapshot {
                    vmid: vmid()?,
                    snapname: p.string("snapname")?,
                }
            }
            Op::RestoreOver => {
                p.only(&["archive", "storage"])?;
                Self::RestoreOver {
                    vmid: vmid()?,
                    archive: p.string("archive")?,
                    storage: p.string("storage")?,
                }
            }
            Op::RotateSigners => {
                if guest_id.is_some() {
                    return Err(ActionFromBlobError::GuestId {
                        op,
                        reason: "must be null for a host-level op",
                    });
                }
                p.only(&["signers"])?;
                let signers = params.get("signers").cloned().unwrap_or(Value::Null);
                let signers: Vec<SignerSpec> =
                    serde_json::from_value(signers).map_err(|e| ActionFromBlobError::Param {
                        op,
                        param: "signers",
                        reason: e.to_string(),
                    })?;
                if signers.is_empty() {
                    return Err(ActionFromBlobError::Param {
                        op,
                        param: "signers",
                        reason: "an empty set would lock every operator out".to_owned(),
                    });
                }
                Self::RotateSigners { signers }
            }
        };
        Ok(action)
    }
}

impl fmt::Display for DestructiveAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.guest_id() {
            Some(vmid) => write!(f, "{} of guest {vmid}", self.wire_name()),
            None => write!(f, "{} (host)", self.wire_name()),
        }
    }
}

/// `Role` as its config spelling.
mod role_str {
    use felhom_authz::Role;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(role.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The queue key of host-level actions: vmid 0, which PVE never assigns (vmids start at 100).
pub const HOST_QUEUE_KEY: u32 = 0;

/// A blob that names no action this agent can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ActionFromBlobError {
    /// The `op` is not in the catalogue (fails safe: never run).
    #[error("unknown op {0:?}")]
    UnknownOp(String),
    /// `guest_id` does not fit the op.
    #[error("{op}: guest_id {reason}")]
    GuestId {
        /// The op.
        op: Op,
        /// What it must be.
        reason: &'static str,
    },
    /// A param is missing, unknown or of the wrong type.
    #[error("{op}: params.{param}: {reason}")]
    Param {
        /// The op.
        op: Op,
        /// The param.
        param: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The params carry a key the op does not take.
    #[error("{op}: params.{param}: not a parameter of this op")]
    UnknownParam {
        /// The op.
        op: Op,
        /// The key (at most 64 characters).
        param: String,
    },
}

struct Params<'a> {
    op: Op,
    params: &'a Map<String, Value>,
}

impl Params<'_> {
    fn only(&self, known: &[&str]) -> Result<(), ActionFromBlobError> {
        match self.params.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(ActionFromBlobError::UnknownParam {
                op: self.op,
                param: k.chars().take(64).collect(),
            }),
            None => Ok(()),
        }
    }

    fn string(&self, param: &'static str) -> Result<String, ActionFromBlobError> {
        match self.params.get(param) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(ActionFromBlobError::Param {
                op: self.op,
                param,
                reason: "must be a non-empty string".to_owned(),
            }),
        }
    }

    fn boolean(&self, param: &'static str) -> Result<bool, ActionFromBlobError> {
        match self.params.get(param) {
            Some(Value::Bool(b)) => Ok(*b),
            _ => Err(ActionFromBlobError::Param {
                op: self.op,
                param,
                reason: "must be true or false".to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(action: DestructiveAction) {
        let params = action.params();
        let back = DestructiveAction::from_parts(
            action.wire_name(),
            action.guest_id(),
            params.as_object().expect("params are an object"),
        )
        .expect("its own params parse");
        assert_eq!(back, action);
    }

    #[test]
    fn every_action_round_trips_through_its_wire_form() {
        round_trip(DestructiveAction::DestroyGuest { vmid: 105 });
        round_trip(DestructiveAction::Rollback {
            vmid: 105,
            snapname: "before".into(),
            start: true,
        });
        round_trip(DestructiveAction::DeleteSnapshot {
            vmid: 105,
            snapname: "old".into(),
        });
        round_trip(DestructiveAction::RestoreOver {
            vmid: 105,
            archive: "local:backup/vzdump-lxc-105.tar.zst".into(),
            storage: "local-lvm".into(),
        });
        round_trip(DestructiveAction::RotateSigners {
            signers: vec![SignerSpec {
                key_id: "ops-anna".into(),
                role: Role::Operational,
                public_key: "ssh-ed25519 AAAA".into(),
            }],
        });
        assert_eq!(
            DestructiveAction::DestroyGuest { vmid: 105 }.params(),
            json!({})
        );
    }

    #[test]
    fn blobs_naming_no_runnable_action_are_refused() {
        let empty = Map::new();
        assert!(matches!(
            DestructiveAction::from_parts("format_disk", Some(105), &empty),
            Err(ActionFromBlobError::UnknownOp(_))
        ));
        assert!(matches!(
            DestructiveAction::from_parts("destroy_guest", None, &empty),
            Err(ActionFromBlobError::GuestId { .. })
        ));
        let extra = json!({"purge": false});
        assert!(matches!(
            DestructiveAction::from_parts("destroy_guest", Some(105), extra.as_object().unwrap()),
            Err(ActionFromBlobError::UnknownParam { .. })
        ));
        let no_start = json!({"snapname": "x"});
        assert!(matches!(
            DestructiveAction::from_parts("rollback", Some(105), no_start.as_object().unwrap()),
            Err(ActionFromBlobError::Param { param: "start", .. })
        ));
        let none = json!({"signers": []});
        assert!(matches!(
            DestructiveAction::from_parts("rotate_signers", None, none.as_object().unwrap()),
            Err(ActionFromBlobError::Param { .. })
        ));
        assert!(matches!(
            DestructiveAction::from_parts("rotate_signers", Some(1), none.as_object().unwrap()),
            Err(ActionFromBlobError::GuestId { .. })
        ));
    }
}

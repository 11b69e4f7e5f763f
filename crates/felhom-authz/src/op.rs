//! The signed-op vocabulary: the destructive ops an operator can sign (their wire names are the
//! blob's `op` field), which role may sign which, and the [`Expectation`] a gate binds a
//! signature to. One list, reused by felhom-sign and the reversibility gate.

use std::fmt;
use std::str::FromStr;

use crate::Role;

/// A destructive op, by its stable wire name (the `op` field of the signed blob).
///
/// Adding a variant is a deliberate act: [`Op::ALL`], [`Op::wire_name`] and
/// [`Role::allows`] match exhaustively, so it cannot compile unscoped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `destroy_guest`: stop and delete a guest with its disks.
    DestroyGuest,
    /// `rollback`: roll a guest back to a snapshot (loses everything after it).
    Rollback,
    /// `delete_snapshot`: delete a guest's snapshot.
    DeleteSnapshot,
    /// `restore_over`: restore a backup over an existing guest.
    RestoreOver,
    /// `rotate_signers`: replace the pinned signer set (host-level).
    RotateSigners,
}

/// Every destructive op, in wire-name order of the SPEC. felhom-sign and the gate use this
/// list; nothing else spells the names.
pub const DESTRUCTIVE_OPS: [Op; 5] = Op::ALL;

impl Op {
    /// Every op.
    pub const ALL: [Op; 5] = [
        Op::DestroyGuest,
        Op::Rollback,
        Op::DeleteSnapshot,
        Op::RestoreOver,
        Op::RotateSigners,
    ];

    /// The blob's `op` spelling, e.g. `destroy_guest`.
    pub fn wire_name(self) -> &'static str {
        match self {
            Op::DestroyGuest => "destroy_guest",
            Op::Rollback => "rollback",
            Op::DeleteSnapshot => "delete_snapshot",
            Op::RestoreOver => "restore_over",
            Op::RotateSigners => "rotate_signers",
        }
    }

    /// Whether the op names a guest (`guest_id` an integer) or the host (`guest_id` null).
    pub fn targets_guest(self) -> bool {
        match self {
            Op::DestroyGuest | Op::Rollback | Op::DeleteSnapshot | Op::RestoreOver => true,
            Op::RotateSigners => false,
        }
    }

    /// The op for a wire name; `None` for a name this agent does not know.
    pub fn from_wire(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.wire_name() == name)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// An op name outside [`Op::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown op {0:?} (known: destroy_guest, rollback, delete_snapshot, restore_over, rotate_signers)")]
pub struct UnknownOp(pub String);

impl FromStr for Op {
    type Err = UnknownOp;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Op::from_wire(s).ok_or_else(|| UnknownOp(s.chars().take(64).collect()))
    }
}

impl Role {
    /// Role scope: `recovery` keys may only rotate the signer set (the break-glass path);
    /// `operational` keys may do every destructive op, rotation included.
    pub fn allows(self, op: Op) -> bool {
        match (self, op) {
            (Role::Operational, _) => true,
            (Role::Recovery, Op::RotateSigners) => true,
            (
                Role::Recovery,
                Op::DestroyGuest | Op::Rollback | Op::DeleteSnapshot | Op::RestoreOver,
            ) => false,
        }
    }
}

/// The action a caller is about to run, which a signature must name exactly to authorize it.
/// The host is the verifier's own (the target stage binds it).
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// The op about to run.
    pub op: Op,
    /// Its guest, or `None` for a host-level op.
    pub guest_id: Option<u32>,
    /// Its canonical params (an object; `{}` for none). Compared as JSON values, so key order
    /// and whitespace in the signed blob do not matter, while every key and value does.
    pub params: serde_json::Value,
}

impl Expectation {
    /// The expectation for `op` on `guest_id` with `params`.
    pub fn new(op: Op, guest_id: Option<u32>, params: serde_json::Value) -> Self {
        Expectation {
            op,
            guest_id,
            params,
        }
    }
}

/// Which part of a signed blob differs from the action it was presented for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingField {
    /// The blob's `op`.
    Op,
    /// The blob's `guest_id`.
    GuestId,
    /// The blob's `params`.
    Params,
}

impl BindingField {
    /// The blob field's name.
    pub fn as_str(self) -> &'static str {
        match self {
            BindingField::Op => "op",
            BindingField::GuestId => "guest_id",
            BindingField::Params => "params",
        }
    }
}

impl fmt::Display for BindingField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_and_unknown_names_are_refused() {
        for op in Op::ALL {
            assert_eq!(op.wire_name().parse::<Op>(), Ok(op));
        }
        assert_eq!(
            DESTRUCTIVE_OPS.map(Op::wire_name),
            [
                "destroy_guest",
                "rollback",
                "delete_snapshot",
                "restore_over",
                "rotate_signers"
            ]
        );
        assert!("Destroy_guest".parse::<Op>().is_err());
        assert!("restore_guest".parse::<Op>().is_err());
        assert!(!Op::RotateSigners.targets_guest());
        assert!(Op::DestroyGuest.targets_guest());
    }

    #[test]
    fn recovery_keys_may_only_rotate_signers() {
        for op in Op::ALL {
            assert!(Role::Operational.allows(op), "{op}");
            assert_eq!(Role::Recovery.allows(op), op == Op::RotateSigners, "{op}");
        }
    }
}

//! Signed ops: the catalogue of destructive operations the agent knows ([`OpKind`]: what each
//! targets and which params it takes) and [`OpBlob`], the JSON an operator signs, with its one
//! canonical serialisation ([`OpBlob::to_canonical_json`]).
//!
//! The canonical form is how a blob is *composed* (by the hub, by `felhom-sign`); the agent
//! never re-serialises: it verifies the exact bytes it received. Written by hand here because
//! this crate has no JSON library at run time; a test pins it to serde_json's compact output.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The SSHSIG namespace an op blob is signed under (`ssh-keygen -Y sign -n felhom-op-v1`).
pub const OP_SIGNATURE_NAMESPACE: &str = "felhom-op-v1";

/// Lowest and highest vmid Proxmox VE hands out (the agent refuses any other `guest_id`).
pub const VMID_RANGE: std::ops::RangeInclusive<u32> = 100..=999_999_999;

const MAX_HOST_ID_LEN: usize = 253;
const MAX_NONCE_LEN: usize = 128;
const MAX_KEY_ID_LEN: usize = 128;
/// An RSA-16384 authorized_keys line is about 2.8 KB.
const MAX_PARAM_LEN: usize = 16 * 1024;

/// A destructive operation the agent knows, by its stable wire name (the blob's `op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Stop the guest if it runs, then delete it with its disks (`purge`, unreferenced disks).
    DestroyGuest,
    /// Roll the guest back to a snapshot, optionally starting it afterwards.
    Rollback,
    /// Delete one snapshot of the guest.
    DeleteSnapshot,
    /// Restore a backup over the existing guest (its current disks are replaced).
    RestoreOver,
    /// Replace the signer keys the host trusts (a host-level op).
    RotateSigners,
}

/// What an op acts on: decides whether the blob's `guest_id` is a vmid or `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpTarget {
    /// One guest: `guest_id` is its vmid.
    Guest,
    /// The host itself: `guest_id` is `null`.
    Host,
}

/// The JSON type of one param.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A non-empty string without control characters.
    String,
    /// `true` or `false`.
    Bool,
    /// A non-empty array of [`SignerEntry`] objects.
    Signers,
}

impl ParamKind {
    /// How the type is named to an operator.
    pub fn describe(self) -> &'static str {
        match self {
            ParamKind::String => "string",
            ParamKind::Bool => "true|false",
            ParamKind::Signers => "list of {key_id, role, public_key}",
        }
    }
}

/// One param an op takes. Every param of an op is required: a signed op states everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    /// The key in the blob's `params` object.
    pub name: &'static str,
    /// Its JSON type.
    pub kind: ParamKind,
    /// What it means.
    pub about: &'static str,
}

const NO_PARAMS: &[ParamSpec] = &[];
const SNAPNAME: ParamSpec = ParamSpec {
    name: "snapname",
    kind: ParamKind::String,
    about: "the snapshot's name",
};
const ROLLBACK_PARAMS: &[ParamSpec] = &[
    SNAPNAME,
    ParamSpec {
        name: "start",
        kind: ParamKind::Bool,
        about: "start the guest after the rollback",
    },
];
const DELETE_SNAPSHOT_PARAMS: &[ParamSpec] = &[SNAPNAME];
const RESTORE_OVER_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "archive",
        kind: ParamKind::String,
        about: "the backup's volid, e.g. local:backup/vzdump-lxc-105-2026_11_23-03_00_00.tar.zst",
    },
    ParamSpec {
        name: "storage",
        kind: ParamKind::String,
        about: "the storage the restored disks go to",
    },
];
const ROTATE_SIGNERS_PARAMS: &[ParamSpec] = &[ParamSpec {
    name: "signers",
    kind: ParamKind::Signers,
    about: "the complete new pinned signer set",
}];

impl OpKind {
    /// Every op, in catalogue order.
    pub const ALL: [OpKind; 5] = [
        OpKind::DestroyGuest,
        OpKind::Rollback,
        OpKind::DeleteSnapshot,
        OpKind::RestoreOver,
        OpKind::RotateSigners,
    ];

    /// The stable wire name, e.g. `destroy_guest`.
    pub const fn wire_name(self) -> &'static str {
        match self {
            OpKind::DestroyGuest => "destroy_guest",
            OpKind::Rollback => "rollback",
            OpKind::DeleteSnapshot => "delete_snapshot",
            OpKind::RestoreOver => "restore_over",
            OpKind::RotateSigners => "rotate_signers",
        }
    }

    /// The op named `name` on the wire.
    pub fn from_wire(name: &str) -> Result<OpKind, UnknownOp> {
        OpKind::ALL
            .into_iter()
            .find(|op| op.wire_name() == name)
            .ok_or_else(|| UnknownOp {
                name: name.chars().take(64).collect(),
            })
    }

    /// Whether the op acts on a guest or on the host.
    pub const fn target(self) -> OpTarget {
        match self {
            OpKind::RotateSigners => OpTarget::Host,
            OpKind::DestroyGuest
            | OpKind::Rollback
            | OpKind::DeleteSnapshot
            | OpKind::RestoreOver => OpTarget::Guest,
        }
    }

    /// The params the op takes (all required), in canonical (sorted) order.
    pub const fn params(self) -> &'static [ParamSpec] {
        match self {
            OpKind::DestroyGuest => NO_PARAMS,
            OpKind::Rollback => ROLLBACK_PARAMS,
            OpKind::DeleteSnapshot => DELETE_SNAPSHOT_PARAMS,
            OpKind::RestoreOver => RESTORE_OVER_PARAMS,
            OpKind::RotateSigners => ROTATE_SIGNERS_PARAMS,
        }
    }

    /// The param called `name`, if the op takes it.
    pub fn param(self, name: &str) -> Option<&'static ParamSpec> {
        self.params().iter().find(|p| p.name == name)
    }

    /// What the op takes, for an error message: `snapname (string), start (true|false)` or
    /// `no params`.
    pub fn describe_params(self) -> String {
        if self.params().is_empty() {
            return "no params".to_owned();
        }
        self.params()
            .iter()
            .map(|p| format!("{} ({})", p.name, p.kind.describe()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

impl std::str::FromStr for OpKind {
    type Err = UnknownOp;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OpKind::from_wire(s)
    }
}

/// An op name the agent does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownOp {
    /// The name given (at most 64 characters of it).
    pub name: String,
}

impl fmt::Display for UnknownOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = OpKind::ALL.iter().map(|op| op.wire_name()).collect();
        write!(
            f,
            "unknown op {:?} (the agent knows: {})",
            self.name,
            known.join(", ")
        )
    }
}

impl std::error::Error for UnknownOp {}

/// A signer's role, as the agent config spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignerRole {
    /// Ordinary destructive ops and planned key rotation.
    Operational,
    /// Key rotation only: the break-glass key.
    Recovery,
}

impl SignerRole {
    /// `operational` or `recovery`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignerRole::Operational => "operational",
            SignerRole::Recovery => "recovery",
        }
    }
}

/// One signer of a `rotate_signers` op's new set: the agent config's `authz.signers` entry.
/// Fields are declared in sorted order, so the derived serialisation is canonical too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerEntry {
    /// The signer's name.
    pub key_id: String,
    /// The key as an authorized_keys line.
    pub public_key: String,
    /// What it may authorise.
    pub role: SignerRole,
}

/// One value of a blob's `params` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A JSON boolean.
    Bool(bool),
    /// A JSON string.
    String(String),
    /// A list of signers (`rotate_signers`).
    Signers(Vec<SignerEntry>),
}

impl ParamValue {
    fn kind(&self) -> ParamKind {
        match self {
            ParamValue::Bool(_) => ParamKind::Bool,
            ParamValue::String(_) => ParamKind::String,
            ParamValue::Signers(_) => ParamKind::Signers,
        }
    }
}

/// The op blob an operator signs:
/// `{"op","host_id","guest_id","params":{...},"nonce","not_before","not_after","key_id"}`.
///
/// A deserialized `OpBlob` has passed [`OpBlob::validate`]; one built by hand should be
/// validated before it is serialised and signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireBlob")]
pub struct OpBlob {
    /// The operation.
    pub op: OpKind,
    /// The host that must execute it (the agent's `hub.host_id`).
    pub host_id: String,
    /// The guest's vmid for a guest op, `None` (`null`) for a host op.
    pub guest_id: Option<u32>,
    /// The op's params, keys sorted (a `BTreeMap` iterates in canonical order).
    pub params: BTreeMap<String, ParamValue>,
    /// Single-use: the agent records it and refuses the same nonce again.
    pub nonce: String,
    /// Start of the window, UTC, whole seconds.
    pub not_before: Timestamp,
    /// End of the window, UTC, whole seconds.
    pub not_after: Timestamp,
    /// The signer's name, informational: the agent identifies signers by key material.
    pub key_id: String,
}

/// The wire shape, before validation: every field required (`guest_id` may be `null`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBlob {
    op: OpKind,
    host_id: String,
    #[serde(deserialize_with = "required_nullable")]
    guest_id: Option<u32>,
    params: BTreeMap<String, ParamValue>,
    nonce: String,
    not_before: Timestamp,
    not_after: Timestamp,
    key_id: String,
}

/// With `deserialize_with`, serde reports a missing field instead of defaulting to `None`.
fn required_nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Option::<u32>::deserialize(d)
}

impl TryFrom<WireBlob> for OpBlob {
    type Error = OpBlobError;

    fn try_from(w: WireBlob) -> Result<Self, Self::Error> {
        let blob = OpBlob {
            op: w.op,
            host_id: w.host_id,
            guest_id: w.guest_id,
            params: w.params,
            nonce: w.nonce,
            not_before: w.not_before,
            not_after: w.not_after,
            key_id: w.key_id,
        };
        blob.validate()?;
        Ok(blob)
    }
}

/// Why an [`OpBlob`] is not one the agent would act on. Names the field and what it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpBlobError {
    /// A guest op without a `guest_id`.
    GuestRequired {
        /// The op.
        op: OpKind,
    },
    /// A host op with a `guest_id`.
    GuestNotTaken {
        /// The op.
        op: OpKind,
        /// The vmid given.
        guest_id: u32,
    },
    /// A param the op does not take.
    UnknownParam {
        /// The op.
        op: OpKind,
        /// The param's name.
        name: String,
    },
    /// A param the op needs is absent.
    MissingParam {
        /// The op.
        op: OpKind,
        /// The param's name.
        name: &'static str,
    },
    /// A param of the wrong JSON type.
    ParamType {
        /// The param's name.
        name: &'static str,
        /// What it must be.
        expected: ParamKind,
    },
    /// A field or param with the right type but an unacceptable value.
    Field {
        /// The field (or `params.NAME`).
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// `not_before` is after `not_after`.
    WindowInverted,
}

impl fmt::Display for OpBlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpBlobError::GuestRequired { op } => {
                write!(f, "{op} acts on a guest: guest_id must be its vmid")
            }
            OpBlobError::GuestNotTaken { op, guest_id } => write!(
                f,
                "{op} acts on the host: guest_id must be null, not {guest_id}"
            ),
            OpBlobError::UnknownParam { op, name } => write!(
                f,
                "{op} does not take the param {name:?} (it takes: {})",
                op.describe_params()
            ),
            OpBlobError::MissingParam { op, name } => write!(
                f,
                "{op} needs the param {name:?} (it takes: {})",
                op.describe_params()
            ),
            OpBlobError::ParamType { name, expected } => {
                write!(f, "param {name:?} must be {}", expected.describe())
            }
            OpBlobError::Field { field, problem } => write!(f, "{field}: {problem}"),
            OpBlobError::WindowInverted => f.write_str("not_before is after not_after"),
        }
    }
}

impl std::error::Error for OpBlobError {}

impl OpBlob {
    /// Checks the blob against the catalogue and the agent's field rules: the target matches
    /// the op, the params are exactly the op's with the right types, the text fields are what
    /// the agent accepts, and the window is whole UTC seconds, in order.
    pub fn validate(&self) -> Result<(), OpBlobError> {
        match (self.op.target(), self.guest_id) {
            (OpTarget::Guest, None) => return Err(OpBlobError::GuestRequired { op: self.op }),
            (OpTarget::Host, Some(guest_id)) => {
                return Err(OpBlobError::GuestNotTaken {
                    op: self.op,
                    guest_id,
                })
            }
            (OpTarget::Guest, Some(vmid)) if !VMID_RANGE.contains(&vmid) => {
                return Err(field(
                    "guest_id",
                    format!(
                        "{vmid} is not a Proxmox vmid ({}..={})",
                        VMID_RANGE.start(),
                        VMID_RANGE.end()
                    ),
                ))
            }
            _ => {}
        }
        check_text("host_id", &self.host_id, MAX_HOST_ID_LEN, |c| {
            c.is_ascii_graphic()
        })?;
        check_text("nonce", &self.nonce, MAX_NONCE_LEN, |c| {
            c.is_ascii_graphic()
        })?;
        check_text("key_id", &self.key_id, MAX_KEY_ID_LEN, |c| {
            c == ' ' || !(c.is_control() || c.is_whitespace())
        })?;
        for (name, t) in [
            ("not_before", &self.not_before),
            ("not_after", &self.not_after),
        ] {
            // `YYYY-MM-DDTHH:MM:SSZ`: no fraction.
            if t.as_str().len() != 20 {
                return Err(field(
                    name,
                    format!("{t} has a fraction: the canonical form is whole seconds"),
                ));
            }
        }
        if self.not_before.unix_seconds() > self.not_after.unix_seconds() {
            return Err(OpBlobError::WindowInverted);
        }
        self.validate_params()
    }

    fn validate_params(&self) -> Result<(), OpBlobError> {
        for name in self.params.keys() {
            if self.op.param(name).is_none() {
                return Err(OpBlobError::UnknownParam {
                    op: self.op,
                    name: name.chars().take(64).collect(),
                });
            }
        }
        for spec in self.op.params() {
            let Some(value) = self.params.get(spec.name) else {
                return Err(OpBlobError::MissingParam {
                    op: self.op,
                    name: spec.name,
                });
            };
            if value.kind() != spec.kind {
                return Err(OpBlobError::ParamType {
                    name: spec.name,
                    expected: spec.kind,
                });
            }
            let at = format!("params.{}", spec.name);
            match value {
                ParamValue::Bool(_) => {}
                ParamValue::String(s) => {
                    check_text(&at, s, MAX_PARAM_LEN, |c| !c.is_control())?;
                    if spec.name == "archive" && !s.contains(':') {
                        return Err(field(
                            &at,
                            format!("{s:?} is not a volid (storage:backup/...)"),
                        ));
                    }
                }
                ParamValue::Signers(list) => {
                    if list.is_empty() {
                        return Err(field(&at, "an empty signer set would lock every op out"));
                    }
                    for (i, s) in list.iter().enumerate() {
                        check_text(
                            &format!("{at}[{i}].key_id"),
                            &s.key_id,
                            MAX_KEY_ID_LEN,
                            |c| !c.is_control(),
                        )?;
                        check_text(
                            &format!("{at}[{i}].public_key"),
                            &s.public_key,
                            MAX_PARAM_LEN,
                            |c| !c.is_control(),
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The one canonical serialisation: fields in the order of SPEC §4, compact (no whitespace),
    /// `params` keys sorted, JSON strings escaped as serde_json escapes them. These are the bytes
    /// to sign; equal to `serde_json::to_string(self)`.
    pub fn to_canonical_json(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"op\":");
        push_string(&mut out, self.op.wire_name());
        out.push_str(",\"host_id\":");
        push_string(&mut out, &self.host_id);
        out.push_str(",\"guest_id\":");
        match self.guest_id {
            Some(vmid) => out.push_str(&vmid.to_string()),
            None => out.push_str("null"),
        }
        out.push_str(",\"params\":{");
        for (i, (name, value)) in self.params.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_string(&mut out, name);
            out.push(':');
            push_value(&mut out, value);
        }
        out.push_str("},\"nonce\":");
        push_string(&mut out, &self.nonce);
        out.push_str(",\"not_before\":");
        push_string(&mut out, self.not_before.as_str());
        out.push_str(",\"not_after\":");
        push_string(&mut out, self.not_after.as_str());
        out.push_str(",\"key_id\":");
        push_string(&mut out, &self.key_id);
        out.push('}');
        out
    }
}

fn field(name: &str, problem: impl Into<String>) -> OpBlobError {
    OpBlobError::Field {
        field: name.to_owned(),
        problem: problem.into(),
    }
}

fn check_text(
    name: &str,
    value: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), OpBlobError> {
    let problem = if value.is_empty() {
        "must not be empty".to_owned()
    } else if value.chars().count() > max {
        format!("longer than {max} characters")
    } else if let Some(bad) = value.chars().find(|&c| !allowed(c)) {
        format!("character {bad:?} is not allowed")
    } else {
        return Ok(());
    };
    Err(field(name, problem))
}

fn push_value(out: &mut String, value: &ParamValue) {
    match value {
        ParamValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        ParamValue::String(s) => push_string(out, s),
        ParamValue::Signers(list) => {
            out.push('[');
            for (i, s) in list.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"key_id\":");
                push_string(out, &s.key_id);
                out.push_str(",\"public_key\":");
                push_string(out, &s.public_key);
                out.push_str(",\"role\":");
                push_string(out, s.role.as_str());
                out.push('}');
            }
            out.push(']');
        }
    }
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, the short escapes for
/// backspace, form feed, newline, carriage return and tab, `\u00xx` (lowercase) for the other
/// control characters below U+0020; everything else (DEL, non-ASCII, `/`) verbatim.
fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let b = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[b >> 4]));
                out.push(char::from(HEX[b & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §4's example, as written there (nonce shortened to what the agent accepts).
    const SPEC_EXAMPLE: &str = r#"{"op":"destroy_guest","host_id":"pve-01","guest_id":105,"params":{},"nonce":"3f9c0a1b2c3d4e5f","not_before":"2026-11-23T10:00:00Z","not_after":"2026-11-23T10:15:00Z","key_id":"ops-anna"}"#;

    fn blob(op: OpKind, guest_id: Option<u32>, params: &[(&str, ParamValue)]) -> OpBlob {
        OpBlob {
            op,
            host_id: "pve-01".into(),
            guest_id,
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            nonce: "00112233445566778899aabbccddeeff".into(),
            not_before: Timestamp::parse("2026-11-23T10:00:00Z").unwrap(),
            not_after: Timestamp::parse("2026-11-23T10:15:00Z").unwrap(),
            key_id: "ops-anna".into(),
        }
    }

    fn s(v: &str) -> ParamValue {
        ParamValue::String(v.into())
    }

    fn every_op() -> Vec<OpBlob> {
        vec![
            blob(OpKind::DestroyGuest, Some(105), &[]),
            blob(
                OpKind::Rollback,
                Some(105),
                &[("start", ParamValue::Bool(true)), ("snapname", s("pre"))],
            ),
            blob(OpKind::DeleteSnapshot, Some(105), &[("snapname", s("pre"))]),
            blob(
                OpKind::RestoreOver,
                Some(105),
                &[
                    ("storage", s("local-lvm")),
                    ("archive", s("local:backup/vzdump-lxc-105.tar.zst")),
                ],
            ),
            blob(
                OpKind::RotateSigners,
                None,
                &[(
                    "signers",
                    ParamValue::Signers(vec![SignerEntry {
                        key_id: "ops-bela".into(),
                        public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK bela@laptop".into(),
                        role: SignerRole::Operational,
                    }]),
                )],
            ),
        ]
    }

    #[test]
    fn the_spec_example_round_trips_byte_identically() {
        let parsed: OpBlob = serde_json::from_str(SPEC_EXAMPLE).unwrap();
        assert_eq!(parsed.op, OpKind::DestroyGuest);
        assert_eq!(parsed.guest_id, Some(105));
        assert!(parsed.params.is_empty());
        assert_eq!(parsed.to_canonical_json(), SPEC_EXAMPLE);
        assert_eq!(serde_json::to_string(&parsed).unwrap(), SPEC_EXAMPLE);
    }

    #[test]
    fn every_op_is_canonical_as_serde_json_writes_it_and_round_trips() {
        for b in every_op() {
            b.validate().unwrap_or_else(|e| panic!("{}: {e}", b.op));
            let canonical = b.to_canonical_json();
            assert_eq!(canonical, serde_json::to_string(&b).unwrap(), "{}", b.op);
            let back: OpBlob = serde_json::from_str(&canonical).unwrap();
            assert_eq!(back, b);
            // The params object's keys come out sorted whatever order they were given in.
            let value: serde_json::Value = serde_json::from_str(&canonical).unwrap();
            let keys: Vec<&String> = value["params"].as_object().unwrap().keys().collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(keys, sorted);
        }
        let rotate = &every_op()[4];
        assert!(rotate
            .to_canonical_json()
            .contains(r#""guest_id":null,"params":{"signers":[{"key_id":"ops-bela","public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK bela@laptop","role":"operational"}]}"#));
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let mut all: String = (0u32..0x80).filter_map(char::from_u32).collect();
        all.push_str("é/ő\u{2028}\u{1F600}\"\\");
        let mut b = blob(OpKind::DeleteSnapshot, Some(105), &[("snapname", s("x"))]);
        b.key_id = all.clone();
        b.host_id = all;
        // Deliberately invalid as a blob; the serialisation must still match.
        assert_eq!(b.to_canonical_json(), serde_json::to_string(&b).unwrap());
    }

    #[test]
    fn wire_names_are_stable_and_unknown_ops_list_the_known_ones() {
        let names: Vec<&str> = OpKind::ALL.iter().map(|o| o.wire_name()).collect();
        assert_eq!(
            names,
            [
                "destroy_guest",
                "rollback",
                "delete_snapshot",
                "restore_over",
                "rotate_signers"
            ]
        );
        for op in OpKind::ALL {
            assert_eq!(
                serde_json::to_string(&op).unwrap(),
                format!("\"{}\"", op.wire_name())
            );
            assert_eq!(op.wire_name().parse::<OpKind>().unwrap(), op);
            // The catalogue lists params in canonical (sorted) order.
            let names: Vec<&str> = op.params().iter().map(|p| p.name).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted, "{op}");
        }
        let e = "destroy_vm".parse::<OpKind>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown op \"destroy_vm\" (the agent knows: destroy_guest, rollback, \
             delete_snapshot, restore_over, rotate_signers)"
        );
        assert_eq!(OpKind::RotateSigners.target(), OpTarget::Host);
        assert_eq!(OpKind::RestoreOver.target(), OpTarget::Guest);
        assert_eq!(
            OpKind::Rollback.describe_params(),
            "snapname (string), start (true|false)"
        );
        assert_eq!(OpKind::DestroyGuest.describe_params(), "no params");
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let cases: Vec<(OpBlob, &str)> = vec![
            (
                blob(OpKind::DestroyGuest, None, &[]),
                "destroy_guest acts on a guest: guest_id must be its vmid",
            ),
            (
                blob(OpKind::RotateSigners, Some(105), &[]),
                "rotate_signers acts on the host: guest_id must be null, not 105",
            ),
            (
                blob(OpKind::DestroyGuest, Some(99), &[]),
                "guest_id: 99 is not a Proxmox vmid (100..=999999999)",
            ),
            (
                blob(OpKind::DestroyGuest, Some(105), &[("force", ParamValue::Bool(true))]),
                "destroy_guest does not take the param \"force\" (it takes: no params)",
            ),
            (
                blob(OpKind::Rollback, Some(105), &[("snapname", s("pre"))]),
                "rollback needs the param \"start\" (it takes: snapname (string), start (true|false))",
            ),
            (
                blob(
                    OpKind::Rollback,
                    Some(105),
                    &[("snapname", s("pre")), ("start", s("yes"))],
                ),
                "param \"start\" must be true|false",
            ),
            (
                blob(
                    OpKind::RestoreOver,
                    Some(105),
                    &[("archive", s("vzdump.tar")), ("storage", s("local"))],
                ),
                "params.archive: \"vzdump.tar\" is not a volid (storage:backup/...)",
            ),
            (
                blob(OpKind::RotateSigners, None, &[("signers", ParamValue::Signers(vec![]))]),
                "params.signers: an empty signer set would lock every op out",
            ),
        ];
        for (b, want) in cases {
            assert_eq!(b.validate().unwrap_err().to_string(), want);
        }

        let mut b = blob(OpKind::DestroyGuest, Some(105), &[]);
        b.nonce = "has space".into();
        assert_eq!(
            b.validate().unwrap_err().to_string(),
            "nonce: character ' ' is not allowed"
        );
        let mut b = blob(OpKind::DestroyGuest, Some(105), &[]);
        b.not_after = Timestamp::parse("2026-11-23T10:15:00.5Z").unwrap();
        assert!(b
            .validate()
            .unwrap_err()
            .to_string()
            .contains("has a fraction"));
        let mut b = blob(OpKind::DestroyGuest, Some(105), &[]);
        b.not_after = Timestamp::parse("2026-11-23T09:00:00Z").unwrap();
        assert_eq!(b.validate().unwrap_err(), OpBlobError::WindowInverted);
    }

    #[test]
    fn deserializing_validates_and_requires_every_field() {
        let missing_guest = SPEC_EXAMPLE.replace("\"guest_id\":105,", "");
        assert!(serde_json::from_str::<OpBlob>(&missing_guest)
            .unwrap_err()
            .to_string()
            .contains("missing field `guest_id`"));
        let unknown_field = SPEC_EXAMPLE.replace("\"params\"", "\"extra\":1,\"params\"");
        assert!(serde_json::from_str::<OpBlob>(&unknown_field).is_err());
        let unknown_op = SPEC_EXAMPLE.replace("destroy_guest", "destroy_everything");
        assert!(serde_json::from_str::<OpBlob>(&unknown_op).is_err());
        let host_op = SPEC_EXAMPLE.replace("destroy_guest", "rotate_signers");
        assert!(serde_json::from_str::<OpBlob>(&host_op)
            .unwrap_err()
            .to_string()
            .contains("rotate_signers acts on the host"));
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text in any string field serialises exactly as serde_json writes it.
        #[test]
        fn hand_written_json_equals_serde_json(
            host in any::<String>(),
            key in any::<String>(),
            nonce in any::<String>(),
            param in any::<String>(),
            name in any::<String>(),
            start in any::<bool>(),
            guest in proptest::option::of(any::<u32>()),
        ) {
            let mut params = BTreeMap::new();
            params.insert("snapname".to_owned(), ParamValue::String(param));
            params.insert(name, ParamValue::Bool(start));
            let b = OpBlob {
                op: OpKind::Rollback,
                host_id: host,
                guest_id: guest,
                params,
                nonce,
                not_before: Timestamp::from_unix_seconds(1_795_428_000),
                not_after: Timestamp::from_unix_seconds(1_795_428_900),
                key_id: key,
            };
            prop_assert_eq!(b.to_canonical_json(), serde_json::to_string(&b).unwrap());
        }
    }
}

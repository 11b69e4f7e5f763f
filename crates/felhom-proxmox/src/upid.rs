//! `Upid`: a PVE task id, parsed exactly as PVE parses it and printed back byte for byte.
//!
//! Format (pve-common `PVE/UPID.pm`):
//! `UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{type}:{id}:{user}:` with the decode regex
//! `^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$`.
//! `pstart` has 9 hex digits after 497 days of uptime; `id` may be empty and is kept raw (no
//! systemd-style unescaping: that is a PBS convention that would alter PVE ids containing `-`);
//! `user` may be a full token id `user@realm!token`.

use std::fmt;
use std::str::FromStr;

/// A parsed UPID. Equality, hashing and `Display` use the exact original string.
///
/// The text fields are kept as spans of the original string: one allocation, and small
/// enough to travel inside errors.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Upid {
    raw: String,
    pid: u32,
    pstart: u64,
    starttime: u32,
    node: Span,
    worker_type: Span,
    id: Span,
    user: Span,
}

/// Byte range of a field within `raw`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Span(u32, u32);

impl Span {
    /// The span of field `i` of a string split on `:` into `fields`.
    fn field(fields: &[&str], i: usize) -> Span {
        let start: usize = fields[..i].iter().map(|f| f.len() + 1).sum();
        Span(start as u32, (start + fields[i].len()) as u32)
    }
    fn get<'a>(&self, raw: &'a str) -> &'a str {
        &raw[self.0 as usize..self.1 as usize]
    }
}

/// Why a string is not a UPID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpidError {
    /// The string does not start with `UPID:` or does not end with `:`.
    #[error("invalid upid {raw:?}: must start with \"UPID:\" and end with \":\"")]
    Frame { raw: String },
    /// Not exactly nine colon-separated fields (the last one empty).
    #[error("invalid upid {raw:?}: expected 9 colon-separated fields, got {got}")]
    FieldCount { raw: String, got: usize },
    /// One field violates PVE's pattern.
    #[error("invalid upid {raw:?}: field {field} {reason}")]
    Field {
        raw: String,
        field: &'static str,
        reason: &'static str,
    },
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// PVE node name: `[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?`.
pub(crate) fn is_node_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// `[^:\s/]` repeated: what PVE allows in the type, id and user fields.
fn is_upid_text(s: &str) -> bool {
    s.chars()
        .all(|c| c != ':' && c != '/' && !c.is_whitespace())
}

impl FromStr for Upid {
    type Err = UpidError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let owned = || raw.to_owned();
        if !raw.starts_with("UPID:") || !raw.ends_with(':') {
            return Err(UpidError::Frame { raw: owned() });
        }
        let fields: Vec<&str> = raw.split(':').collect();
        // "UPID", node, pid, pstart, starttime, type, id, user, "" (after the final colon)
        if fields.len() != 9 {
            return Err(UpidError::FieldCount {
                raw: owned(),
                got: fields.len(),
            });
        }
        let bad = |field, reason| UpidError::Field {
            raw: owned(),
            field,
            reason,
        };
        let (node, pid, pstart, start, wtype, id, user) = (
            fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], fields[7],
        );
        if !is_node_name(node) {
            return Err(bad("node", "is not a valid node name"));
        }
        if pid.len() != 8 || !is_hex(pid) {
            return Err(bad("pid", "must be 8 hex digits"));
        }
        if !(pstart.len() == 8 || pstart.len() == 9) || !is_hex(pstart) {
            return Err(bad("pstart", "must be 8 or 9 hex digits"));
        }
        if start.len() != 8 || !is_hex(start) {
            return Err(bad("starttime", "must be 8 hex digits"));
        }
        if wtype.is_empty() || !is_upid_text(wtype) {
            return Err(bad(
                "type",
                "must be non-empty without ':', '/' or whitespace",
            ));
        }
        if !is_upid_text(id) {
            return Err(bad("id", "must not contain ':', '/' or whitespace"));
        }
        if user.is_empty() || !is_upid_text(user) {
            return Err(bad(
                "user",
                "must be non-empty without ':', '/' or whitespace",
            ));
        }
        // The lengths were checked, so these cannot overflow.
        let hex32 = |s: &str| u32::from_str_radix(s, 16).unwrap_or_default();
        if raw.len() > u32::MAX as usize {
            return Err(UpidError::Frame { raw: owned() });
        }
        Ok(Upid {
            raw: owned(),
            pid: hex32(pid),
            pstart: u64::from_str_radix(pstart, 16).unwrap_or_default(),
            starttime: hex32(start),
            node: Span::field(&fields, 1),
            worker_type: Span::field(&fields, 5),
            id: Span::field(&fields, 6),
            user: Span::field(&fields, 7),
        })
    }
}

impl Upid {
    /// The exact string PVE issued.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
    /// The node the task runs on: query task status there, not on the configured node.
    pub fn node(&self) -> &str {
        self.node.get(&self.raw)
    }
    /// Process id of the worker.
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Process start time in clock ticks since boot (identifies the worker with `pid`).
    pub fn pstart(&self) -> u64 {
        self.pstart
    }
    /// Task start, seconds since the Unix epoch.
    pub fn starttime(&self) -> u32 {
        self.starttime
    }
    /// Worker type, e.g. `vzrestore`, `vzdump`, `vzstart`.
    pub fn worker_type(&self) -> &str {
        self.worker_type.get(&self.raw)
    }
    /// Worker id, usually the vmid; may be empty (a vzdump of several guests).
    pub fn id(&self) -> &str {
        self.id.get(&self.raw)
    }
    /// The user or full token id that started the task (`user@realm` or `user@realm!token`).
    pub fn user(&self) -> &str {
        self.user.get(&self.raw)
    }
    /// The user part without a token name.
    pub fn user_id(&self) -> &str {
        let user = self.user();
        user.split_once('!').map_or(user, |(u, _)| u)
    }
    /// The token name if a token started the task.
    pub fn token_name(&self) -> Option<&str> {
        self.user().split_once('!').map(|(_, t)| t)
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Upid({})", self.raw)
    }
}

impl serde::Serialize for Upid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> serde::Deserialize<'de> for Upid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[track_caller]
    #[allow(clippy::too_many_arguments)]
    fn check(
        raw: &str,
        node: &str,
        pid: u32,
        pstart: u64,
        start: u32,
        ty: &str,
        id: &str,
        user: &str,
    ) {
        let u: Upid = raw.parse().unwrap();
        assert_eq!(u.node(), node);
        assert_eq!(u.pid(), pid);
        assert_eq!(u.pstart(), pstart);
        assert_eq!(u.starttime(), start);
        assert_eq!(u.worker_type(), ty);
        assert_eq!(u.id(), id);
        assert_eq!(u.user(), user);
        assert_eq!(u.to_string(), raw);
    }

    #[test]
    fn real_upids_from_pve() {
        // Telmate/proxmox-api-go PR #247
        check(
            "UPID:dahu-2:00007323:001036A5:6419CAF8:qmstart:100:root@pam:",
            "dahu-2",
            29475,
            1_062_565,
            1_679_411_960,
            "qmstart",
            "100",
            "root@pam",
        );
        // bpg #2700: started by a token
        let raw = "UPID:pve:00188D93:0186372E:69B66E35:vzcreate:100:terraform@pve!provider:";
        check(
            raw,
            "pve",
            0x188D93,
            0x0186372E,
            0x69B66E35,
            "vzcreate",
            "100",
            "terraform@pve!provider",
        );
        let u: Upid = raw.parse().unwrap();
        assert_eq!(u.user_id(), "terraform@pve");
        assert_eq!(u.token_name(), Some("provider"));
        // community.proxmox #169
        check(
            "UPID:helldorado:0006C7D9:0029F72D:68A60E01:vzrestore:104:cicd@pam!cicd_ansible:",
            "helldorado",
            0x0006C7D9,
            0x0029F72D,
            0x68A60E01,
            "vzrestore",
            "104",
            "cicd@pam!cicd_ansible",
        );
    }

    #[test]
    fn nine_hex_pstart_empty_id_and_lowercase_hex() {
        check(
            "UPID:pve:000FF1FD:110F9374C:630D702C:vzdump::root@pam:",
            "pve",
            0xFF1FD,
            0x1_10F9_374C,
            0x630D702C,
            "vzdump",
            "",
            "root@pam",
        );
        let raw = "UPID:node1:000ff1fd:10f9374c:630d702c:vzdump:110:root@pam:";
        let u: Upid = raw.parse().unwrap();
        assert_eq!(u.pid(), 0xFF1FD);
        assert_eq!(u.to_string(), raw, "display keeps the original case");
        assert_eq!(u.token_name(), None);
    }

    #[test]
    fn ids_are_kept_raw() {
        let raw = "UPID:pve:00000001:00000002:00000003:vzmigrate:ct-100_x\\x2d:root@pam:";
        assert_eq!(raw.parse::<Upid>().unwrap().id(), "ct-100_x\\x2d");
    }

    #[test]
    fn bad_strings_are_rejected_with_the_field_named() {
        let cases: &[(&str, &str)] = &[
            ("", "must start with"),
            (
                "UPID:pve:00000001:00000002:00000003:vzstart:100:root@pam",
                "must start with",
            ),
            (
                "upid:pve:00000001:00000002:00000003:vzstart:100:root@pam:",
                "must start with",
            ),
            (
                "UPID:pve:00000001:00000002:00000003:vzstart:100:root@pam:x:",
                "9 colon-separated",
            ),
            (
                "UPID:pve:00000001:00000002:vzstart:100:root@pam:",
                "9 colon-separated",
            ),
            (
                "UPID:-pve:00000001:00000002:00000003:vzstart:100:root@pam:",
                "field node",
            ),
            (
                "UPID:pve_1:00000001:00000002:00000003:vzstart:100:root@pam:",
                "field node",
            ),
            (
                "UPID:pve:0000001:00000002:00000003:vzstart:100:root@pam:",
                "field pid",
            ),
            (
                "UPID:pve:0000000G:00000002:00000003:vzstart:100:root@pam:",
                "field pid",
            ),
            (
                "UPID:pve:00000001:0000002:00000003:vzstart:100:root@pam:",
                "field pstart",
            ),
            (
                "UPID:pve:00000001:0000000002:00000003:vzstart:100:root@pam:",
                "field pstart",
            ),
            (
                "UPID:pve:00000001:00000002:000000003:vzstart:100:root@pam:",
                "field starttime",
            ),
            (
                "UPID:pve:00000001:00000002:00000003::100:root@pam:",
                "field type",
            ),
            (
                "UPID:pve:00000001:00000002:00000003:vz start:100:root@pam:",
                "field type",
            ),
            (
                "UPID:pve:00000001:00000002:00000003:vzstart:1/0:root@pam:",
                "field id",
            ),
            (
                "UPID:pve:00000001:00000002:00000003:vzstart:100::",
                "field user",
            ),
        ];
        for (raw, want) in cases {
            let err = raw.parse::<Upid>().unwrap_err().to_string();
            assert!(err.contains(want), "{raw:?}: {err}");
        }
    }

    #[test]
    fn serde_is_the_plain_string() {
        let raw = "UPID:pve:00188D93:0186372E:69B66E35:vzcreate:100:terraform@pve!provider:";
        let u: Upid = serde_json::from_str(&format!("\"{raw}\"")).unwrap();
        assert_eq!(serde_json::to_string(&u).unwrap(), format!("\"{raw}\""));
        assert!(serde_json::from_str::<Upid>("\"UPID:nope\"").is_err());
    }

    fn node() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,14}[a-zA-Z0-9])?"
    }
    fn text(min: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[^:/\\s]{{{min},12}}")).unwrap()
    }

    proptest! {
        #[test]
        fn parse_display_round_trips(
            node in node(),
            pid in any::<u32>(),
            pstart in 0u64..=0xF_FFFF_FFFF,
            nine in any::<bool>(),
            start in any::<u32>(),
            ty in text(1),
            id in text(0),
            user in text(1),
            lower in any::<bool>(),
        ) {
            let pstart_s = if nine || pstart > 0xFFFF_FFFF {
                format!("{pstart:09X}")
            } else {
                format!("{pstart:08X}")
            };
            let mut hex = format!("{pid:08X}:{pstart_s}:{start:08X}");
            if lower {
                hex = hex.to_lowercase();
            }
            let raw = format!("UPID:{node}:{hex}:{ty}:{id}:{user}:");
            let u: Upid = raw.parse().unwrap();
            prop_assert_eq!(u.to_string(), raw.clone());
            prop_assert_eq!(u.pid(), pid);
            prop_assert_eq!(u.pstart(), pstart);
            prop_assert_eq!(u.starttime(), start);
            prop_assert_eq!(u.id(), id.as_str());
            let again: Upid = u.to_string().parse().unwrap();
            prop_assert_eq!(again, u);
        }
    }
}

//! `felhom-sign show`: what an op will do when the agent accepts it, in plain language, and
//! which key signed it. What you see is what you sign.

use std::fmt;
use std::path::Path;

use felhom_hub_proto::{OpBlob, OpKind, ParamValue, Timestamp, OP_SIGNATURE_NAMESPACE};
use ssh_key::public::KeyData;
use ssh_key::{EcdsaCurve, HashAlg, PublicKey, SshSig};

use crate::duration::human;
use crate::SignError;

/// Parses `bytes` (the file at `path`) as an op blob the agent would act on.
pub fn parse_blob(path: &Path, bytes: &[u8]) -> Result<OpBlob, SignError> {
    serde_json::from_slice(bytes).map_err(|e| SignError::NotABlob {
        path: path.to_owned(),
        problem: e.to_string(),
    })
}

/// One sentence: what, on which host, when, with which nonce and claimed key.
/// `now` (Unix seconds) makes the window relative ("in 14 min").
pub fn statement(blob: &OpBlob, now: i64) -> String {
    let host = &blob.host_id;
    let guest = blob
        .guest_id
        .map_or_else(String::new, |vmid| vmid.to_string());
    let string = |name: &str| match blob.params.get(name) {
        Some(ParamValue::String(s)) => s.as_str(),
        _ => "?",
    };
    let what = match blob.op {
        OpKind::DestroyGuest => format!("destroy guest {guest} on host {host}"),
        OpKind::Rollback => {
            let then = match blob.params.get("start") {
                Some(ParamValue::Bool(true)) => "and start it",
                _ => "and leave it stopped",
            };
            format!(
                "roll guest {guest} on host {host} back to snapshot {:?} {then}",
                string("snapname")
            )
        }
        OpKind::DeleteSnapshot => format!(
            "delete snapshot {:?} of guest {guest} on host {host}",
            string("snapname")
        ),
        OpKind::RestoreOver => format!(
            "restore backup {:?} over guest {guest} on host {host}, disks to storage {:?}",
            string("archive"),
            string("storage")
        ),
        OpKind::RotateSigners => {
            let n = match blob.params.get("signers") {
                Some(ParamValue::Signers(list)) => list.len(),
                _ => 0,
            };
            format!("replace the signer keys host {host} trusts with {n} key(s)")
        }
    };
    format!(
        "{what}, valid {} ({}), nonce {}, key {}",
        window_text(&blob.not_before, &blob.not_after, now),
        relative(&blob.not_before, &blob.not_after, now),
        blob.nonce,
        blob.key_id
    )
}

/// What the agent will do, beyond the one sentence: the consequence an operator should weigh.
pub fn consequence(blob: &OpBlob) -> String {
    match blob.op {
        OpKind::DestroyGuest => {
            "the agent stops the guest if it runs, then deletes it with all its disks. Not \
             reversible."
                .to_owned()
        }
        OpKind::Rollback => "everything the guest wrote after the snapshot is lost.".to_owned(),
        OpKind::DeleteSnapshot => "the snapshot can no longer be rolled back to.".to_owned(),
        OpKind::RestoreOver => "the guest's current disks are replaced by the backup's.".to_owned(),
        OpKind::RotateSigners => {
            let mut out = "the host then trusts exactly these keys, no others:".to_owned();
            if let Some(ParamValue::Signers(list)) = blob.params.get("signers") {
                for s in list {
                    let key = PublicKey::from_openssh(s.public_key.trim())
                        .map(|k| {
                            let info = KeyInfo::of(k.key_data());
                            format!("{} {}", info.algorithm, info.fingerprint)
                        })
                        .unwrap_or_else(|e| format!("UNREADABLE KEY ({e})"));
                    out.push_str(&format!("\n    {} ({}): {key}", s.key_id, s.role.as_str()));
                }
            }
            out
        }
    }
}

/// `10:00–10:15 UTC`, with the date when it is not today (UTC) or the window spans days.
fn window_text(nb: &Timestamp, na: &Timestamp, now: i64) -> String {
    let (nb_date, nb_time) = split(nb);
    let (na_date, na_time) = split(na);
    let today = Timestamp::from_unix_seconds(u64::try_from(now).unwrap_or(0));
    let (today, _) = split(&today);
    if nb_date != na_date {
        format!("{nb_date} {nb_time} – {na_date} {na_time} UTC")
    } else if nb_date != today {
        format!("{nb_date} {nb_time}–{na_time} UTC")
    } else {
        format!("{nb_time}–{na_time} UTC")
    }
}

/// `("2026-11-23", "10:00")`, or `"10:00:30"` when the seconds are not zero.
fn split(t: &Timestamp) -> (&str, &str) {
    let s = t.as_str();
    let date = &s[..10];
    let time = if &s[16..19] == ":00" {
        &s[11..16]
    } else {
        &s[11..19]
    };
    (date, time)
}

fn relative(nb: &Timestamp, na: &Timestamp, now: i64) -> String {
    let (nb, na) = (nb.unix_seconds(), na.unix_seconds());
    if now < nb {
        format!("in {}", human(nb.abs_diff(now)))
    } else if now <= na {
        format!("valid now, {} left", human(na.abs_diff(now)))
    } else {
        format!("EXPIRED {} ago", human(now.abs_diff(na)))
    }
}

/// A public key as `ssh-keygen -l` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Key size in bits (`256` for ed25519).
    pub bits: u32,
    /// `SHA256:…`.
    pub fingerprint: String,
    /// The type in `ssh-keygen -l`'s parentheses: `ED25519`, `ECDSA`, `RSA`, `ED25519-SK`,
    /// `ECDSA-SK`.
    pub label: &'static str,
    /// The SSH algorithm name, e.g. `ssh-ed25519`.
    pub algorithm: String,
}

impl KeyInfo {
    /// Describes `key`.
    pub fn of(key: &KeyData) -> KeyInfo {
        let (bits, label) = match key {
            KeyData::Ed25519(_) => (256, "ED25519"),
            KeyData::SkEd25519(_) => (256, "ED25519-SK"),
            KeyData::SkEcdsaSha2NistP256(_) => (256, "ECDSA-SK"),
            KeyData::Ecdsa(k) => (
                match k.curve() {
                    EcdsaCurve::NistP256 => 256,
                    EcdsaCurve::NistP384 => 384,
                    EcdsaCurve::NistP521 => 521,
                },
                "ECDSA",
            ),
            KeyData::Rsa(k) => (rsa_bits(k), "RSA"),
            _ => (0, "UNKNOWN"),
        };
        KeyInfo {
            bits,
            fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
            label,
            algorithm: key.algorithm().as_str().to_owned(),
        }
    }
}

impl fmt::Display for KeyInfo {
    /// `256 SHA256:… (ED25519)`: `ssh-keygen -l` without the comment (a signature has none).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.bits, self.fingerprint, self.label)
    }
}

/// The exact modulus length (`key_size` rounds up to whole bytes).
fn rsa_bits(key: &ssh_key::public::RsaPublicKey) -> u32 {
    let bytes = key.n().as_positive_bytes().unwrap_or_default();
    let Some(pos) = bytes.iter().position(|&b| b != 0) else {
        return 0;
    };
    let significant = &bytes[pos..];
    let len = u32::try_from(significant.len()).unwrap_or(u32::MAX / 8);
    len.saturating_mul(8) - significant[0].leading_zeros()
}

/// What a signature file says about itself, checked against the blob's bytes. Not the agent's
/// verdict: that also needs the pinned signers (`felhom-sign check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInfo {
    /// The key that made the signature.
    pub key: KeyInfo,
    /// The SSHSIG namespace.
    pub namespace: String,
    /// Whether the signature verifies over exactly these bytes under its own key.
    pub matches_blob: bool,
}

/// Reads the armored signature at `path` (contents `sig`) and checks it over `blob`.
pub fn signature_info(path: &Path, sig: &[u8], blob: &[u8]) -> Result<SignatureInfo, SignError> {
    let sshsig = SshSig::from_pem(sig).map_err(|e| SignError::NotASignature {
        path: path.to_owned(),
        problem: e.to_string(),
    })?;
    let key = sshsig.public_key().clone();
    let namespace = sshsig.namespace().to_owned();
    let matches_blob = PublicKey::new(key.clone(), "")
        .verify(&namespace, blob, &sshsig)
        .is_ok();
    Ok(SignatureInfo {
        key: KeyInfo::of(&key),
        namespace,
        matches_blob,
    })
}

/// The whole `show` output.
pub fn render(blob_bytes: &[u8], blob: &OpBlob, sig: Option<&SignatureInfo>, now: i64) -> String {
    let mut out = statement(blob, now);
    out.push('\n');
    out.push_str("  ");
    out.push_str(&consequence(blob));
    out.push('\n');
    if blob.to_canonical_json().as_bytes() != blob_bytes {
        out.push_str(
            "  note: the file is not in canonical form (felhom-sign new writes it); the agent \
             verifies the bytes as they are, so sign exactly this file or none\n",
        );
    }
    if let Some(sig) = sig {
        out.push_str(&format!("signed by {}", sig.key));
        if sig.namespace != OP_SIGNATURE_NAMESPACE {
            out.push_str(&format!(
                "\n  WRONG NAMESPACE {:?}: the agent only accepts {OP_SIGNATURE_NAMESPACE:?}",
                sig.namespace
            ));
        }
        if sig.matches_blob {
            out.push_str("\n  the signature matches these exact bytes");
        } else {
            out.push_str("\n  THE SIGNATURE DOES NOT MATCH THIS FILE (changed after signing?)");
        }
        out.push_str(
            "\n  whether the host trusts this key: felhom-sign check --signers FILE BLOB SIG\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOB: &str = r#"{"op":"destroy_guest","host_id":"pve-01","guest_id":105,"params":{},"nonce":"3f9c","not_before":"2026-11-23T10:00:00Z","not_after":"2026-11-23T10:15:00Z","key_id":"ops-anna"}"#;
    /// 2026-11-23T09:46:00Z
    const BEFORE: i64 = 1_795_428_000 - 14 * 60;

    fn blob(s: &str) -> OpBlob {
        parse_blob(Path::new("op.json"), s.as_bytes()).unwrap()
    }

    #[test]
    fn the_statement_reads_as_the_issue_spells_it() {
        assert_eq!(
            statement(&blob(BLOB), BEFORE),
            "destroy guest 105 on host pve-01, valid 10:00–10:15 UTC (in 14 min), nonce 3f9c, \
             key ops-anna"
        );
        assert!(statement(&blob(BLOB), BEFORE + 20 * 60).contains("(valid now, 9 min left)"));
        assert!(statement(&blob(BLOB), BEFORE + 30 * 60).contains("(EXPIRED 1 min ago)"));
        // Another day: the date is written out.
        assert!(statement(&blob(BLOB), BEFORE - 86_400)
            .contains("valid 2026-11-23 10:00–10:15 UTC (in 24 h 14 min)"));
    }

    #[test]
    fn every_op_says_what_it_does() {
        let with = |op: &str, guest: &str, params: &str| {
            BLOB.replace("destroy_guest", op)
                .replace("105", guest)
                .replace("\"params\":{}", &format!("\"params\":{params}"))
        };
        let cases = [
            (
                with("rollback", "105", r#"{"snapname":"pre","start":true}"#),
                "roll guest 105 on host pve-01 back to snapshot \"pre\" and start it",
            ),
            (
                with("delete_snapshot", "105", r#"{"snapname":"pre"}"#),
                "delete snapshot \"pre\" of guest 105 on host pve-01",
            ),
            (
                with(
                    "restore_over",
                    "105",
                    r#"{"archive":"local:backup/x.tar.zst","storage":"local-lvm"}"#,
                ),
                "restore backup \"local:backup/x.tar.zst\" over guest 105 on host pve-01, disks \
                 to storage \"local-lvm\"",
            ),
        ];
        for (json, want) in cases {
            let b = blob(&json);
            assert!(
                statement(&b, BEFORE).starts_with(want),
                "{}",
                statement(&b, BEFORE)
            );
            assert!(render(json.as_bytes(), &b, None, BEFORE).lines().count() == 2);
        }
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOl/wZTeCHOT+sJ3VKcGxH4CJmOm6gEMP3R8Oz+sV4ad bela";
        let rotate = with(
            "rotate_signers",
            "null",
            &format!(
                r#"{{"signers":[{{"key_id":"ops-bela","public_key":"{key}","role":"recovery"}}]}}"#
            ),
        );
        let b = blob(&rotate);
        assert!(statement(&b, BEFORE)
            .starts_with("replace the signer keys host pve-01 trusts with 1 key(s)"));
        let c = consequence(&b);
        assert!(
            c.contains("ops-bela (recovery): ssh-ed25519 SHA256:"),
            "{c}"
        );
    }

    #[test]
    fn a_non_canonical_file_is_pointed_out() {
        let pretty = serde_json::to_string_pretty(&blob(BLOB)).unwrap();
        let b = blob(&pretty);
        assert!(render(pretty.as_bytes(), &b, None, BEFORE).contains("not in canonical form"));
        assert!(!render(BLOB.as_bytes(), &b, None, BEFORE).contains("canonical"));
    }

    #[test]
    fn junk_is_not_a_blob_or_a_signature() {
        let e = parse_blob(Path::new("op.json"), b"{}").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("op.json is not a valid op blob: missing field"),
            "{e}"
        );
        let e = signature_info(Path::new("op.sig"), b"hello", BLOB.as_bytes()).unwrap_err();
        assert!(
            e.to_string().starts_with("op.sig is not an SSH signature"),
            "{e}"
        );
    }
}

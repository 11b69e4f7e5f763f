//! `felhom-agent verify-op`: a dry run of a signed op against the configured signers and a
//! read-only snapshot of the nonce store (the daemon may hold the store's lock; the snapshot
//! does not need it). Every verifier stage runs; the nonce is only looked up, never recorded.
//!
//! The signers are the daemon's: a signers file left by a `rotate_signers` (next to the nonce
//! store) overrides `authz.signers`. With `--expect op=…,guest=…` the reversibility gate's
//! role-scope and binding stages run too: the verdict is what the gate would decide for that
//! action.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use felhom_authz::{
    AuthzError, FileNonceStore, NonceStoreError, Signer, VerifiedOp, Verifier, MAX_BLOB_LEN,
    MAX_SIGNATURE_LEN,
};
use felhom_config::Config;
use felhom_reconcile::{DestructiveAction, SignerStore};
use time::OffsetDateTime;

/// Why the dry run could not judge the op at all (exit 2): an input file or the nonce store
/// could not be read. Retrying makes sense once the file is readable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyOpError {
    /// The blob or signature file could not be read.
    #[error("cannot read {what} file {}: {source}", path.display())]
    Read {
        /// `blob` or `signature`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The nonce store's file could not be read or is damaged.
    #[error("cannot read the nonce store (authz.nonce_store): {0}")]
    NonceStore(#[source] NonceStoreError),
}

/// `--expect`: the action the gate would be asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The op's wire name.
    pub op: String,
    /// Its guest; `None` for a host-level op.
    pub guest: Option<u32>,
    /// Its params (JSON object); `None`: the blob's own.
    pub params: Option<String>,
}

/// Parses `op=…,guest=…[,params=JSON]` (`params` last: its JSON may hold commas).
pub fn parse_expect(text: &str) -> Result<Expect, String> {
    let (head, params) = match text.find("params=") {
        Some(i) => (
            text[..i].trim_end_matches(','),
            Some(text[i + 7..].to_owned()),
        ),
        None => (text, None),
    };
    let mut op = None;
    let mut guest = None;
    for part in head.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("op", v)) => op = Some(v.to_owned()),
            Some(("guest", v)) => {
                guest = Some(
                    v.parse::<u32>()
                        .map_err(|_| format!("guest={v}: not a vmid"))?,
                )
            }
            _ => return Err(format!("{part:?}: expected op=…, guest=… or params=…")),
        }
    }
    let op = op.ok_or("op=… is required")?;
    if let Some(p) = &params {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(p)
            .map_err(|e| format!("params: not a JSON object: {e}"))?;
    }
    Ok(Expect { op, guest, params })
}

/// The verdict of the dry run.
#[derive(Debug)]
pub enum Verdict {
    /// Every stage passed: the daemon would accept this op now (or at `--at`).
    Accepted(Box<VerifiedOp>),
    /// A stage refused it.
    Refused(AuthzError),
    /// `--expect` names no action the agent can run.
    NotAnAction(String),
}

/// The name of the stage that refused, as the typed error's variant is called.
pub fn reason_name(e: &AuthzError) -> &'static str {
    e.stage()
}

/// Reads the inputs and runs the verifier's dry run at `at`.
pub fn run(
    config: &Config,
    signers: Vec<Signer>,
    blob: &Path,
    sig: &Path,
    at: OffsetDateTime,
    expect: Option<&Expect>,
) -> Result<Verdict, VerifyOpError> {
    let blob_bytes = read_limited("blob", blob, MAX_BLOB_LEN)?;
    let sig_bytes = read_limited("signature", sig, MAX_SIGNATURE_LEN)?;
    let nonces =
        FileNonceStore::snapshot(&config.authz.nonce_store).map_err(VerifyOpError::NonceStore)?;
    // setup::load requires the hub section; its host id is the host signed ops must name.
    let host_id = config
        .hub
        .as_ref()
        .map(|h| h.host_id.clone())
        .unwrap_or_default();
    // The daemon's signer set: a rotation's file overrides the config; a damaged one trusts
    // nobody (as the daemon does).
    let signers = match SignerStore::read(SignerStore::path_next_to(&config.authz.nonce_store)) {
        Ok(Some(rotated)) => rotated,
        Ok(None) => signers,
        Err(e) => {
            eprintln!("felhom-agent: verify-op: {e}: no signer is trusted");
            Vec::new()
        }
    };
    let verifier = Verifier::new(signers, nonces, host_id);
    let checked = match expect {
        None => verifier.check(&blob_bytes, &sig_bytes, at),
        Some(expect) => {
            let params = match &expect.params {
                Some(p) => serde_json::from_str(p).unwrap_or_default(),
                // Unverified, only to bind the rest: the blob's own params.
                None => serde_json::from_slice::<serde_json::Value>(&blob_bytes)
                    .ok()
                    .and_then(|v| v.get("params")?.as_object().cloned())
                    .unwrap_or_default(),
            };
            match DestructiveAction::from_parts(&expect.op, expect.guest, &params) {
                Ok(action) => {
                    verifier.check_for(&blob_bytes, &sig_bytes, at, &action.expectation())
                }
                Err(e) => return Ok(Verdict::NotAnAction(e.to_string())),
            }
        }
    };
    Ok(match checked {
        Ok(op) => Verdict::Accepted(Box::new(op)),
        Err(e) => Verdict::Refused(e),
    })
}

/// Reads at most `limit + 1` bytes: enough for the verifier to refuse an oversized input by
/// its length without this tool reading a huge file.
fn read_limited(what: &'static str, path: &Path, limit: usize) -> Result<Vec<u8>, VerifyOpError> {
    let err = |source| VerifyOpError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(err)?
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    Ok(bytes)
}

/// What `verify-op` prints for `verdict` (stdout), evaluated at `at`; `signers` is how many
/// signers are configured (none is worth saying: then nothing can be accepted).
pub fn render(verdict: &Verdict, at: OffsetDateTime, signers: usize) -> String {
    let mut out = String::new();
    match verdict {
        Verdict::Accepted(op) => {
            let _ = writeln!(out, "{}", op.describe(at));
            let _ = writeln!(out, "  nonce   {} (not used yet)", op.nonce);
            let _ = writeln!(
                out,
                "dry run: nothing was executed and the nonce was not recorded"
            );
        }
        Verdict::NotAnAction(e) => {
            let _ = writeln!(
                out,
                "refused (NotAnAction): --expect names no runnable action: {e}"
            );
        }
        Verdict::Refused(e) => {
            let _ = writeln!(out, "refused ({}): {e}", reason_name(e));
            if signers == 0 {
                let _ = writeln!(
                    out,
                    "note: authz.signers is empty, so no signed op can be accepted on this host"
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::format_description::well_known::Rfc3339;

    use super::*;

    fn t(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    #[test]
    fn every_refusal_has_its_variant_name() {
        let at = t("2026-11-23T10:20:00Z");
        let cases = [
            (AuthzError::Namespace { got: "file".into() }, "Namespace"),
            (
                AuthzError::UnknownSigner {
                    algorithm: "ssh-ed25519".into(),
                    fingerprint: "SHA256:x".into(),
                },
                "UnknownSigner",
            ),
            (
                AuthzError::Target {
                    expected: "pve-01".into(),
                    got: "pve-02".into(),
                },
                "Target",
            ),
            (
                AuthzError::Expired {
                    not_after: t("2026-11-23T10:15:00Z"),
                    now: at,
                    skew: Duration::from_secs(60),
                },
                "Expired",
            ),
            (
                AuthzError::NotYetValid {
                    not_before: t("2026-11-23T10:30:00Z"),
                    now: at,
                    skew: Duration::from_secs(60),
                },
                "NotYetValid",
            ),
            (
                AuthzError::RoleDenied {
                    key_id: "break-glass".into(),
                    role: felhom_authz::Role::Recovery,
                    op: "destroy_guest".into(),
                },
                "RoleDenied",
            ),
            (
                AuthzError::BindingMismatch {
                    field: felhom_authz::BindingField::GuestId,
                },
                "BindingMismatch",
            ),
        ];
        for (e, name) in cases {
            assert_eq!(reason_name(&e), name);
            let text = render(&Verdict::Refused(e), at, 1);
            assert!(
                text.starts_with(&format!("refused ({name}): signed op refused")),
                "{text}"
            );
            assert!(!text.contains("note:"), "{text}");
        }
    }

    #[test]
    fn no_signers_is_pointed_out_on_a_refusal() {
        let e = AuthzError::UnknownSigner {
            algorithm: "ssh-ed25519".into(),
            fingerprint: "SHA256:x".into(),
        };
        let text = render(&Verdict::Refused(e), t("2026-11-23T10:05:00Z"), 0);
        assert!(text.contains("note: authz.signers is empty"), "{text}");
    }

    #[test]
    fn unreadable_inputs_name_the_file() {
        let e = read_limited("blob", Path::new("/nonexistent/op.json"), 10).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("cannot read blob file /nonexistent/op.json: "));
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 100]).unwrap();
        // One byte past the limit is enough for the verifier to refuse by length.
        assert_eq!(read_limited("blob", &big, 10).unwrap().len(), 11);
    }
}

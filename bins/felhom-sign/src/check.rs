//! `felhom-sign check`: the agent's own verifier (felhom-authz), as a dry run against a
//! signers file. Nothing is recorded: this tool keeps no nonce store.

use std::fmt::Write as _;
use std::path::Path;

use felhom_authz::{
    check_signers, AuthzError, MemoryNonceStore, Role, Signer, VerifiedOp, Verifier,
};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::SignError;

/// The signers to check against, and the host they belong to when the file says.
#[derive(Debug)]
pub struct SignersFile {
    /// The pinned signers.
    pub signers: Vec<Signer>,
    /// `hub.host_id` when the file is an agent config.
    pub host_id: Option<String>,
}

#[derive(Deserialize)]
struct Entry {
    key_id: String,
    role: String,
    public_key: String,
}

/// Reads a signers file: a JSON list of `{key_id, role, public_key}` (the agent config's
/// `authz.signers`), a JSON object holding such a list as `signers` or `authz.signers` (an
/// agent config: its `hub.host_id` is kept too), or `authorized_keys` lines (each an
/// `operational` signer named by its comment, or `line-N` without one).
pub fn parse_signers(path: &Path, text: &str) -> Result<SignersFile, SignError> {
    let bad = |problem: String| SignError::Signers {
        path: path.to_owned(),
        problem,
    };
    let trimmed = text.trim_start();
    let (entries, host_id): (Vec<Entry>, Option<String>) = if trimmed.starts_with('[') {
        let list = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        (list, None)
    } else if trimmed.starts_with('{') {
        let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let list = doc
            .get("signers")
            .or_else(|| doc.pointer("/authz/signers"))
            .ok_or_else(|| bad("a JSON object without signers or authz.signers".to_owned()))?;
        let list = serde_json::from_value(list.clone()).map_err(|e| bad(e.to_string()))?;
        let host = doc
            .pointer("/hub/host_id")
            .and_then(|h| h.as_str())
            .map(str::to_owned);
        (list, host)
    } else {
        let signers = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|(i, line)| {
                let name = comment(line).unwrap_or_else(|| format!("line-{}", i + 1));
                Signer::from_authorized_key(&name, Role::Operational, line)
                    .map_err(|e| bad(format!("line {}: {e}", i + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return finish(signers, None, &bad);
    };
    let signers = entries
        .iter()
        .map(|e| {
            let role = e
                .role
                .parse()
                .map_err(|e: felhom_authz::SignerError| bad(e.to_string()))?;
            Signer::from_authorized_key(&e.key_id, role, &e.public_key)
                .map_err(|e| bad(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    finish(signers, host_id, &bad)
}

fn finish(
    signers: Vec<Signer>,
    host_id: Option<String>,
    bad: &dyn Fn(String) -> SignError,
) -> Result<SignersFile, SignError> {
    if signers.is_empty() {
        return Err(bad("no signers in it".to_owned()));
    }
    check_signers(&signers).map_err(|e| bad(e.to_string()))?;
    Ok(SignersFile { signers, host_id })
}

/// The comment of an authorized_keys line: what follows the base64 key data.
fn comment(line: &str) -> Option<String> {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    let at = fields
        .iter()
        .position(|f| f.starts_with("ssh-") || f.starts_with("ecdsa-") || f.starts_with("sk-"))?;
    let rest = fields.get(at + 2..)?;
    (!rest.is_empty()).then(|| rest.join(" "))
}

/// The verdict of the dry run.
#[derive(Debug)]
pub enum Verdict {
    /// Every stage passed at the given time.
    Accepted(Box<VerifiedOp>),
    /// A stage refused it.
    Refused(AuthzError),
}

/// Runs every verifier stage over the raw bytes for `host` at `at`, recording nothing.
pub fn check(
    signers: Vec<Signer>,
    host: &str,
    blob: &[u8],
    sig: &[u8],
    at: OffsetDateTime,
) -> Verdict {
    let verifier = Verifier::new(signers, MemoryNonceStore::new(), host);
    match verifier.check(blob, sig, at) {
        Ok(op) => Verdict::Accepted(Box::new(op)),
        Err(e) => Verdict::Refused(e),
    }
}

/// The name of the stage that refused, as the typed error's variant is called (the same
/// names `felhom-agent verify-op` prints).
pub fn reason_name(e: &AuthzError) -> &'static str {
    e.stage()
}

/// What `check` prints for `verdict`, evaluated at `at`; `host_note` says where the host id
/// came from.
pub fn render(verdict: &Verdict, at: OffsetDateTime, host_note: &str) -> String {
    let mut out = String::new();
    match verdict {
        Verdict::Accepted(op) => {
            let _ = writeln!(out, "{}", op.describe(at));
            let _ = writeln!(out, "  nonce   {}", op.nonce);
            let _ = writeln!(out, "  host    {host_note}");
            let _ = writeln!(
                out,
                "dry run: nothing recorded; the host still refuses a nonce it has already used"
            );
        }
        Verdict::Refused(e) => {
            let _ = writeln!(out, "refused ({}): {e}", reason_name(e));
            let _ = writeln!(out, "  host    {host_note}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOl/wZTeCHOT+sJ3VKcGxH4CJmOm6gEMP3R8Oz+sV4ad";

    #[test]
    fn signers_files_in_every_accepted_shape() {
        let p = Path::new("signers");
        let list = format!(r#"[{{"key_id":"ops-anna","role":"recovery","public_key":"{KEY}"}}]"#);
        let f = parse_signers(p, &list).unwrap();
        assert_eq!(f.signers[0].key_id, "ops-anna");
        assert_eq!(f.signers[0].role, Role::Recovery);
        assert_eq!(f.host_id, None);

        let config = format!(r#"{{"hub":{{"host_id":"pve-07"}},"authz":{{"signers":{list}}}}}"#);
        let f = parse_signers(p, &config).unwrap();
        assert_eq!(f.host_id.as_deref(), Some("pve-07"));
        assert_eq!(f.signers.len(), 1);

        let keys = format!("# ops\n{KEY} anna@laptop\n\nno-pty {KEY}\n");
        let e = parse_signers(p, &keys).unwrap_err();
        assert!(e.to_string().contains("pin the same key"), "{e}");
        let f = parse_signers(p, &format!("{KEY} anna@laptop\n")).unwrap();
        assert_eq!(f.signers[0].key_id, "anna@laptop");
        assert_eq!(f.signers[0].role, Role::Operational);
        let f = parse_signers(p, &format!("{KEY}\n")).unwrap();
        assert_eq!(f.signers[0].key_id, "line-1");

        let e = parse_signers(p, "[]").unwrap_err();
        assert_eq!(e.to_string(), "signers file signers: no signers in it");
        let e = parse_signers(p, "ssh-ed25519 nope x\n").unwrap_err();
        assert!(
            e.to_string().starts_with("signers file signers: line 1: "),
            "{e}"
        );
        let e = parse_signers(
            p,
            &format!(r#"[{{"key_id":"a","role":"admin","public_key":"{KEY}"}}]"#),
        )
        .unwrap_err();
        assert!(e.to_string().contains("role \"admin\" is unknown"), "{e}");
    }
}

//! `felhom-sign new`: from command-line intent to a canonical [`OpBlob`]. Pure but for the
//! nonce, which the caller draws ([`fresh_nonce`]) and passes in with the current time.

use std::collections::BTreeMap;
use std::path::Path;

use felhom_authz::DEFAULT_MAX_WINDOW;
use felhom_hub_proto::{OpBlob, OpKind, OpTarget, ParamKind, ParamValue, Timestamp};

use crate::SignError;

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct NewOp {
    /// The op.
    pub op: OpKind,
    /// The target host's id (the agent's `hub.host_id`).
    pub host: String,
    /// The guest, for a guest op.
    pub guest: Option<u32>,
    /// `--param NAME=VALUE`, in order.
    pub params: Vec<String>,
    /// The signer's name.
    pub key_id: String,
    /// The window's length in seconds.
    pub valid_secs: u64,
    /// The window's start; `None`: now.
    pub not_before: Option<Timestamp>,
}

/// A fresh 128-bit nonce from the operating system's CSPRNG, as 32 lowercase hex digits.
pub fn fresh_nonce() -> Result<String, SignError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| SignError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Builds and validates the blob. `params_json` is the `--params-json` file's path and
/// contents; `now` is Unix seconds.
pub fn compose(
    req: &NewOp,
    params_json: Option<(&Path, &[u8])>,
    nonce: String,
    now: i64,
) -> Result<OpBlob, SignError> {
    let op = req.op;
    match (op.target(), req.guest) {
        (OpTarget::Guest, None) => return Err(SignError::GuestRequired { op }),
        (OpTarget::Host, Some(_)) => return Err(SignError::GuestNotTaken { op }),
        _ => {}
    }

    let mut params: BTreeMap<String, ParamValue> = BTreeMap::new();
    if let Some((path, bytes)) = params_json {
        let bad = |problem: String| SignError::ParamsJson {
            path: path.to_owned(),
            problem,
        };
        let object: BTreeMap<String, serde_json::Value> = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("not a JSON object of params: {e}")))?;
        for (name, value) in object {
            if op.param(&name).is_none() {
                return Err(SignError::ParamNotTaken { op, name });
            }
            // The type against the catalogue is checked by `OpBlob::validate` below.
            let value: ParamValue =
                serde_json::from_value(value).map_err(|e| bad(format!("{name}: {e}")))?;
            params.insert(name, value);
        }
    }
    for arg in &req.params {
        let (name, value) = arg.split_once('=').ok_or_else(|| SignError::ParamSyntax {
            arg: arg.chars().take(80).collect(),
        })?;
        let spec = op.param(name).ok_or_else(|| SignError::ParamNotTaken {
            op,
            name: name.to_owned(),
        })?;
        let value = match spec.kind {
            ParamKind::String => ParamValue::String(value.to_owned()),
            ParamKind::Bool => match value {
                "true" => ParamValue::Bool(true),
                "false" => ParamValue::Bool(false),
                _ => {
                    return Err(SignError::ParamValue {
                        name: name.to_owned(),
                        value: value.to_owned(),
                        expected: "true or false",
                    })
                }
            },
            ParamKind::Signers => {
                return Err(SignError::ParamValue {
                    name: name.to_owned(),
                    value: value.chars().take(40).collect(),
                    expected: "a list: give it in --params-json FILE as \
                               {\"signers\": [{\"key_id\", \"role\", \"public_key\"}, ...]}",
                })
            }
        };
        if params.insert(name.to_owned(), value).is_some() {
            return Err(SignError::ParamTwice {
                name: name.to_owned(),
            });
        }
    }

    let (not_before, not_after) = window(req.valid_secs, req.not_before.as_ref(), now)?;
    let blob = OpBlob {
        op,
        host_id: req.host.clone(),
        guest_id: req.guest,
        params,
        nonce,
        not_before,
        not_after,
        key_id: req.key_id.clone(),
    };
    blob.validate()?;
    Ok(blob)
}

/// The window `[not_before, not_before + valid]`, whole UTC seconds; `not_before` defaults to
/// `now`. Refuses what the agent would refuse: an empty window, one longer than its maximum,
/// and one that has already ended.
pub fn window(
    valid_secs: u64,
    not_before: Option<&Timestamp>,
    now: i64,
) -> Result<(Timestamp, Timestamp), SignError> {
    if valid_secs == 0 {
        return Err(SignError::WindowEmpty);
    }
    let max_secs = DEFAULT_MAX_WINDOW.as_secs();
    if valid_secs > max_secs {
        return Err(SignError::WindowTooLong {
            valid_secs,
            max_secs,
        });
    }
    let start = match not_before {
        Some(t) if t.as_str().len() != 20 => {
            return Err(SignError::Time {
                flag: "--not-before",
                problem: format!(
                    "{t} has a fraction: give whole seconds, like 2026-11-23T10:00:00Z"
                ),
            })
        }
        Some(t) => t.unix_seconds(),
        None => now,
    };
    let start = u64::try_from(start).map_err(|_| SignError::Time {
        flag: "--not-before",
        problem: "before 1970".to_owned(),
    })?;
    let end = start + valid_secs;
    let now_u = u64::try_from(now).unwrap_or(0);
    if end <= now_u {
        return Err(SignError::AlreadyExpired {
            not_before: Timestamp::from_unix_seconds(start).to_string(),
            not_after: Timestamp::from_unix_seconds(end).to_string(),
            now: Timestamp::from_unix_seconds(now_u).to_string(),
        });
    }
    Ok((
        Timestamp::from_unix_seconds(start),
        Timestamp::from_unix_seconds(end),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-23T10:00:00Z
    const NOW: i64 = 1_795_428_000;

    fn req(op: OpKind, guest: Option<u32>, params: &[&str]) -> NewOp {
        NewOp {
            op,
            host: "pve-01".into(),
            guest,
            params: params.iter().map(|s| (*s).to_owned()).collect(),
            key_id: "ops-anna".into(),
            valid_secs: 900,
            not_before: None,
        }
    }

    #[test]
    fn a_destroy_is_the_spec_example_shape() {
        let b = compose(
            &req(OpKind::DestroyGuest, Some(105), &[]),
            None,
            "3f9c".into(),
            NOW,
        )
        .unwrap();
        assert_eq!(
            b.to_canonical_json(),
            r#"{"op":"destroy_guest","host_id":"pve-01","guest_id":105,"params":{},"nonce":"3f9c","not_before":"2026-11-23T10:00:00Z","not_after":"2026-11-23T10:15:00Z","key_id":"ops-anna"}"#
        );
    }

    #[test]
    fn params_are_typed_by_the_catalogue() {
        let b = compose(
            &req(
                OpKind::Rollback,
                Some(105),
                &["start=true", "snapname=pre-upgrade"],
            ),
            None,
            "n".into(),
            NOW,
        )
        .unwrap();
        assert!(b
            .to_canonical_json()
            .contains(r#""params":{"snapname":"pre-upgrade","start":true}"#));

        let e = compose(
            &req(OpKind::Rollback, Some(105), &["start=yes", "snapname=x"]),
            None,
            "n".into(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--param start=\"yes\": start is true or false"
        );
        let e = compose(
            &req(OpKind::DestroyGuest, Some(105), &["purge=1"]),
            None,
            "n".into(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "destroy_guest does not take the param \"purge\" (it takes: no params)"
        );
        let e = compose(
            &req(OpKind::Rollback, Some(105), &["snapname=a", "snapname=b"]),
            None,
            "n".into(),
            NOW,
        )
        .unwrap_err();
        assert!(matches!(e, SignError::ParamTwice { .. }), "{e}");
        let e = compose(
            &req(OpKind::Rollback, Some(105), &["snapname"]),
            None,
            "n".into(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "--param \"snapname\" is not NAME=VALUE");
        let e = compose(
            &req(OpKind::Rollback, Some(105), &["snapname=a"]),
            None,
            "n".into(),
            NOW,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("rollback needs the param \"start\""),
            "{e}"
        );
    }

    #[test]
    fn rotate_signers_takes_its_list_from_params_json() {
        let json = br#"{"signers":[{"key_id":"ops-bela","role":"recovery","public_key":"ssh-ed25519 AAAA bela"}]}"#;
        let b = compose(
            &req(OpKind::RotateSigners, None, &[]),
            Some((Path::new("p.json"), json)),
            "n".into(),
            NOW,
        )
        .unwrap();
        assert!(b.to_canonical_json().contains(
            r#""guest_id":null,"params":{"signers":[{"key_id":"ops-bela","public_key":"ssh-ed25519 AAAA bela","role":"recovery"}]}"#
        ));
        let e = compose(
            &req(OpKind::RotateSigners, None, &["signers=x"]),
            None,
            "n".into(),
            NOW,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("give it in --params-json FILE"),
            "{e}"
        );
        let e = compose(
            &req(OpKind::RotateSigners, Some(105), &[]),
            Some((Path::new("p.json"), json)),
            "n".into(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "rotate_signers acts on the host, not on a guest: drop --guest"
        );
        let e = compose(
            &req(OpKind::RotateSigners, None, &[]),
            Some((Path::new("p.json"), b"[1]")),
            "n".into(),
            NOW,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--params-json p.json: not a JSON object"),
            "{e}"
        );
    }

    #[test]
    fn the_window_is_what_the_agent_accepts() {
        let e = compose(&req(OpKind::DestroyGuest, None, &[]), None, "n".into(), NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "destroy_guest acts on a guest: pass --guest VMID"
        );

        let (nb, na) = window(900, None, NOW).unwrap();
        assert_eq!(
            (nb.as_str(), na.as_str()),
            ("2026-11-23T10:00:00Z", "2026-11-23T10:15:00Z")
        );
        // Exactly the agent's maximum is fine; one second more is not.
        assert!(window(7 * 86_400, None, NOW).is_ok());
        let e = window(7 * 86_400 + 1, None, NOW).unwrap_err();
        assert!(
            e.to_string()
                .contains("longer than the agent accepts (at most 604800s = 7 days)"),
            "{e}"
        );
        assert!(matches!(window(0, None, NOW), Err(SignError::WindowEmpty)));

        // A past start is fine while the window still runs; once it ended, refused.
        let past = Timestamp::parse("2026-11-23T09:50:00Z").unwrap();
        assert!(window(900, Some(&past), NOW).is_ok());
        let e = window(600, Some(&past), NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the window 2026-11-23T09:50:00Z .. 2026-11-23T10:00:00Z has already ended \
             (now 2026-11-23T10:00:00Z): pick a later --not-before or a longer --valid"
        );
        let frac = Timestamp::parse("2026-11-23T10:00:00.5Z").unwrap();
        assert!(window(900, Some(&frac), NOW)
            .unwrap_err()
            .to_string()
            .contains("fraction"));
    }

    #[test]
    fn nonces_are_128_random_bits_in_hex() {
        let a = fresh_nonce().unwrap();
        let b = fresh_nonce().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}

//! `felhom-agent verify-op` against the committed ssh-keygen vectors (testdata/sshsig): every
//! key type is accepted when pinned, every mutation refused with its typed reason and exit 1.

use std::path::{Path, PathBuf};

use felhom_testkit::config;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::support::{run, workspace_file};

/// Inside every valid vector's window (10:00..10:15Z).
const AT: &str = "2026-11-23T10:05:00Z";
/// The valid vectors, by key.
const VALID: [(&str, &[&str]); 6] = [
    ("ed25519", &["ed25519-sha256", "ed25519-sha512"]),
    ("rsa2048", &["rsa2048-sha256", "rsa2048-sha512"]),
    ("rsa4096", &["rsa4096-sha256", "rsa4096-sha512"]),
    ("ecdsa256", &["ecdsa256-sha256", "ecdsa256-sha512"]),
    ("ecdsa384", &["ecdsa384-sha256", "ecdsa384-sha512"]),
    // FIDO sk-ecdsa, minted by `cargo xtask vectors` (checked there with ssh-keygen).
    ("sk-ecdsa256", &["sk-ecdsa256-sha512"]),
];
const ECDSA521: (&str, &[&str]) = ("ecdsa521", &["ecdsa521-sha256", "ecdsa521-sha512"]);

fn vector(name: &str) -> PathBuf {
    workspace_file(&format!("testdata/sshsig/{name}"))
}

fn pub_key(key: &str) -> String {
    std::fs::read_to_string(vector(&format!("{key}.pub")))
        .expect("vector key")
        .trim()
        .to_owned()
}

/// A daemon config whose hub host is `pve-01`, pinning `keys` as `ops-KEY`, with the nonce
/// store in `dir`.
fn config(dir: &Path, keys: &[&str]) -> PathBuf {
    let named: Vec<(String, &str)> = keys.iter().map(|k| (format!("ops-{k}"), *k)).collect();
    config_named(dir, &named)
}

/// As [`config`], pinning each `(key_id, key)`.
fn config_named(dir: &Path, keys: &[(String, &str)]) -> PathBuf {
    let signers: Vec<Value> = keys
        .iter()
        .map(|(id, k)| json!({ "key_id": id, "role": "operational", "public_key": pub_key(k) }))
        .collect();
    let doc = json!({
        "proxmox": config::example_proxmox_section("00000000-0000-4000-8000-000000000000"),
        "hub": config::example_hub_section("hub-key-abcdefghijklmnop"),
        "authz": { "nonce_store": dir.join("nonces.log"), "signers": signers }
    });
    let path = dir.join("agent.json");
    config::write_json(&path, &doc).unwrap();
    path
}

async fn verify(config: &Path, blob: &Path, sig: &Path, at: &str) -> (i32, String, String) {
    run(&[
        "--config",
        config.to_str().unwrap(),
        "verify-op",
        "--blob",
        blob.to_str().unwrap(),
        "--sig",
        sig.to_str().unwrap(),
        "--at",
        at,
    ])
    .await
}

async fn verify_vector(config: &Path, name: &str, at: &str) -> (i32, String, String) {
    verify(
        config,
        &vector(&format!("{name}.json")),
        &vector(&format!("{name}.sig")),
        at,
    )
    .await
}

#[tokio::test]
async fn every_key_type_is_accepted_when_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<&str> = VALID.iter().chain([&ECDSA521]).map(|(k, _)| *k).collect();
    let cfg = config(dir.path(), &keys);
    for (key, names) in VALID.iter().chain([&ECDSA521]) {
        for name in *names {
            let (code, out, err) = verify_vector(&cfg, name, AT).await;
            assert_eq!(code, 0, "{name}: {out}{err}");
            let blob: Value =
                serde_json::from_slice(&std::fs::read(vector(&format!("{name}.json"))).unwrap())
                    .unwrap();
            let first = out.lines().next().unwrap_or_default();
            assert!(first.starts_with("accepted: "), "{name}: {out}");
            assert!(
                first.contains(blob["op"].as_str().unwrap()),
                "{name}: {out}"
            );
            assert!(first.ends_with("host pve-01"), "{name}: {out}");
            assert!(
                out.contains(&format!("signer  ops-{key} (operational, ")),
                "{out}"
            );
            assert!(
                out.contains(&format!("nonce   vector-{name}-0001 (not used yet)")),
                "{out}"
            );
            assert!(out.contains("evaluated at 2026-11-23T10:05:00Z"), "{out}");
            assert!(
                out.contains(&format!(
                    "key_id  \"ops-{key}\" in the blob (matches the signer)"
                )),
                "{out}"
            );
            assert!(!out.contains("MISMATCH"), "{out}");
            assert!(out.contains("dry run: nothing was executed"), "{out}");
        }
    }
    // A dry run records nothing: the store has no file, or an empty one.
    let store = dir.path().join("nonces.log");
    assert!(!store.exists() || std::fs::metadata(&store).unwrap().len() == 0);
}

#[tokio::test]
async fn each_mutation_is_refused_with_its_typed_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &["ed25519", "rsa2048"]);

    // Tampered blob: one byte of the signed bytes changed (guest 105 → 106).
    let blob = std::fs::read_to_string(vector("ed25519-sha512.json")).unwrap();
    let tampered = dir.path().join("tampered.json");
    std::fs::write(
        &tampered,
        blob.replace("\"guest_id\":105", "\"guest_id\":106"),
    )
    .unwrap();
    assert_ne!(std::fs::read_to_string(&tampered).unwrap(), blob);
    let (code, out, _) = verify(&cfg, &tampered, &vector("ed25519-sha512.sig"), AT).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("refused (BadSignature): "), "{out}");

    let cases = [
        ("wrong-host", AT, "refused (Target): "),
        ("wrong-namespace", AT, "refused (Namespace): "),
        // Expired via a later --at: the valid vector, evaluated after its window and the skew.
        (
            "ed25519-sha512",
            "2026-11-23T11:00:00Z",
            "refused (Expired): ",
        ),
        (
            "ed25519-sha512",
            "2026-11-23T09:00:00Z",
            "refused (NotYetValid): ",
        ),
        // Not pinned in this config.
        ("ecdsa256-sha512", AT, "refused (UnknownSigner): "),
        // Weak RSA, not pinned either.
        ("rsa1024-sha512", AT, "refused (UnknownSigner): "),
    ];
    for (name, at, expect) in cases {
        let (code, out, err) = verify_vector(&cfg, name, at).await;
        assert_eq!(code, 1, "{name} at {at}: {out}{err}");
        assert!(out.starts_with(expect), "{name} at {at}: {out}");
    }
    let (code, out, _) = verify_vector(&cfg, "wrong-host", AT).await;
    assert_eq!(code, 1);
    assert!(out.contains("this host is \"pve-01\""), "{out}");
}

#[tokio::test]
async fn a_used_nonce_is_a_replay_even_in_a_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &["ed25519"]);
    {
        // The daemon's store, as it would be after running the op once.
        let store = felhom_authz::FileNonceStore::open(dir.path().join("nonces.log")).unwrap();
        let keep = OffsetDateTime::parse("2026-11-23T10:16:00Z", &Rfc3339).unwrap();
        use felhom_authz::NonceStore as _;
        store.record("vector-ed25519-sha256-0001", keep).unwrap();
    }
    let (code, out, _) = verify_vector(&cfg, "ed25519-sha256", AT).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("refused (Replay): "), "{out}");
    // Another vector's nonce is still unused.
    let (code, out, _) = verify_vector(&cfg, "ed25519-sha512", AT).await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn no_signers_refuses_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[]);
    let (code, out, _) = verify_vector(&cfg, "ed25519-sha512", AT).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("refused (UnknownSigner): "), "{out}");
    assert!(out.contains("authz.signers is empty"), "{out}");
}

#[tokio::test]
async fn unreadable_inputs_and_bad_config_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &["ed25519"]);
    let (code, _, err) = verify(
        &cfg,
        &dir.path().join("missing.json"),
        &vector("ed25519-sha512.sig"),
        AT,
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("cannot read blob file"), "{err}");

    let (code, _, err) = verify(
        &dir.path().join("no-config.json"),
        &vector("ed25519-sha512.json"),
        &vector("ed25519-sha512.sig"),
        AT,
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("no-config.json"), "{err}");

    // A usage error: --at must be RFC 3339.
    let (code, _, _) = verify(
        &cfg,
        &vector("ed25519-sha512.json"),
        &vector("ed25519-sha512.sig"),
        "tomorrow",
    )
    .await;
    assert_eq!(code, 2);

    // Without --at the window is judged now: these vectors are long expired or not yet valid,
    // never accepted.
    let (code, out, _) = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "verify-op",
        "--blob",
        vector("ed25519-sha512.json").to_str().unwrap(),
        "--sig",
        vector("ed25519-sha512.sig").to_str().unwrap(),
    ])
    .await;
    let now = OffsetDateTime::now_utc();
    let window = OffsetDateTime::parse("2026-11-23T10:00:00Z", &Rfc3339).unwrap()
        ..OffsetDateTime::parse("2026-11-23T10:16:00Z", &Rfc3339).unwrap();
    if !window.contains(&now) {
        assert_eq!(code, 1, "{out}");
        assert!(
            out.starts_with("refused (Expired)") || out.starts_with("refused (NotYetValid)"),
            "{out}"
        );
    }
}

#[tokio::test]
async fn a_key_id_naming_another_signer_is_accepted_but_flagged() {
    let dir = tempfile::tempdir().unwrap();
    // The vector's blob says key_id "ops-ed25519"; here that name belongs to the rsa key and
    // the ed25519 key that really signed is pinned as "anna".
    let cfg = config_named(
        dir.path(),
        &[
            ("anna".to_string(), "ed25519"),
            ("ops-ed25519".to_string(), "rsa2048"),
        ],
    );
    let (code, out, err) = verify_vector(&cfg, "ed25519-sha512", AT).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("signer  anna (operational, ssh-ed25519 "),
        "{out}"
    );
    assert!(
        out.contains("key_id  \"ops-ed25519\" in the blob, but signed by \"anna\": MISMATCH"),
        "{out}"
    );
    // And a key_id naming nobody.
    let cfg = config_named(dir.path(), &[("bela".to_string(), "ecdsa256")]);
    let (code, out, _) = verify_vector(&cfg, "ecdsa256-sha512", AT).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("key_id  \"ops-ecdsa256\" in the blob, but signed by \"bela\": MISMATCH"),
        "{out}"
    );
}

async fn verify_expect(config: &Path, case: &str, expect: &str) -> (i32, String, String) {
    let (blob, sig) = (
        vector(&format!("{case}.json")),
        vector(&format!("{case}.sig")),
    );
    run(&[
        "--config",
        config.to_str().unwrap(),
        "verify-op",
        "--blob",
        blob.to_str().unwrap(),
        "--sig",
        sig.to_str().unwrap(),
        "--at",
        AT,
        "--expect",
        expect,
    ])
    .await
}

#[tokio::test]
async fn expect_previews_the_gates_binding_and_role_decision() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &["ed25519"]);
    // the vector signs destroy_guest of guest 105
    let (code, out, _) = verify_expect(&cfg, "ed25519-sha512", "op=destroy_guest,guest=105").await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("accepted: destroy_guest on guest 105"),
        "{out}"
    );
    let (code, out, _) = verify_expect(&cfg, "ed25519-sha512", "op=destroy_guest,guest=106").await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("refused (BindingMismatch)"), "{out}");
    assert!(out.contains("guest_id"), "{out}");
    let (code, out, _) = verify_expect(
        &cfg,
        "ed25519-sha512",
        r#"op=rollback,guest=105,params={"snapname":"a","start":false}"#,
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("refused (BindingMismatch)"), "{out}");
    let (code, out, _) = verify_expect(&cfg, "ed25519-sha512", "op=format_disk,guest=105").await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("refused (NotAnAction)"), "{out}");

    // a recovery key may not destroy: role scope runs too
    let doc = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"operational\"", "\"recovery\"");
    std::fs::write(&cfg, doc).unwrap();
    let (code, out, _) = verify_expect(&cfg, "ed25519-sha512", "op=destroy_guest,guest=105").await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("refused (RoleDenied)"), "{out}");
    // nothing was recorded: the nonce store is untouched
    assert!(
        !dir.path().join("nonces.log").exists()
            || std::fs::metadata(dir.path().join("nonces.log"))
                .unwrap()
                .len()
                == 0
    );
}

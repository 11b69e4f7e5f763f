//! new → show → sign (real ssh-keygen) → check, and the agent's own verify-op on the same files.

use std::path::Path;

use felhom_hub_proto::{OpBlob, OpKind};

use crate::support::*;

/// `felhom-sign new … -o op.json` for guest 105 on pve-01; returns the blob's bytes.
fn new_destroy(dir: &Path) -> Vec<u8> {
    let out = sign(
        dir,
        &[
            "new",
            "--op",
            "destroy_guest",
            "--host",
            HOST_ID,
            "--guest",
            "105",
            "--key-id",
            "ops-anna",
            "-o",
            "op.json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("wrote op.json"), "{}", out.stderr);
    std::fs::read(dir.join("op.json")).unwrap()
}

fn sign_file(dir: &Path, key: &Path, file: &str) {
    let out = sign(dir, &["sign", "-f", key.to_str().unwrap(), file]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.text().trim(), format!("{file}.sig"));
    assert!(
        out.stderr
            .contains("signing: destroy guest 105 on host pve-01")
            || out.stderr.contains("signing: roll guest"),
        "{}",
        out.stderr
    );
}

fn check(dir: &Path, signers: &Path, file: &str, sig: &str, extra: &[&str]) -> crate::support::Out {
    let mut args = vec!["check", "--signers", signers.to_str().unwrap(), file, sig];
    args.extend_from_slice(extra);
    sign(dir, &args)
}

#[test]
#[cfg_attr(
    not(have_ssh_keygen),
    ignore = "ssh-keygen is not on PATH: apt-get install openssh-client, then touch bins/felhom-sign/build.rs"
)]
fn new_sign_check_and_the_agent_accepts_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keypair(d, "anna", "anna@laptop");
    let bytes = new_destroy(d);
    sign_file(d, &key, "op.json");
    let sig_text = std::fs::read_to_string(d.join("op.json.sig")).unwrap();
    assert!(sig_text.starts_with("-----BEGIN SSH SIGNATURE-----"));

    // show: the statement, and the signing key as `ssh-keygen -l` prints it (minus comment).
    let shown = sign(d, &["show", "op.json", "op.json.sig"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let text = shown.text();
    assert!(
        text.starts_with("destroy guest 105 on host pve-01, valid "),
        "{text}"
    );
    assert!(text.contains("(valid now, "), "{text}");
    assert!(text.contains(", key ops-anna"), "{text}");
    let listed = std::process::Command::new("ssh-keygen")
        .args(["-l", "-f"])
        .arg(d.join("anna.pub"))
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    // "256 SHA256:… anna@laptop (ED25519)"
    let expected = listed.trim().replace(" anna@laptop", "");
    assert!(
        text.contains(&format!("signed by {expected}\n")),
        "{text}\nssh-keygen -l: {listed}"
    );
    assert!(
        text.contains("the signature matches these exact bytes"),
        "{text}"
    );

    // check: the agent's verifier accepts, nothing recorded.
    let signers = signers_file(d, "ops-anna", &key);
    let out = check(d, &signers, "op.json", "op.json.sig", &["--host", HOST_ID]);
    assert_eq!(out.code, 0, "{}{}", out.text(), out.stderr);
    let text = out.text();
    assert!(
        text.starts_with("accepted: destroy_guest on guest 105 of host pve-01\n"),
        "{text}"
    );
    assert!(
        text.contains("  signer  ops-anna (operational, ssh-ed25519 SHA256:"),
        "{text}"
    );

    // The agent itself accepts the very same files.
    let config = agent_config(d, "ops-anna", &key);
    let agent = agent_verify(d, &config, &d.join("op.json"), &d.join("op.json.sig"));
    assert_eq!(agent.code, 0, "{}{}", agent.text(), agent.stderr);
    assert!(
        agent
            .text()
            .starts_with("accepted: destroy_guest on guest 105 of host pve-01"),
        "{}",
        agent.text()
    );
    // The agent config doubles as a signers file, its hub.host_id as the host.
    let out = check(d, &config, "op.json", "op.json.sig", &[]);
    assert_eq!(out.code, 0, "{}", out.text());
    assert!(
        out.text().contains("  host    pve-01 (from "),
        "{}",
        out.text()
    );

    // One byte of the blob changed (guest 105 → 106): both refuse, with the typed reason.
    let tampered = String::from_utf8(bytes.clone())
        .unwrap()
        .replace("\"guest_id\":105", "\"guest_id\":106");
    assert_eq!(tampered.len(), bytes.len());
    std::fs::write(d.join("tampered.json"), &tampered).unwrap();
    let out = check(
        d,
        &signers,
        "tampered.json",
        "op.json.sig",
        &["--host", HOST_ID],
    );
    assert_eq!(out.code, 1, "{}", out.text());
    assert!(
        out.text().starts_with("refused (BadSignature): "),
        "{}",
        out.text()
    );
    let agent = agent_verify(d, &config, &d.join("tampered.json"), &d.join("op.json.sig"));
    assert_eq!(agent.code, 1, "{}", agent.text());
    assert!(
        agent.text().starts_with("refused (BadSignature): "),
        "{}",
        agent.text()
    );
    let shown = sign(d, &["show", "tampered.json", "op.json.sig"]);
    assert!(
        shown
            .text()
            .contains("THE SIGNATURE DOES NOT MATCH THIS FILE"),
        "{}",
        shown.text()
    );
}

#[test]
#[cfg_attr(
    not(have_ssh_keygen),
    ignore = "ssh-keygen is not on PATH: apt-get install openssh-client, then touch bins/felhom-sign/build.rs"
)]
fn a_reserialised_blob_is_refused_because_the_raw_bytes_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keypair(d, "anna", "anna@laptop");
    let bytes = new_destroy(d);
    sign_file(d, &key, "op.json");

    // The same JSON value with other whitespace: equal as data, different as bytes.
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    assert_ne!(pretty, bytes);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&pretty).unwrap(),
        value
    );
    std::fs::write(d.join("pretty.json"), &pretty).unwrap();

    let signers = signers_file(d, "ops-anna", &key);
    let out = check(
        d,
        &signers,
        "pretty.json",
        "op.json.sig",
        &["--host", HOST_ID],
    );
    assert_eq!(out.code, 1, "{}", out.text());
    assert!(
        out.text().starts_with("refused (BadSignature): "),
        "{}",
        out.text()
    );
    let config = agent_config(d, "ops-anna", &key);
    let agent = agent_verify(d, &config, &d.join("pretty.json"), &d.join("op.json.sig"));
    assert_eq!(agent.code, 1, "{}", agent.text());
    assert!(
        agent.text().starts_with("refused (BadSignature): "),
        "{}",
        agent.text()
    );
    let shown = sign(d, &["show", "pretty.json"]);
    assert!(
        shown.text().contains("not in canonical form"),
        "{}",
        shown.text()
    );
}

#[test]
fn new_writes_exactly_the_canonical_serialisation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut nonces = Vec::new();
    for _ in 0..2 {
        let out = sign(
            d,
            &[
                "new",
                "--op",
                "rollback",
                "--host",
                HOST_ID,
                "--guest",
                "105",
                "--param",
                "start=true",
                "--param",
                "snapname=pre-upgrade",
                "--key-id",
                "ops-anna",
                "--valid",
                "1h30m",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let blob: OpBlob = serde_json::from_slice(&out.stdout).unwrap();
        // Byte-identical to OpBlob's canonical form: no newline, no whitespace, sorted params.
        assert_eq!(blob.to_canonical_json().as_bytes(), out.stdout.as_slice());
        assert_eq!(blob.op, OpKind::Rollback);
        assert!(out
            .text()
            .contains(r#""params":{"snapname":"pre-upgrade","start":true}"#));
        assert_eq!(
            blob.not_after.unix_seconds() - blob.not_before.unix_seconds(),
            5400
        );
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(
            (blob.not_before.unix_seconds() - now).abs() <= 5,
            "{blob:?}"
        );
        assert_eq!(blob.nonce.len(), 32);
        nonces.push(blob.nonce);
    }
    assert_ne!(nonces[0], nonces[1], "a fresh nonce each time");
}

#[test]
#[cfg_attr(
    not(have_ssh_keygen),
    ignore = "ssh-keygen is not on PATH: apt-get install openssh-client, then touch bins/felhom-sign/build.rs"
)]
fn a_rotation_checks_out_with_authorized_keys_signers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let anna = keypair(d, "anna", "anna@laptop");
    let bela = keypair(d, "bela", "bela@desk");
    // authorized_keys-style: each line an operational signer named by its comment.
    std::fs::write(
        d.join("authorized_keys"),
        format!(
            "# operators\n{}\n{}\n",
            public_line(&anna),
            public_line(&bela)
        ),
    )
    .unwrap();
    let params = serde_json::json!({ "signers": [
        { "key_id": "ops-bela", "role": "operational", "public_key": public_line(&bela) },
    ]});
    std::fs::write(d.join("params.json"), params.to_string()).unwrap();
    let out = sign(
        d,
        &[
            "new",
            "--op",
            "rotate_signers",
            "--host",
            HOST_ID,
            "--params-json",
            "params.json",
            "--key-id",
            "ops-anna",
            "--not-before",
            "2030-01-01T00:00:00Z",
            "--valid",
            "1d",
            "-o",
            "rotate.json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let shown = sign(d, &["show", "rotate.json", "--at", "2029-12-31T23:00:00Z"]);
    let text = shown.text();
    assert!(
        text.starts_with(
            "replace the signer keys host pve-01 trusts with 1 key(s), valid 2030-01-01 00:00 – \
             2030-01-02 00:00 UTC (in 60 min)"
        ),
        "{text}"
    );
    assert!(
        text.contains("ops-bela (operational): ssh-ed25519 SHA256:"),
        "{text}"
    );
    let out = sign(d, &["sign", "-f", anna.to_str().unwrap(), "rotate.json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let keys = d.join("authorized_keys");
    let out = check(
        d,
        &keys,
        "rotate.json",
        "rotate.json.sig",
        &["--at", "2030-01-01T12:00:00Z"],
    );
    assert_eq!(out.code, 0, "{}", out.text());
    assert!(
        out.text()
            .starts_with("accepted: rotate_signers on host pve-01\n"),
        "{}",
        out.text()
    );
    assert!(
        out.text().contains("  signer  anna@laptop (operational, "),
        "{}",
        out.text()
    );
    assert!(
        out.text().contains("(from the blob itself: pass --host"),
        "{}",
        out.text()
    );
    // Evaluated before the window, for another host, or with only bela pinned: refused, typed.
    let out = check(
        d,
        &keys,
        "rotate.json",
        "rotate.json.sig",
        &["--at", "2029-12-31T12:00:00Z"],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.text().starts_with("refused (NotYetValid): "),
        "{}",
        out.text()
    );
    let out = check(
        d,
        &keys,
        "rotate.json",
        "rotate.json.sig",
        &["--at", "2030-01-01T12:00:00Z", "--host", "pve-02"],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.text().starts_with("refused (Target): "),
        "{}",
        out.text()
    );
    let only_bela = signers_file(d, "ops-bela", &bela);
    let out = check(
        d,
        &only_bela,
        "rotate.json",
        "rotate.json.sig",
        &["--at", "2030-01-01T12:00:00Z"],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.text().starts_with("refused (UnknownSigner): "),
        "{}",
        out.text()
    );
}

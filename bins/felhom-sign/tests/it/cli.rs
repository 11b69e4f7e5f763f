//! The refusals the issue names, each a clear message and exit 2, and `--help` everywhere.

use std::path::Path;

use crate::support::*;

fn new(dir: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["new", "--host", HOST_ID, "--key-id", "ops-anna"];
    args.extend_from_slice(extra);
    sign(dir, &args)
}

fn refused(out: &Out, message: &str) {
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.text());
    assert!(
        out.stderr.contains(message),
        "want {message:?} in:\n{}",
        out.stderr
    );
}

#[test]
fn new_refuses_what_the_agent_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    refused(
        &new(d, &["--op", "destroy_vm", "--guest", "105"]),
        "unknown op \"destroy_vm\" (the agent knows: destroy_guest, rollback, delete_snapshot, \
         restore_over, rotate_signers)",
    );
    refused(
        &new(d, &["--op", "destroy_guest"]),
        "felhom-sign: error: destroy_guest acts on a guest: pass --guest VMID",
    );
    refused(
        &new(
            d,
            &[
                "--op",
                "destroy_guest",
                "--guest",
                "105",
                "--param",
                "purge=1",
            ],
        ),
        "destroy_guest does not take the param \"purge\" (it takes: no params)",
    );
    refused(
        &new(
            d,
            &["--op", "rollback", "--guest", "105", "--param", "snap=x"],
        ),
        "rollback does not take the param \"snap\" (it takes: snapname (string), start \
         (true|false))",
    );
    refused(
        &new(
            d,
            &["--op", "destroy_guest", "--guest", "105", "--valid", "8d"],
        ),
        "--valid 691200s is longer than the agent accepts (at most 604800s = 7 days)",
    );
    refused(
        &new(
            d,
            &[
                "--op",
                "destroy_guest",
                "--guest",
                "105",
                "--not-before",
                "2020-01-01T00:00:00Z",
                "--valid",
                "15m",
            ],
        ),
        "the window 2020-01-01T00:00:00Z .. 2020-01-01T00:15:00Z has already ended",
    );
    refused(
        &new(
            d,
            &["--op", "destroy_guest", "--guest", "105", "--valid", "15"],
        ),
        "a number without a unit",
    );
    assert!(!d.join("op.json").exists());
}

#[test]
fn sign_names_a_missing_key_and_a_missing_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = new(
        d,
        &["--op", "destroy_guest", "--guest", "105", "-o", "op.json"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);

    refused(
        &sign(d, &["sign", "-f", "no-such-key", "op.json"]),
        "felhom-sign: error: key file no-such-key does not exist",
    );
    assert!(!d.join("op.json.sig").exists());

    // An existing key file, but no ssh-keygen on PATH.
    std::fs::write(d.join("key"), "unused").unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = run_in(
        Path::new(sign_bin()),
        d,
        &["sign", "-f", "key", "op.json"],
        &[("PATH", empty.path().to_str().unwrap())],
    );
    refused(
        &out,
        "ssh-keygen was not found on PATH (install OpenSSH); to sign by hand run: \
         ssh-keygen -Y sign -n felhom-op-v1 -f key op.json",
    );

    // Not a blob: refused before anything is signed.
    std::fs::write(d.join("junk.json"), "{\"op\":\"destroy_guest\"}").unwrap();
    refused(
        &sign(d, &["sign", "-f", "key", "junk.json"]),
        "junk.json is not a valid op blob: ",
    );
}

#[test]
fn check_and_show_name_unreadable_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    refused(
        &sign(
            d,
            &["check", "--signers", "nope.json", "op.json", "op.json.sig"],
        ),
        "cannot read signers file nope.json: ",
    );
    refused(
        &sign(d, &["show", "nope.json"]),
        "cannot read blob nope.json: ",
    );
    let out = new(
        d,
        &["--op", "destroy_guest", "--guest", "105", "-o", "op.json"],
    );
    assert_eq!(out.code, 0);
    std::fs::write(d.join("bad.sig"), "not a signature").unwrap();
    refused(
        &sign(d, &["show", "op.json", "bad.sig"]),
        "bad.sig is not an SSH signature",
    );
}

#[test]
fn every_subcommand_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for (sub, needle) in [
        ("new", "--params-json"),
        ("show", "ssh-keygen -l"),
        ("sign", "ssh-keygen -Y sign -n felhom-op-v1"),
        (
            "check",
            "Exit 0 accepted, 1 refused, 2 usage or input error",
        ),
    ] {
        let out = sign(dir.path(), &[sub, "--help"]);
        assert_eq!(out.code, 0, "{sub}: {}", out.stderr);
        assert!(out.text().contains(needle), "{sub}:\n{}", out.text());
    }
    let out = sign(dir.path(), &["--help"]);
    assert_eq!(out.code, 0);
    for sub in ["new", "show", "sign", "check"] {
        assert!(out.text().contains(sub));
    }
}

//! FileNonceStore on felhom-journal's log: durable before `Ok`, rebuilt on open, pruned only by
//! expiry with compaction, and failing safe (answers "seen", refuses ops) on any I/O error,
//! injected through felhom-journal's `FaultyFs`.

use std::sync::Arc;

use felhom_authz::{
    AuthzError, FileNonceStore, NonceOutcome, NonceStore, NonceStoreError, ReplayReason, Verifier,
};
use felhom_journal::{FaultyFs, FsCall, RealFs};
use ssh_key::HashAlg;
use time::macros::datetime;
use time::Duration;

use crate::support::*;

const T: time::OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

fn faulty() -> Arc<FaultyFs> {
    Arc::new(FaultyFs::new(RealFs))
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count()
}

#[test]
fn the_nonce_is_fsynced_before_verify_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces.log");
    let fs = faulty();
    let store = FileNonceStore::open_with(&path, fs.clone()).unwrap();
    let key = ed25519_key(1);
    let verifier = Verifier::new(vec![signer_of(&key, "ops")], store, HOST);
    let blob = blob();
    let sig = sign(&key, &blob, HashAlg::Sha512);
    fs.clear_calls();
    let op = verifier.verify(&blob, &sig, NOW).unwrap();
    let calls = fs.calls();
    assert!(
        matches!(
            calls.as_slice(),
            [.., FsCall::WriteAll { .. }, FsCall::SyncData]
        ),
        "{calls:?}"
    );
    assert!(std::fs::read_to_string(&path).unwrap().contains(&op.nonce));
    // A refused op touches no file.
    fs.clear_calls();
    let _ = verifier.verify(&blob, &sig, NOW).unwrap_err();
    let _ = verifier.verify(b"{}", &sig, NOW).unwrap_err();
    assert_eq!(fs.calls(), []);
}

#[test]
fn a_failed_fsync_or_write_fails_safe_and_disables_the_store() {
    for fault in ["sync", "write", "tear"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces.log");
        let fs = faulty();
        let store = FileNonceStore::open_with(&path, fs.clone()).unwrap();
        assert_eq!(store.record("before", T).unwrap(), NonceOutcome::Fresh);
        let key = ed25519_key(1);
        let verifier = Verifier::new(vec![signer_of(&key, "ops")], store, HOST);
        let blob = blob();
        let sig = sign(&key, &blob, HashAlg::Sha512);

        match fault {
            "sync" => fs.fail_sync(true),
            "write" => fs.fail_write(true),
            _ => fs.tear_write(true),
        }
        let err = verifier.verify(&blob, &sig, NOW).unwrap_err();
        assert!(
            matches!(
                &err,
                AuthzError::Replay {
                    reason: ReplayReason::StoreFailed(NonceStoreError::Io {
                        operation: "append",
                        ..
                    }),
                    ..
                }
            ),
            "{fault}: {err}"
        );
        // Fails safe: everything now reads as seen, and nothing is retried or accepted,
        // even once the disk recovers.
        fs.fail_sync(false);
        fs.fail_write(false);
        fs.tear_write(false);
        let store = verifier.nonce_store();
        assert!(store.seen("never-recorded"), "{fault}");
        assert!(matches!(
            store.record("new", T),
            Err(NonceStoreError::Disabled { .. })
        ));
        assert!(matches!(
            store.prune(T),
            Err(NonceStoreError::Disabled { .. })
        ));
        let err = verifier.check(&blob, &sig, NOW).unwrap_err();
        assert!(matches!(err, AuthzError::Replay { .. }), "{fault}: {err}");
        drop(verifier);

        // Reopening re-reads what reached the disk; a torn record is dropped (its op never
        // got Ok), a written-but-unsynced one may survive: either way the op is safe to judge.
        let store = FileNonceStore::open(&path).unwrap();
        assert!(store.seen("before"), "{fault}");
        let verifier = Verifier::new(vec![signer_of(&key, "ops")], store, HOST);
        let again = verifier.verify(&blob, &sig, NOW);
        match fault {
            "sync" => assert!(matches!(
                again,
                Err(AuthzError::Replay {
                    reason: ReplayReason::Seen,
                    ..
                })
            )),
            _ => assert!(again.is_ok(), "{fault}: {again:?}"),
        }
    }
}

#[test]
fn open_failures_are_reported_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces.log");
    let fs = faulty();
    fs.fail_open(true);
    let err = FileNonceStore::open_with(&path, fs).unwrap_err();
    assert!(
        matches!(&err, NonceStoreError::Io { operation: "open", path: p, .. } if p.contains("nonces.log")),
        "{err}"
    );
    let missing_dir = dir.path().join("no-such-dir").join("nonces.log");
    assert!(FileNonceStore::open(missing_dir).is_err());
}

#[test]
fn one_writer_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces.log");
    let first = FileNonceStore::open(&path).unwrap();
    let err = FileNonceStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
    drop(first);
    FileNonceStore::open(&path).unwrap();
}

/// A store with nonces `a`, `b`, `c` recorded, closed; returns the file's lines.
fn three_nonces(path: &std::path::Path) -> Vec<String> {
    let store = FileNonceStore::open(path).unwrap();
    for n in ["a", "b", "c"] {
        store.record(n, T).unwrap();
    }
    drop(store);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The store must refuse everything: every nonce seen, nothing recorded, the file untouched.
fn assert_fails_safe(path: &std::path::Path, line: u64) {
    let before = std::fs::read(path).unwrap();
    let store = FileNonceStore::open(path).expect("a corrupt store opens, disabled");
    assert_eq!(store.corruption(), Some(line));
    assert!(store.is_disabled());
    for n in ["a", "b", "c", "never-used"] {
        assert!(store.seen(n), "{n} must read as seen");
    }
    let err = store.record("c", T).unwrap_err();
    assert!(
        matches!(&err, NonceStoreError::Disabled { first_failure, .. }
            if first_failure.contains(&format!("line {line} is corrupt"))
                && first_failure.contains("journal repair")),
        "{err}"
    );
    assert!(matches!(
        store.record("fresh", T),
        Err(NonceStoreError::Disabled { .. })
    ));
    assert!(matches!(
        store.prune(T + Duration::days(365)),
        Err(NonceStoreError::Disabled { .. })
    ));
    assert!(store.compact().is_err());
    assert_eq!(std::fs::read(path).unwrap(), before, "file untouched");
}

#[test]
fn a_corrupt_record_before_the_last_opens_a_store_that_refuses_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces.log");
    let mut lines = three_nonces(&path);
    lines[1] = lines[1].replace("\"b\"", "\"x\"");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    assert_fails_safe(&path, 2);
}

#[test]
fn a_bit_flip_in_the_last_complete_record_is_corruption_and_its_nonce_stays_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces.log");
    let key = ed25519_key(1);
    let blob = blob();
    let sig = sign(&key, &blob, HashAlg::Sha512);
    {
        let store = FileNonceStore::open(&path).unwrap();
        store.record("a", T).unwrap();
        let verifier = Verifier::new(vec![signer_of(&key, "ops")], store, HOST);
        verifier.verify(&blob, &sig, NOW).unwrap();
    }
    // Flip one bit inside the last record's nonce (its newline intact): that line was
    // acknowledged, so this is damage, not a torn write.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let at = last
        + bytes[last..]
            .windows(9)
            .position(|w| w == b"\"nonce\":\"")
            .unwrap()
        + 10;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let store = FileNonceStore::open(&path).unwrap();
    assert_eq!(store.corruption(), Some(2));
    let verifier = Verifier::new(vec![signer_of(&key, "ops")], store, HOST);
    let err = verifier.verify(&blob, &sig, NOW).unwrap_err();
    assert!(matches!(err, AuthzError::Replay { .. }), "{err}");
    assert!(verifier.check(&blob, &sig, NOW).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing dropped");
    // The read-only snapshot (verify-op) refuses the file too.
    let err = FileNonceStore::snapshot(&path).unwrap_err();
    assert!(err.to_string().contains("line 2 is corrupt"), "{err}");
}

#[test]
fn a_torn_tail_without_newline_or_of_zero_bytes_is_still_repaired() {
    for tail in [
        &b"{\"seq\":4,\"crc\":\"0a"[..],
        &[0u8; 512][..],
        b"{\"seq\":4,\0\0\0\0",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces.log");
        three_nonces(&path);
        let good = std::fs::read(&path).unwrap();
        let mut torn = good.clone();
        torn.extend_from_slice(tail);
        std::fs::write(&path, &torn).unwrap();
        let store = FileNonceStore::open(&path).unwrap();
        assert!(!store.is_disabled() && store.corruption().is_none());
        assert_eq!(store.len(), 3);
        assert!(store.seen("c") && !store.seen("d"));
        assert_eq!(std::fs::read(&path).unwrap(), good, "torn bytes cut off");
        assert_eq!(store.record("d", T).unwrap(), NonceOutcome::Fresh);
        assert_eq!(store.record("c", T).unwrap(), NonceOutcome::Seen);
    }
}

#[test]
fn prune_drops_only_expired_entries_and_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces.log");
    let store = FileNonceStore::open(&path).unwrap();
    store.record("old-1", T).unwrap();
    store
        .record("old-2", T + Duration::milliseconds(1))
        .unwrap(); // rounds up to T + 1s
    store.record("new", T + Duration::hours(1)).unwrap();
    assert_eq!(lines(&path), 3);

    assert_eq!(store.prune(T).unwrap(), 0, "keep_until itself is kept");
    assert_eq!(store.prune(T + Duration::seconds(1)).unwrap(), 1);
    assert!(!store.seen("old-1") && store.seen("old-2") && store.seen("new"));
    // One dead record of three: not worth a rewrite yet.
    assert_eq!(lines(&path), 3);
    assert_eq!(store.prune(T + Duration::minutes(1)).unwrap(), 1);
    assert_eq!(lines(&path), 1, "two of three dead: compacted");
    drop(store);

    let store = FileNonceStore::open(&path).unwrap();
    assert_eq!(store.len(), 1);
    assert!(store.seen("new") && !store.seen("old-2"));
    assert_eq!(store.record("new", T).unwrap(), NonceOutcome::Seen);
    store.compact().unwrap();
    assert_eq!(lines(&path), 1);
}

#[test]
fn a_failed_compaction_keeps_the_old_file_or_disables_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces.log");
    let fs = faulty();
    let store = FileNonceStore::open_with(&path, fs.clone()).unwrap();
    store.record("old", T).unwrap();
    store.record("new", T + Duration::hours(1)).unwrap();

    // A failed rename leaves the old file whole and the store usable.
    fs.fail_rename(true);
    let err = store.prune(T + Duration::minutes(1)).unwrap_err();
    assert!(
        matches!(
            &err,
            NonceStoreError::Io {
                operation: "compact",
                ..
            }
        ),
        "{err}"
    );
    fs.fail_rename(false);
    assert_eq!(
        store.record("another", T + Duration::hours(1)).unwrap(),
        NonceOutcome::Fresh
    );
    assert!(!store.seen("unknown"));

    // A failed fsync during compaction: the log is poisoned, the store fails safe.
    fs.fail_sync(true);
    assert!(store.compact().is_err());
    fs.fail_sync(false);
    assert!(store.seen("unknown"));
    assert!(matches!(
        store.record("x", T),
        Err(NonceStoreError::Disabled { .. })
    ));
    drop(store);
    let store = FileNonceStore::open(&path).unwrap();
    assert!(store.seen("new") && store.seen("another"));
}

#[test]
fn debug_shows_counts_not_contents() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileNonceStore::open(dir.path().join("nonces.log")).unwrap();
    store.record("secret-looking-nonce", T).unwrap();
    let debug = format!("{store:?}");
    assert!(debug.contains("entries: 1"), "{debug}");
    assert!(!debug.contains("secret-looking-nonce"), "{debug}");
}

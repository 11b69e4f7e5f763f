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

#[test]
fn a_corrupt_record_before_the_last_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces.log");
    {
        let store = FileNonceStore::open(&path).unwrap();
        for n in ["a", "b", "c"] {
            store.record(n, T).unwrap();
        }
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[1] = lines[1].replace("\"b\"", "\"x\"");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = FileNonceStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
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

//! The daemon's durable state: the op journal (optional: a journal that cannot open means
//! journal-less mode, loudly, never a crash) and the nonce store behind the verifier.

use std::path::Path;
use std::sync::{Arc, Mutex};

use felhom_authz::{FileNonceStore, Signer, Verifier};
use felhom_journal::ops::{DEFAULT_COMPACT_THRESHOLD_BYTES, DEFAULT_RETENTION_SECS};
use felhom_journal::OpJournal;
use felhom_reconcile::SharedJournal;

/// What the log and `systemctl status` say while the journal is missing.
pub const JOURNAL_LESS: &str = "JOURNAL-LESS MODE";

/// Opens the op journal at `path`; `None` (with a loud error log) when it cannot be opened.
/// Without a journal only convergent benign actions run (the engine enforces it), and crash
/// recovery has nothing to work from.
pub fn open_journal(path: &Path) -> Option<SharedJournal> {
    match OpJournal::open(path) {
        Ok((journal, torn)) => {
            if let Some(torn) = torn {
                tracing::warn!(
                    path = %path.display(),
                    line = torn.line,
                    bytes_dropped = torn.bytes_dropped,
                    reason = %torn.reason,
                    "op journal: dropped a torn last record (a crash interrupted its write)"
                );
            }
            tracing::info!(
                path = %path.display(),
                ops = journal.len(),
                in_flight = journal.in_flight().len(),
                "op journal opened"
            );
            Some(Arc::new(Mutex::new(journal)))
        }
        Err(e) => {
            tracing::error!(
                path = %path.display(),
                error = %e,
                "{JOURNAL_LESS}: the op journal cannot be opened; running without it: only \
                 convergent benign actions (start, stop, config) run, nothing one-shot or signed, \
                 and a crash cannot be recovered from. Fix journal.path and restart"
            );
            None
        }
    }
}

/// Compacts the op journal through the log's atomic rewrite: finished ops older than the
/// retention window are dropped, in-flight ops and applied idempotency keys are kept. `force`
/// compacts whatever the size (at startup); otherwise only past the size threshold, so a host
/// that reconciles for years keeps a bounded file. Blocking file I/O: call it off the async
/// workers. A failure is logged and changes nothing (the journal stays as it was).
pub fn compact_journal(journal: &SharedJournal, now_unix: u64, force: bool) {
    let mut journal = journal.lock().unwrap_or_else(|p| p.into_inner());
    match journal.needs_compaction(DEFAULT_COMPACT_THRESHOLD_BYTES) {
        Ok(false) if !force => return,
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "op journal: cannot read its size; not compacted");
            return;
        }
    }
    match journal.compact_expired(now_unix, DEFAULT_RETENTION_SECS) {
        Ok(c) if c.ops_before != c.ops_after || !force => tracing::info!(
            ops_before = c.ops_before,
            ops_after = c.ops_after,
            bytes_before = c.bytes_before,
            bytes_after = c.bytes_after,
            "op journal compacted"
        ),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "op journal: compaction failed; kept as it was"),
    }
}

/// The verifier for signed ops over the file-backed nonce store; `None` (logged) when the store
/// cannot be opened — then no signed op can be accepted, which fails safe. No signers is a
/// normal state and logged quietly.
pub fn open_verifier(
    nonce_store: &Path,
    signers: Vec<Signer>,
    host_id: &str,
) -> Option<Verifier<FileNonceStore>> {
    let store = match FileNonceStore::open(nonce_store) {
        Ok(store) => store,
        Err(e) => {
            tracing::error!(
                path = %nonce_store.display(),
                error = %e,
                "nonce store cannot be opened: signed ops are refused until it can"
            );
            return None;
        }
    };
    if signers.is_empty() {
        tracing::debug!("no signers configured: signed ops cannot be accepted");
    } else {
        tracing::info!(
            signers = signers.len(),
            nonces = store.len(),
            "signed-op verifier ready"
        );
    }
    Some(Verifier::new(signers, store, host_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_that_cannot_open_is_none() {
        assert!(open_journal(Path::new("/nonexistent-dir/felhom/journal.log")).is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.log");
        let j = open_journal(&path).expect("opens");
        // The file lock refuses a second writer: that is a failure to open too.
        assert!(open_journal(&path).is_none());
        drop(j);
        assert!(open_journal(&path).is_some());
    }

    #[test]
    fn a_nonce_store_that_cannot_open_disables_signed_ops() {
        assert!(open_verifier(Path::new("/nonexistent-dir/n.log"), Vec::new(), "pve-01").is_none());
        let dir = tempfile::tempdir().unwrap();
        let v = open_verifier(&dir.path().join("nonces.log"), Vec::new(), "pve-01").unwrap();
        assert_eq!(v.host_id(), "pve-01");
        assert!(v.signers().is_empty());
    }

    #[test]
    fn startup_compaction_drops_old_finished_ops_and_keeps_in_flight_ops_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.log");
        let day = 24 * 3600;
        let now = 100 * day;
        let shared = open_journal(&path).expect("opens");
        {
            let mut j = shared.lock().unwrap();
            for i in 0..50 {
                let id = j.started(Some(100 + i), "start", None, day).unwrap();
                j.succeeded(&id, day).unwrap();
            }
            let keyed = j
                .started(Some(200), "destroy_guest", Some("nonce-1".into()), day)
                .unwrap();
            j.succeeded(&keyed, day).unwrap();
            j.started(Some(300), "stop", None, day).unwrap(); // in flight
            let recent = j.started(Some(301), "start", None, now - 60).unwrap();
            j.succeeded(&recent, now - 60).unwrap();
        }
        let before = shared.lock().unwrap().file_len().unwrap();

        // Under the size threshold and not forced: nothing happens.
        compact_journal(&shared, now, false);
        assert_eq!(shared.lock().unwrap().file_len().unwrap(), before);

        compact_journal(&shared, now, true);
        let after = shared.lock().unwrap().file_len().unwrap();
        assert!(after < before, "{after} >= {before}");
        drop(shared);

        let reopened = open_journal(&path).expect("reopens");
        let j = reopened.lock().unwrap();
        let in_flight = j.in_flight();
        assert_eq!(in_flight.len(), 1);
        assert_eq!(in_flight[0].vmid, Some(300));
        assert!(
            j.already_applied("nonce-1"),
            "an applied key survives compaction"
        );
        assert_eq!(
            j.len(),
            3,
            "old finished ops dropped; in-flight, keyed and recent kept"
        );
    }
}

//! The daemon's durable state: the op journal (optional: a journal that cannot open means
//! journal-less mode, loudly, never a crash) and the nonce store behind the verifier.

use std::path::Path;
use std::sync::{Arc, Mutex};

use felhom_authz::{FileNonceStore, Signer, Verifier};
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
}

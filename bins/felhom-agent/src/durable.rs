//! The daemon's durable state: the op journal (optional: a journal that cannot open means
//! journal-less mode, loudly, never a crash; one another process holds refuses the start) and
//! the hub's persisted block (see [`crate::block`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

use felhom_journal::ops::{DEFAULT_COMPACT_THRESHOLD_BYTES, DEFAULT_RETENTION_SECS};
use felhom_journal::{FileSystem, JournalError, OpJournal};
use felhom_reconcile::SharedJournal;

/// What the log and `systemctl status` say while the journal is missing.
pub const JOURNAL_LESS: &str = "JOURNAL-LESS MODE";

/// How opening the op journal went.
#[derive(Debug)]
pub enum JournalOpen {
    /// Open and locked by this process.
    Open(SharedJournal),
    /// Another live process holds the journal's lock: most likely a second daemon on the same
    /// config. Running anyway would reconcile twice (issue 10: every start sent twice), so
    /// the daemon refuses to start.
    Held {
        /// The holder's pid, from `/proc/locks`, when it can be found.
        holder: Option<u32>,
    },
    /// The journal truly cannot open (missing directory, corrupt file, I/O): journal-less mode.
    Unavailable {
        /// The error, one line, for the log, `systemctl status` and the host report.
        reason: String,
    },
}

/// Opens the op journal at `path`. A journal that cannot open is logged loudly and degrades to
/// journal-less mode (only convergent benign actions run, the engine enforces it, and crash
/// recovery has nothing to work from); one held by another process is [`JournalOpen::Held`].
pub fn open_journal(path: &Path, fs: Arc<dyn FileSystem>) -> JournalOpen {
    match OpJournal::open_with(path, fs) {
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
            JournalOpen::Open(Arc::new(Mutex::new(journal)))
        }
        Err(JournalError::Locked { .. }) => JournalOpen::Held {
            holder: lock_holder_of(path),
        },
        Err(e) => {
            tracing::error!(
                path = %path.display(),
                error = %e,
                "{JOURNAL_LESS}: the op journal cannot be opened; running without it: only \
                 convergent benign actions (start, stop, config) run, nothing one-shot or signed, \
                 and a crash cannot be recovered from. See what is wrong with `felhom-agent \
                 journal inspect`, fix or move it aside with `felhom-agent journal repair`, and \
                 restart"
            );
            JournalOpen::Unavailable {
                reason: e.to_string(),
            }
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

/// The pid holding the `flock` on `path`, read from `/proc/locks` (Linux); `None` when it
/// cannot be told.
pub fn lock_holder_of(path: &Path) -> Option<u32> {
    // The holder may be compacting right now (its atomic rewrite locks a new inode and renames
    // it over the path): the inode read here can be one lock-free instant old. Look again a
    // few times before saying "unknown".
    (0..5).find_map(|attempt| {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        lock_holder_once(path)
    })
}

fn lock_holder_once(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    lock_holder(&locks, meta.dev(), meta.ino())
}

/// Pure: in `/proc/locks` text, the pid of the lock held on the file `dev`/`ino`. Lines read
/// `1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF`; waiters (`1: -> FLOCK ...`) are not
/// holders.
pub fn lock_holder(proc_locks: &str, dev: u64, ino: u64) -> Option<u32> {
    // glibc's dev_t encoding, as the kernel prints it: major and minor in hex.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let want = format!("{major:02x}:{minor:02x}:{ino}");
    proc_locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") {
            return None;
        }
        // id: kind mode access pid dev:dev:ino start end
        let (pid, file) = (fields.get(4)?, fields.get(5)?);
        (*file == want).then(|| pid.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_that_cannot_open_is_journal_less_and_a_held_one_names_its_holder() {
        let missing = open_journal(
            Path::new("/nonexistent-dir/felhom/journal.log"),
            Arc::new(felhom_journal::RealFs),
        );
        assert!(
            matches!(&missing, JournalOpen::Unavailable { reason } if reason.contains("/nonexistent-dir")),
            "{missing:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.log");
        let j = open_journal(&path, Arc::new(felhom_journal::RealFs));
        assert!(matches!(j, JournalOpen::Open(_)), "{j:?}");
        // The lock refuses a second writer: not "cannot open", but "held by" (this process).
        let held = open_journal(&path, Arc::new(felhom_journal::RealFs));
        assert!(
            matches!(held, JournalOpen::Held { holder: Some(pid) } if pid == std::process::id()),
            "{held:?}"
        );
        drop(j);
        assert!(matches!(
            open_journal(&path, Arc::new(felhom_journal::RealFs)),
            JournalOpen::Open(_)
        ));
    }

    #[test]
    fn proc_locks_lines_name_the_holder() {
        let text = "1: POSIX  ADVISORY  WRITE 99 fd:01:77 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 5555 fd:01:1234 0 EOF\n";
        // dev 0xfd01: major 0xfd, minor 0x01.
        assert_eq!(lock_holder(text, 0xfd01, 1234), Some(4242));
        assert_eq!(lock_holder(text, 0xfd01, 77), Some(99));
        assert_eq!(lock_holder(text, 0xfd02, 1234), None);
        assert_eq!(lock_holder("", 0xfd01, 1234), None);
        assert_eq!(lock_holder("garbage\n1:\n", 0xfd01, 1234), None);
    }

    #[test]
    fn startup_compaction_drops_old_finished_ops_and_keeps_in_flight_ops_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.log");
        let day = 24 * 3600;
        let now = 100 * day;
        let JournalOpen::Open(shared) = open_journal(&path, Arc::new(felhom_journal::RealFs))
        else {
            panic!("the journal opens");
        };
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

        let JournalOpen::Open(reopened) = open_journal(&path, Arc::new(felhom_journal::RealFs))
        else {
            panic!("the journal reopens");
        };
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

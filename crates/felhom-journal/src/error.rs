//! `JournalError`: everything that can go wrong opening, appending to or compacting a `Log`.

use std::io;
use std::path::PathBuf;

/// Errors of the durable log.
///
/// Retry guidance is on each variant. The rule behind it: once a write or an fsync has failed,
/// the kernel's view of the file can no longer be trusted (PostgreSQL's fsync lesson), so the
/// `Log` is poisoned and the only safe "retry" is to drop it and open the file again, which
/// re-reads what actually reached the disk and repairs a torn tail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// An I/O call on the file or its directory failed. `op` names the call (`open`, `create`,
    /// `read`, `write`, `sync_data`, `sync_dir`, `rename`, `truncate`, `lock`).
    ///
    /// Not safe to retry on the same `Log` after `write` or `sync_data`: the record may or may
    /// not be on disk and the log is poisoned. Safe to retry `open` (after fixing the cause).
    #[error("journal {}: {op} failed: {source}", path.display())]
    Io {
        /// The file or directory the call was made on.
        path: PathBuf,
        /// The failing call.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A record before the last one is damaged, out of sequence, or does not decode: the file
    /// is refused rather than guessed at. Not retryable: a human must look at the file.
    #[error("journal {}: line {line} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// 1-based line number of the first bad record.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// Another writer (process or `Log` in this process) holds the file's exclusive lock, or
    /// replaced the file under us. Safe to retry later, once the other writer is gone.
    #[error("journal {}: locked by another writer", path.display())]
    Locked {
        /// The journal file.
        path: PathBuf,
    },

    /// An earlier write or fsync failed, so this `Log` refuses further changes. Do not retry on
    /// this `Log`: reopen the file, which reports what actually survived.
    #[error("journal {}: poisoned by an earlier failed write or fsync; reopen it", path.display())]
    Poisoned {
        /// The journal file.
        path: PathBuf,
    },

    /// The record could not be serialized; nothing was written and the log is still usable.
    /// Retrying the same record fails the same way.
    #[error("journal {}: cannot encode record: {reason}", path.display())]
    Encode {
        /// The journal file.
        path: PathBuf,
        /// Why the record did not encode.
        reason: String,
    },
}

impl JournalError {
    /// The journal file (or directory) the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            JournalError::Io { path, .. }
            | JournalError::Corrupt { path, .. }
            | JournalError::Locked { path }
            | JournalError::Poisoned { path }
            | JournalError::Encode { path, .. } => path,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        JournalError::Io {
            path: path.into(),
            op,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_name_the_file_and_have_no_trailing_period() {
        let errs = [
            JournalError::io("/x/j.log", "sync_data", io::Error::other("boom")),
            JournalError::Corrupt {
                path: "/x/j.log".into(),
                line: 7,
                reason: "checksum mismatch".into(),
            },
            JournalError::Locked {
                path: "/x/j.log".into(),
            },
            JournalError::Poisoned {
                path: "/x/j.log".into(),
            },
            JournalError::Encode {
                path: "/x/j.log".into(),
                reason: "key must be a string".into(),
            },
        ];
        for e in &errs {
            let msg = e.to_string();
            assert!(msg.starts_with("journal /x/j.log: "), "{msg}");
            assert!(!msg.ends_with('.'), "{msg}");
            assert_eq!(e.path(), std::path::Path::new("/x/j.log"));
        }
        assert!(errs[1].to_string().contains("line 7"));
        assert!(errs[0].to_string().contains("sync_data failed: boom"));
    }
}

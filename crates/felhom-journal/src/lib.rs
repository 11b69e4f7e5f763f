//! felhom-journal: the one durable append-only log of the agent, and the op journal and
//! idempotency store built on it.
//!
//! [`Log<R>`] is a JSON Lines file of checksummed, sequence-numbered records (format in
//! [`codec`]). Every other durable state of the agent (felhom-authz's nonce store, the op
//! journal in [`ops`]) sits on it, so its guarantees are the agent's:
//!
//! * an append is acknowledged only after `sync_data`; the file and its directory are fsync'd on
//!   create, and compaction is write temp → fsync → rename → fsync dir;
//! * one writer per file, enforced by an exclusive lock;
//! * on open, a torn trailing record is dropped, reported and cut off; any other damage refuses
//!   the file and names the line.
//!
//! [`repair`] is the offline side: inspect a damaged file and move it aside keeping every
//! record that can be kept (`felhom-agent journal inspect|repair`).
//!
//! What this crate must never do: acknowledge a record before `sync_data` returned; silently
//! drop a record that is not the torn tail; retry a failed fsync (the log is poisoned instead).
//! It depends on nothing else of ours and does no networking.
//!
//! ```no_run
//! use felhom_journal::{JournalError, Log};
//!
//! # fn main() -> Result<(), JournalError> {
//! let opened = Log::<String>::open("/var/lib/felhom/nonces.log")?;
//! if let Some(torn) = &opened.repaired {
//!     eprintln!("dropped a torn record at line {}", torn.line);
//! }
//! let mut log = opened.log;
//! log.append(&"3f9c".to_owned())?; // on disk when this returns Ok
//! log.compact(&opened.records)?; // atomic rewrite with only what is kept
//! # Ok(())
//! # }
//! ```

pub mod codec;
mod error;
#[cfg(any(test, feature = "test-support"))]
mod faulty;
mod fs;
mod log;
pub mod ops;
pub mod repair;

pub use error::JournalError;
#[cfg(any(test, feature = "test-support"))]
pub use faulty::{FaultyFs, FsCall};
pub use fs::{FileSystem, RealFs};
pub use log::{Log, Opened, TornTail};
pub use ops::{
    Compaction, KeyState, OpEntry, OpError, OpId, OpJournal, OpRecord, OpState,
    DEFAULT_COMPACT_THRESHOLD_BYTES, DEFAULT_RETENTION_SECS,
};

#[cfg(test)]
mod tests {
    #[test]
    fn handles_can_move_between_threads_and_sit_behind_a_mutex() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<crate::Log<String>>();
        send_sync::<crate::OpJournal>();
        send_sync::<crate::FaultyFs>();
        send_sync::<crate::JournalError>();
    }
}

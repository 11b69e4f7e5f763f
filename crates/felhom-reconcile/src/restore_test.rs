//! Restore tests: proving backups restore (issue 16).
//!
//! Each round, for every guest with a backup: its latest container backup ([`plan`]) →
//! skipped (`low_space`) when the scratch storage has less free than twice the backup's size →
//! a free scratch vmid from the reserved range (never one PVE lists, never one outside it) →
//! restore (`POST /nodes/{node}/lxc`, `restore=1`, `unique=1`, `start=0`) journaled as
//! `create_guest` under an op id that is its provenance, `agent scratch, restore test of
//! <vmid> from <volid> into <scratch> at <t>` → every `netN` deleted before it ever starts
//! (read back: none left, or it is not started) → start → until PVE shows it running with a pid
//! and uptime > 0 (bounded by the boot timeout) → stop → **destroy** through the reversibility
//! gate, which allows it unsigned only because the journal proves the agent created that guest
//! (a guest in the range the agent did not create is refused as destructive, pending a
//! signature). Every mutation is a journaled queue job on the scratch vmid.
//!
//! Outcomes: `ok`, `restore_failed`, `boot_failed`, `cleanup_failed` (the destroy failed or was
//! refused: the guest may be left, its vmid stays taken), `interrupted` (found at startup),
//! `skipped`. Results go to a durable bounded [`store`] whose latest-per-guest tail fills the
//! host report's `restore_tests`.
//!
//! Never more than `max_concurrent` tests at once; no test starts while the hub blocks the host
//! or the queue is closed. At startup ([`RestoreTester::recover`], after the op journal's own
//! recovery) a scratch guest whose creation is journaled and whose destroy is not is destroyed
//! (benign by provenance) and its test recorded `interrupted`.

pub mod plan;
pub mod runner;
pub mod store;

pub use plan::{Candidate, Outcome, ScratchPool, TestResult, PROVENANCE_PREFIX};
pub use runner::{
    booted, Blocked, RestoreSettings, RestoreTester, RoundError, RoundSummary, ScratchGate,
    DEFAULT_BOOT_POLL,
};
pub use store::{ResultRecord, ResultStore};

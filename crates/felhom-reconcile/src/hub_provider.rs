//! [`HubProvider`]: desired state served by the hub, cached by generation and persisted.
//!
//! The hub announces a generation in each report's envelope; [`HubProvider::sync`] fetches the
//! body only when that differs from the generation held (no fetch while unchanged), validates
//! it exactly like the desired-state file (the guests go through [`parse_desired`]), persists
//! it and only then serves it. The last good state lives in a one-record felhom-journal `Log`
//! rewritten with its atomic compaction (temp, fsync, rename, fsync dir), so a restart during a
//! hub outage reconciles toward the last known intent, never toward nothing.
//!
//! Generations only grow. A body or an announcement older than the held generation is logged
//! and ignored (the held state stays): a hub restored from an old backup must not roll
//! intent back silently. To start over after a hub reset, stop the agent and delete the file.
//! Any failed or malformed fetch changes nothing.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use felhom_hub_proto::DesiredStateBody;
use felhom_journal::Log;

use crate::desired::{parse_desired, DesiredError, DesiredProvider, DesiredState, ParseError};

/// The file's name, in the op journal's directory.
pub const FILE_NAME: &str = "hub-desired.log";

/// Why a served desired state was not adopted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubIntentError {
    /// The body's generation is 0: the hub serves none, yet answered with a body.
    #[error("hub desired state: generation 0 is not a generation (must be ≥ 1); ignored")]
    ZeroGeneration,
    /// The body is older than what the agent holds.
    #[error(
        "hub desired state: generation {got} is older than the held generation {held}; ignored \
         (generations only grow)"
    )]
    Backwards {
        /// The generation held.
        held: u64,
        /// The generation served.
        got: u64,
    },
    /// The guests break a rule of the desired-state format.
    #[error("hub desired state generation {generation}: {error}; ignored")]
    Invalid {
        /// The generation served.
        generation: u64,
        /// What is wrong, as for the file.
        error: ParseError,
    },
}

/// The persisted state could not be read at startup.
#[derive(Debug, thiserror::Error)]
#[error("hub desired state {}: {detail}", path.display())]
pub struct HubStateFileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub detail: String,
}

/// What one [`HubProvider::sync`] did.
#[derive(Debug)]
pub enum SyncOutcome {
    /// The envelope announces no hub desired state (`0`); nothing fetched, whatever is held
    /// stays.
    NotServed,
    /// The announced generation is the one held: nothing fetched.
    Unchanged {
        /// The generation held.
        generation: u64,
    },
    /// The announced generation is older than the one held: nothing fetched, logged.
    OlderAnnounced {
        /// The generation held.
        held: u64,
        /// The generation announced.
        announced: u64,
    },
    /// Fetched and adopted.
    Updated {
        /// The generation held before (0: none).
        from: u64,
        /// The new generation.
        to: u64,
        /// `Err`: it is served from memory, but persisting it failed (a restart would fall
        /// back to the older persisted state).
        persisted: Result<(), String>,
    },
    /// The fetch failed (transport, status, malformed body): nothing changed.
    FetchFailed {
        /// The error, as text.
        error: String,
    },
    /// The body was fetched but not adopted: nothing changed.
    Refused(HubIntentError),
}

impl SyncOutcome {
    /// Whether a fetch was made.
    pub fn fetched(&self) -> bool {
        matches!(
            self,
            SyncOutcome::Updated { .. } | SyncOutcome::FetchFailed { .. } | SyncOutcome::Refused(_)
        )
    }
}

#[derive(Debug, Default)]
struct Held {
    generation: u64,
    state: Option<DesiredState>,
    /// The last older announcement logged, so a stuck hub is logged once, not every beat.
    older_logged: Option<u64>,
}

/// Desired state from the hub: a [`DesiredProvider`] that serves the last adopted generation.
pub struct HubProvider {
    path: PathBuf,
    held: Mutex<Held>,
    /// `None`: the file could not be opened; the state is kept in memory only.
    log: Arc<Mutex<Option<Log<DesiredStateBody>>>>,
    /// Serialises syncs: two overlapping fetches must not adopt out of order.
    sync_lock: tokio::sync::Mutex<()>,
}

impl fmt::Debug for HubProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubProvider")
            .field("path", &self.path)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl HubProvider {
    /// The file beside `journal_path`.
    pub fn path_beside(journal_path: &Path) -> PathBuf {
        journal_path.with_file_name(FILE_NAME)
    }

    /// Opens (creating) the persisted state at `path` and holds its last record. Blocking
    /// (reads and may repair the file). A file that cannot be opened or whose record is no
    /// longer valid is an error; [`HubProvider::in_memory`] is the caller's fallback.
    pub fn open(path: &Path) -> Result<Self, HubStateFileError> {
        let err = |detail: String| HubStateFileError {
            path: path.to_owned(),
            detail,
        };
        let opened = Log::<DesiredStateBody>::open(path).map_err(|e| err(e.to_string()))?;
        if let Some(torn) = &opened.repaired {
            tracing::warn!(path = %path.display(), line = torn.line, reason = %torn.reason,
                "hub desired state: a torn record was cut off (a crash during a write)");
        }
        let mut held = Held::default();
        if let Some(last) = opened.records.last() {
            let state = to_state(last).map_err(|e| err(e.to_string()))?;
            tracing::info!(path = %path.display(), generation = last.generation,
                guests = state.len(), "hub desired state restored from disk");
            held.generation = last.generation;
            held.state = Some(state);
        }
        Ok(Self {
            path: path.to_owned(),
            held: Mutex::new(held),
            log: Arc::new(Mutex::new(Some(opened.log))),
            sync_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Holds nothing and persists nothing (the file could not be opened).
    pub fn in_memory(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            held: Mutex::default(),
            log: Arc::new(Mutex::new(None)),
            sync_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // Plain data: a panic elsewhere leaves a whole value behind.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The generation held; 0 when none.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Whether any hub desired state is held (otherwise a pass has nothing to do).
    pub fn holds_state(&self) -> bool {
        self.lock().state.is_some()
    }

    /// Brings the held state up to `announced` (the envelope's `desired_generation`): calls
    /// `fetch` only when `announced` is non-zero and newer than what is held, and adopts the
    /// body only when it is valid and not older. Every outcome but `Updated` leaves the held
    /// state as it was.
    pub async fn sync<F, Fut, E>(&self, announced: u64, fetch: F) -> SyncOutcome
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<DesiredStateBody, E>>,
        E: fmt::Display,
    {
        let _one = self.sync_lock.lock().await;
        let held = self.generation();
        if announced == 0 {
            return SyncOutcome::NotServed;
        }
        if announced == held {
            return SyncOutcome::Unchanged { generation: held };
        }
        if announced < held {
            let mut h = self.lock();
            if h.older_logged != Some(announced) {
                h.older_logged = Some(announced);
                tracing::warn!(
                    held,
                    announced,
                    "the hub announces an older desired-state generation: ignored, the held \
                     state stays (generations only grow)"
                );
            }
            return SyncOutcome::OlderAnnounced { held, announced };
        }
        let body = match fetch().await {
            Ok(body) => body,
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(%error, announced,
                    "hub desired state: fetch failed; the held state stays in force");
                return SyncOutcome::FetchFailed { error };
            }
        };
        match self.adopt(body).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(error = %e, "hub desired state refused; the held state stays");
                SyncOutcome::Refused(e)
            }
        }
    }

    async fn adopt(&self, body: DesiredStateBody) -> Result<SyncOutcome, HubIntentError> {
        let held = self.generation();
        if body.generation == 0 {
            return Err(HubIntentError::ZeroGeneration);
        }
        if body.generation < held {
            return Err(HubIntentError::Backwards {
                held,
                got: body.generation,
            });
        }
        if body.generation == held {
            return Ok(SyncOutcome::Unchanged { generation: held });
        }
        let state = to_state(&body)?;
        let generation = body.generation;
        // Durable first, then served: a crash in between leaves the new state on disk, which
        // is what the hub asked for.
        let persisted = self.persist(body).await;
        if let Err(e) = &persisted {
            tracing::error!(error = %e, path = %self.path.display(), generation,
                "hub desired state: persisting failed; served from memory (a restart falls back \
                 to the older persisted generation)");
        }
        let mut h = self.lock();
        h.generation = generation;
        h.state = Some(state);
        h.older_logged = None;
        tracing::info!(from = held, to = generation, "hub desired state adopted");
        Ok(SyncOutcome::Updated {
            from: held,
            to: generation,
            persisted,
        })
    }

    async fn persist(&self, body: DesiredStateBody) -> Result<(), String> {
        let log = Arc::clone(&self.log);
        let done = tokio::task::spawn_blocking(move || {
            let mut guard = log.lock().unwrap_or_else(PoisonError::into_inner);
            match guard.as_mut() {
                Some(log) => log.compact(&[body]).map_err(|e| e.to_string()),
                None => Err("the file could not be opened at startup".to_owned()),
            }
        })
        .await;
        done.unwrap_or_else(|e| Err(format!("the write did not finish: {e}")))
    }
}

/// The body's guests through the desired-state file's own parser: whatever the file accepts,
/// the hub may serve, with the same messages. `present: true` is the default and is dropped.
fn to_state(body: &DesiredStateBody) -> Result<DesiredState, HubIntentError> {
    let guests: Vec<_> = body
        .guests
        .iter()
        .cloned()
        .map(|mut g| {
            if g.present == Some(true) {
                g.present = None;
            }
            g
        })
        .collect();
    let invalid = |error| HubIntentError::Invalid {
        generation: body.generation,
        error,
    };
    let bytes = serde_json::to_vec(&serde_json::json!({ "guests": guests })).map_err(|e| {
        invalid(ParseError::Malformed {
            line: 0,
            column: 0,
            message: e.to_string(),
        })
    })?;
    parse_desired(&bytes).map_err(invalid)
}

impl DesiredProvider for HubProvider {
    /// The held state; with none held yet, nothing is desired (no guest is managed, so no
    /// action is planned).
    fn desired(&self) -> impl Future<Output = Result<DesiredState, DesiredError>> + Send {
        let state = self.lock().state.clone().unwrap_or_default();
        std::future::ready(Ok(state))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use felhom_hub_proto::{DesiredGuestEntry, DesiredRunState, DesiredSpec};

    use super::*;

    fn body(generation: u64, vmid: u64, cores: u64) -> DesiredStateBody {
        DesiredStateBody {
            generation,
            guests: vec![DesiredGuestEntry {
                vmid,
                run_state: Some(DesiredRunState::Running),
                spec: Some(DesiredSpec {
                    cores: Some(cores),
                    ..DesiredSpec::default()
                }),
                present: Some(true),
                ..DesiredGuestEntry::default()
            }],
        }
    }

    fn served(b: DesiredStateBody) -> impl Future<Output = Result<DesiredStateBody, String>> {
        std::future::ready(Ok(b))
    }

    async fn cores(p: &HubProvider, vmid: u32) -> Option<u32> {
        let s = p.desired().await.unwrap();
        s.get(vmid)
            .and_then(|g| g.spec.as_ref())
            .and_then(|s| s.cores)
    }

    #[tokio::test]
    async fn fetches_only_when_the_generation_changes_and_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let p = HubProvider::open(&path).unwrap();
        assert!(!p.holds_state());
        assert!(p.desired().await.unwrap().is_empty());
        let fetches = AtomicUsize::new(0);
        let fetch = |b: DesiredStateBody| {
            fetches.fetch_add(1, Ordering::SeqCst);
            served(b)
        };
        assert!(matches!(
            p.sync(0, || fetch(body(1, 101, 2))).await,
            SyncOutcome::NotServed
        ));
        let out = p.sync(1, || fetch(body(1, 101, 2))).await;
        assert!(
            matches!(
                out,
                SyncOutcome::Updated {
                    from: 0,
                    to: 1,
                    persisted: Ok(())
                }
            ),
            "{out:?}"
        );
        for _ in 0..3 {
            let out = p.sync(1, || fetch(body(1, 101, 9))).await;
            assert!(matches!(out, SyncOutcome::Unchanged { generation: 1 }));
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "no fetch while unchanged"
        );
        p.sync(2, || fetch(body(2, 101, 4))).await;
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        assert_eq!(cores(&p, 101).await, Some(4));
        drop(p);

        // A restart (the hub unreachable): the last good state is served at once.
        let p = HubProvider::open(&path).unwrap();
        assert_eq!(p.generation(), 2);
        assert_eq!(cores(&p, 101).await, Some(4));
        let out = p
            .sync(3, || {
                std::future::ready(Err::<DesiredStateBody, _>("hub is down"))
            })
            .await;
        assert!(matches!(out, SyncOutcome::FetchFailed { .. }), "{out:?}");
        assert_eq!(cores(&p, 101).await, Some(4));
        assert_eq!(p.generation(), 2);
    }

    #[tokio::test]
    async fn backwards_invalid_and_zero_bodies_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let p = HubProvider::open(&path).unwrap();
        p.sync(5, || served(body(5, 101, 2))).await;
        // An older announcement is not even fetched.
        let out = p
            .sync(4, || async {
                panic!("must not fetch");
                #[allow(unreachable_code)]
                Err::<DesiredStateBody, String>(String::new())
            })
            .await;
        assert!(matches!(
            out,
            SyncOutcome::OlderAnnounced {
                held: 5,
                announced: 4
            }
        ));
        // A newer announcement answered with an older body.
        let out = p.sync(6, || served(body(3, 101, 8))).await;
        assert!(
            matches!(
                out,
                SyncOutcome::Refused(HubIntentError::Backwards { held: 5, got: 3 })
            ),
            "{out:?}"
        );
        let out = p.sync(6, || served(body(0, 101, 8))).await;
        assert!(matches!(
            out,
            SyncOutcome::Refused(HubIntentError::ZeroGeneration)
        ));
        // Invalid guests (cores 0, a bad vmid, a duplicate) are refused with the file's message.
        let out = p.sync(6, || served(body(6, 101, 0))).await;
        let SyncOutcome::Refused(e) = out else {
            panic!("{out:?}")
        };
        assert!(e.to_string().contains("generation 6"), "{e}");
        assert!(e.to_string().contains("cores"), "{e}");
        let out = p.sync(6, || served(body(6, 7, 2))).await;
        assert!(matches!(
            out,
            SyncOutcome::Refused(HubIntentError::Invalid { .. })
        ));
        assert_eq!(p.generation(), 5);
        assert_eq!(cores(&p, 101).await, Some(2));
        drop(p);
        let p = HubProvider::open(&path).unwrap();
        assert_eq!((p.generation(), cores(&p, 101).await), (5, Some(2)));
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_opened_is_an_error_and_memory_still_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join(FILE_NAME);
        let e = HubProvider::open(&path).unwrap_err();
        assert!(e.to_string().contains("missing-dir"), "{e}");
        let p = HubProvider::in_memory(&path);
        let out = p.sync(1, || served(body(1, 101, 2))).await;
        assert!(
            matches!(
                out,
                SyncOutcome::Updated {
                    to: 1,
                    persisted: Err(_),
                    ..
                }
            ),
            "{out:?}"
        );
        assert_eq!(cores(&p, 101).await, Some(2));
    }

    #[tokio::test]
    async fn a_corrupt_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "not a journal line\nnor this\n").unwrap();
        let e = HubProvider::open(&path).unwrap_err();
        assert!(e.to_string().contains(FILE_NAME), "{e}");
    }
}

//! The rotated signer set, persisted: `rotate_signers` carries the new set in its signed params
//! (`{"signers": [{"key_id", "role", "public_key"}, …]}`, the same three fields as a configured
//! signer), and the agent writes it to a signers file next to the nonce store before it takes
//! effect.
//!
//! The file is a journal [`Log`] holding exactly one record (the set in force, with the nonce
//! of the op that installed it), replaced by the log's atomic rewrite: temp file → fsync →
//! rename → directory fsync. A crash leaves the old set or the new one, never a mix.
//!
//! At startup a signers file that exists **overrides** `authz.signers` from the config: after
//! a rotation the config's keys may be exactly the ones the operator meant to retire. An
//! unreadable or invalid file is an error the daemon reports and then trusts **no** signer
//! (every destructive action is `no_signers`) — never a silent fallback to the config's set.

use std::path::{Path, PathBuf};

use felhom_authz::{check_signers, Signer, SignerError};
use felhom_journal::{JournalError, Log};

use crate::destructive::SignerSpec;

/// The file name, next to the nonce store.
pub const SIGNERS_FILE: &str = "signers.log";

/// One persisted signer set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignerSet {
    /// The set, as signed.
    pub signers: Vec<SignerSpec>,
    /// The nonce of the `rotate_signers` op that installed it.
    pub nonce: String,
    /// When, in unix seconds.
    pub at: u64,
}

/// The signers file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerStoreError {
    /// Reading or writing the file failed.
    #[error("signers file: {0}")]
    Journal(#[from] JournalError),
    /// The file is damaged beyond a torn tail: trust no signer until an operator repairs it.
    #[error("signers file {path} is damaged (see `felhom-agent journal inspect --path`)")]
    Damaged {
        /// The file.
        path: PathBuf,
    },
    /// The persisted (or proposed) set is not a valid signer set.
    #[error("signers file {path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: SignerError,
    },
}

/// Parses and checks a signer set: every key valid, no key pinned twice, not empty.
pub fn parse_signers(specs: &[SignerSpec]) -> Result<Vec<Signer>, SignerError> {
    let signers = specs
        .iter()
        .map(|s| Signer::from_authorized_key(&s.key_id, s.role, &s.public_key))
        .collect::<Result<Vec<_>, _>>()?;
    check_signers(&signers)?;
    Ok(signers)
}

/// The signers file.
#[derive(Debug)]
pub struct SignerStore {
    log: Log<SignerSet>,
    current: Option<SignerSet>,
}

impl SignerStore {
    /// Opens (creating if absent) the signers file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SignerStoreError> {
        let opened = Log::<SignerSet>::open(path)?;
        if let Some(torn) = &opened.repaired {
            tracing::warn!(
                line = torn.line,
                "signers file: dropped a torn trailing record"
            );
        }
        Ok(Self {
            log: opened.log,
            current: opened.records.into_iter().last(),
        })
    }

    /// Reads the persisted set without opening the file for writing (no lock: works while the
    /// daemon runs; `felhom-agent verify-op`). `Ok(None)` when no rotation ever happened.
    pub fn read(path: impl AsRef<Path>) -> Result<Option<Vec<Signer>>, SignerStoreError> {
        let path = path.as_ref();
        let Some(set) = Self::read_set(path)? else {
            return Ok(None);
        };
        parse_signers(&set.signers)
            .map(Some)
            .map_err(|source| SignerStoreError::Invalid {
                path: path.to_owned(),
                source,
            })
    }

    /// [`read`](Self::read), as the persisted set (its signers unparsed, with the nonce of
    /// the rotation that installed it): startup recovery tells from it whether an interrupted
    /// rotation was persisted.
    pub fn read_set(path: impl AsRef<Path>) -> Result<Option<SignerSet>, SignerStoreError> {
        let path = path.as_ref();
        if !path.exists() {
            return Ok(None);
        }
        let inspection = felhom_journal::repair::inspect::<SignerSet>(path)?;
        if !inspection.opens() {
            return Err(SignerStoreError::Damaged {
                path: path.to_owned(),
            });
        }
        Ok(inspection.before.into_iter().last())
    }

    /// The signers file for the nonce store at `nonce_store` (same directory).
    pub fn path_next_to(nonce_store: &Path) -> PathBuf {
        nonce_store
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(SIGNERS_FILE)
    }

    /// The persisted set, if a rotation ever happened.
    pub fn current(&self) -> Option<&SignerSet> {
        self.current.as_ref()
    }

    /// The persisted set as signers, if there is one; an invalid set is an error (the caller
    /// then trusts no signer).
    pub fn signers(&self) -> Result<Option<Vec<Signer>>, SignerStoreError> {
        match &self.current {
            None => Ok(None),
            Some(set) => {
                parse_signers(&set.signers)
                    .map(Some)
                    .map_err(|source| SignerStoreError::Invalid {
                        path: self.log.path().to_owned(),
                        source,
                    })
            }
        }
    }

    /// Validates and durably installs `set` (atomic rewrite), returning its signers.
    pub fn save(&mut self, set: SignerSet) -> Result<Vec<Signer>, SignerStoreError> {
        let signers = parse_signers(&set.signers).map_err(|source| SignerStoreError::Invalid {
            path: self.log.path().to_owned(),
            source,
        })?;
        self.log.compact(std::slice::from_ref(&set))?;
        self.current = Some(set);
        Ok(signers)
    }
}

//! `Log<R>`: the durable append-only record file (open + replay + tail repair, append, compact).

use std::fmt;
use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, Tail};
use crate::error::JournalError;
use crate::fs::{FileSystem, RealFs};

/// Compaction writes in chunks of about this size, so a big rewrite does not hold the whole
/// file in memory twice.
const COMPACT_CHUNK: usize = 1 << 20;
/// The append buffer is reused between calls; one huge record should not pin its memory.
const KEEP_BUF: usize = 64 << 10;

/// A torn trailing record found, dropped and cut off the file on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// 1-based line number where the torn record started.
    pub line: u64,
    /// Bytes removed from the end of the file.
    pub bytes_dropped: u64,
    /// What was wrong with it.
    pub reason: String,
}

/// What [`Log::open`] returns: the writable log, every record in file order, and the torn tail
/// it repaired, if any (report it: it is the one record a crash interrupted).
#[derive(Debug)]
pub struct Opened<R> {
    /// The log, positioned to append after the last good record.
    pub log: Log<R>,
    /// Every good record, oldest first.
    pub records: Vec<R>,
    /// The torn tail that was cut off, if there was one.
    pub repaired: Option<TornTail>,
}

/// The one durable append-only log: a JSON Lines file of records `R`, each acknowledged only
/// once it is on disk. One writer per file, enforced by an exclusive lock held as long as the
/// `Log` lives. See the [`codec`](crate::codec) module for the line format.
pub struct Log<R> {
    path: PathBuf,
    dir: PathBuf,
    tmp: PathBuf,
    file: File,
    fs: Arc<dyn FileSystem>,
    next_seq: u64,
    buf: Vec<u8>,
    poisoned: bool,
    // `fn() -> R`: the log neither owns nor shares an `R`, so it is Send + Sync whatever R is.
    _records: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Log<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("path", &self.path)
            .field("records", &self.len())
            .field("poisoned", &self.poisoned)
            .field("fs", &self.fs)
            .finish_non_exhaustive()
    }
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn tmp_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".compact-tmp");
    path.with_file_name(name)
}

impl<R: Serialize + DeserializeOwned> Log<R> {
    /// Opens (creating if absent) the log at `path` on the real file system, replays it and
    /// repairs a torn tail. The parent directory must exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Opened<R>, JournalError> {
        Self::open_with(path, Arc::new(RealFs))
    }

    /// [`Log::open`] through the given file system (e.g. a `FaultyFs` in tests).
    pub fn open_with(
        path: impl AsRef<Path>,
        fs: Arc<dyn FileSystem>,
    ) -> Result<Opened<R>, JournalError> {
        let mut records = Vec::new();
        let (log, repaired) = Self::open_visit(path, fs, |r| records.push(r))?;
        Ok(Opened {
            log,
            records,
            repaired,
        })
    }

    /// Like [`Log::open_with`], but hands each record to `visit` instead of collecting them:
    /// the cheap way to build an index (or to replay a big file in a benchmark) without
    /// holding every record at once. Records reach `visit` as they are verified, so on an
    /// error whatever was built from them must be thrown away.
    pub fn open_visit(
        path: impl AsRef<Path>,
        fs: Arc<dyn FileSystem>,
        mut visit: impl FnMut(R),
    ) -> Result<(Log<R>, Option<TornTail>), JournalError> {
        let path = path.as_ref().to_owned();
        let dir = dir_of(&path);
        let (mut file, created) = open_or_create(&*fs, &path)?;

        match fs.try_lock(&file) {
            Ok(true) => {}
            Ok(false) => return Err(JournalError::Locked { path }),
            Err(e) => return Err(JournalError::io(path, "lock", e)),
        }
        // A writer that compacted between our open and our lock replaced the file: what we
        // hold is the old, unlinked inode. That writer is alive, so the file is taken.
        match fs.is_same_file(&file, &path) {
            Ok(true) => {}
            Ok(false) => return Err(JournalError::Locked { path }),
            Err(e) => return Err(JournalError::io(path, "lock", e)),
        }
        let tmp = tmp_of(&path);
        remove_stale_tmp(&*fs, &tmp, &dir);

        let mut buf = Vec::new();
        fs.read_to_end(&mut file, &mut buf)
            .map_err(|e| JournalError::io(&path, "read", e))?;
        // A new file's entry must be durable before any record in it is acknowledged. An
        // existing empty file may be one whose creator crashed before doing that, so it gets
        // the same treatment (a no-op cost once the log holds anything).
        if created || buf.is_empty() {
            fs.sync_data(&file)
                .map_err(|e| JournalError::io(&path, "sync_data", e))?;
            fs.sync_dir(&dir)
                .map_err(|e| JournalError::io(&dir, "sync_dir", e))?;
        }
        let scanned = codec::scan(&buf, |_, line| {
            let rec = serde_json::from_slice::<R>(line.rec)
                .map_err(|e| format!("record does not decode: {e}"))?;
            visit(rec);
            Ok(())
        })
        .map_err(|e| JournalError::Corrupt {
            path: path.clone(),
            line: e.line,
            reason: e.reason,
        })?;
        drop(buf);

        let repaired = match scanned.tail {
            Tail::Clean => None,
            Tail::Torn {
                line,
                bytes,
                reason,
            } => {
                // Cut the torn record off so the next append starts on a clean line; made
                // durable before anything is appended after it.
                fs.truncate(&file, scanned.good_len)
                    .map_err(|e| JournalError::io(&path, "truncate", e))?;
                fs.sync_data(&file)
                    .map_err(|e| JournalError::io(&path, "sync_data", e))?;
                tracing::warn!(
                    path = %path.display(),
                    line,
                    bytes_dropped = bytes,
                    %reason,
                    "journal: dropped a torn trailing record"
                );
                Some(TornTail {
                    line,
                    bytes_dropped: bytes,
                    reason,
                })
            }
        };

        let log = Log {
            path,
            dir,
            tmp,
            file,
            fs,
            next_seq: scanned.records + 1,
            buf: Vec::new(),
            poisoned: false,
            _records: PhantomData,
        };
        Ok((log, repaired))
    }

    /// Appends one record and returns only once it is on disk (`write` then `sync_data`).
    ///
    /// A failed write or fsync poisons the log: the error is returned, the fsync is never
    /// retried, and every later call fails with [`JournalError::Poisoned`]. Reopen the file to
    /// learn what survived.
    pub fn append(&mut self, record: &R) -> Result<(), JournalError> {
        self.check_poisoned()?;
        self.buf.clear();
        if let Err(e) = codec::encode_line(self.next_seq, record, &mut self.buf) {
            return Err(JournalError::Encode {
                path: self.path.clone(),
                reason: e.to_string(),
            });
        }
        if let Err(e) = self.fs.write_all(&mut self.file, &self.buf) {
            self.poisoned = true;
            return Err(JournalError::io(&self.path, "write", e));
        }
        if let Err(e) = self.fs.sync_data(&self.file) {
            self.poisoned = true;
            return Err(JournalError::io(&self.path, "sync_data", e));
        }
        self.next_seq += 1;
        if self.buf.capacity() > KEEP_BUF {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Atomically replaces the file's content with `keep` (renumbered from 1): write a temp
    /// file, fsync it, rename it over the log, fsync the directory.
    ///
    /// A failure before the rename leaves the old file in place and the log usable, except a
    /// failed fsync, which poisons it (fsync failures are never retried). A failure of the
    /// directory fsync after the rename poisons it too: the rename may not be durable.
    pub fn compact(&mut self, keep: &[R]) -> Result<(), JournalError> {
        self.check_poisoned()?;
        let fs = Arc::clone(&self.fs);
        let tmp = self.tmp.clone();

        let _ = fs.remove_file(&tmp);
        let mut file = fs
            .create_new(&tmp)
            .map_err(|e| JournalError::io(&tmp, "create", e))?;
        // Lock before the rename publishes it, so the new file is never unlocked under its
        // real name while this writer lives.
        match fs.try_lock(&file) {
            Ok(true) => {}
            Ok(false) => {
                let _ = fs.remove_file(&tmp);
                return Err(JournalError::Locked { path: tmp });
            }
            Err(e) => {
                let _ = fs.remove_file(&tmp);
                return Err(JournalError::io(tmp, "lock", e));
            }
        }

        let mut chunk = Vec::with_capacity(COMPACT_CHUNK.min(keep.len().saturating_mul(128)));
        for (i, rec) in keep.iter().enumerate() {
            if let Err(e) = codec::encode_line(i as u64 + 1, rec, &mut chunk) {
                let _ = fs.remove_file(&tmp);
                return Err(JournalError::Encode {
                    path: self.path.clone(),
                    reason: e.to_string(),
                });
            }
            if chunk.len() >= COMPACT_CHUNK || i + 1 == keep.len() {
                if let Err(e) = fs.write_all(&mut file, &chunk) {
                    let _ = fs.remove_file(&tmp);
                    return Err(JournalError::io(&tmp, "write", e));
                }
                chunk.clear();
            }
        }
        if let Err(e) = fs.sync_data(&file) {
            self.poisoned = true;
            let _ = fs.remove_file(&tmp);
            return Err(JournalError::io(&tmp, "sync_data", e));
        }
        if let Err(e) = fs.rename(&tmp, &self.path) {
            let _ = fs.remove_file(&tmp);
            return Err(JournalError::io(&self.path, "rename", e));
        }
        // The old inode is unlinked now; its lock goes with the handle.
        self.file = file;
        self.next_seq = keep.len() as u64 + 1;
        if let Err(e) = fs.sync_dir(&self.dir) {
            self.poisoned = true;
            return Err(JournalError::io(&self.dir, "sync_dir", e));
        }
        Ok(())
    }

    fn check_poisoned(&self) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned {
                path: self.path.clone(),
            });
        }
        Ok(())
    }
}

// Accessors need no serde bound (Debug uses them).
impl<R> Log<R> {
    /// The log's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of records in the file.
    pub fn len(&self) -> u64 {
        self.next_seq - 1
    }

    /// Whether the file holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file's current size in bytes (every record plus nothing else: a torn tail was cut
    /// off at open). Cheap: one `fstat` on the open handle, so it follows compaction's rename.
    pub fn file_len(&self) -> Result<u64, JournalError> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| JournalError::io(&self.path, "stat", e))
    }

    /// Whether an earlier failure poisoned the log (every change now fails).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}

fn open_or_create(fs: &dyn FileSystem, path: &Path) -> Result<(File, bool), JournalError> {
    match fs.open(path) {
        Ok(f) => return Ok((f, false)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(JournalError::io(path, "open", e)),
    }
    match fs.create_new(path) {
        Ok(f) => Ok((f, true)),
        // Another process created it between our two calls: open theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => fs
            .open(path)
            .map(|f| (f, false))
            .map_err(|e| JournalError::io(path, "open", e)),
        Err(e) => Err(JournalError::io(path, "create", e)),
    }
}

/// A temp file left by a compaction that crashed before its rename holds nothing the log
/// needs: remove it (best effort; the next compaction replaces it anyway).
fn remove_stale_tmp(fs: &dyn FileSystem, tmp: &Path, dir: &Path) {
    match fs.remove_file(tmp) {
        Ok(()) => {
            tracing::info!(path = %tmp.display(), "journal: removed an unfinished compaction file");
            if let Err(e) = fs.sync_dir(dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "journal: sync_dir after removing a stale temp file failed");
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %tmp.display(), error = %e, "journal: cannot remove a stale compaction file");
        }
    }
}

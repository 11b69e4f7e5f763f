//! `FaultyFs`: a `FileSystem` wrapper that records calls and fails them on demand, so this
//! crate and its dependents prove they handle I/O failures. Test tooling: compiled only for
//! tests and under the `test-support` feature, never in a product build.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::fs::{FileSystem, RealFs};

/// One call seen by [`FaultyFs`], in order, whether or not it was made to fail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsCall {
    /// `open(path)`.
    Open(PathBuf),
    /// `create_new(path)`.
    CreateNew(PathBuf),
    /// `read_to_end`.
    ReadToEnd,
    /// `write_all` of `len` bytes.
    WriteAll {
        /// Bytes asked to be written.
        len: usize,
    },
    /// `sync_data`.
    SyncData,
    /// `sync_dir(dir)`.
    SyncDir(PathBuf),
    /// `rename(from, to)`.
    Rename {
        /// Source path.
        from: PathBuf,
        /// Destination path.
        to: PathBuf,
    },
    /// `remove_file(path)`.
    RemoveFile(PathBuf),
    /// `truncate` to `len`.
    Truncate {
        /// New length.
        len: u64,
    },
    /// `try_lock`.
    TryLock,
    /// `is_same_file(path)`.
    IsSameFile(PathBuf),
}

/// A [`FileSystem`] wrapper that records every call and fails chosen ones on demand.
///
/// Switches take effect for every later call until turned off. An injected failure is an
/// `io::Error` of kind `Other` whose message starts with "injected". Share it as
/// `Arc<FaultyFs>` and hand a clone to `Log::open_with` to flip switches from the test.
#[derive(Debug, Default)]
pub struct FaultyFs<F = RealFs> {
    inner: F,
    fail_write: AtomicBool,
    tear_write: AtomicBool,
    fail_sync: AtomicBool,
    fail_sync_dir: AtomicBool,
    fail_rename: AtomicBool,
    fail_read: AtomicBool,
    fail_open: AtomicBool,
    fail_truncate: AtomicBool,
    calls: Mutex<Vec<FsCall>>,
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

impl<F: FileSystem> FaultyFs<F> {
    /// Wraps `inner` with every switch off.
    pub fn new(inner: F) -> Self {
        FaultyFs {
            inner,
            fail_write: AtomicBool::new(false),
            tear_write: AtomicBool::new(false),
            fail_sync: AtomicBool::new(false),
            fail_sync_dir: AtomicBool::new(false),
            fail_rename: AtomicBool::new(false),
            fail_read: AtomicBool::new(false),
            fail_open: AtomicBool::new(false),
            fail_truncate: AtomicBool::new(false),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// `write_all` fails without writing anything.
    pub fn fail_write(&self, on: bool) {
        self.fail_write.store(on, Ordering::SeqCst);
    }

    /// `write_all` writes the first half of the bytes, then fails: a torn write.
    pub fn tear_write(&self, on: bool) {
        self.tear_write.store(on, Ordering::SeqCst);
    }

    /// `sync_data` fails (after nothing was synced, as far as the caller can know).
    pub fn fail_sync(&self, on: bool) {
        self.fail_sync.store(on, Ordering::SeqCst);
    }

    /// `sync_dir` fails.
    pub fn fail_sync_dir(&self, on: bool) {
        self.fail_sync_dir.store(on, Ordering::SeqCst);
    }

    /// `rename` fails without renaming.
    pub fn fail_rename(&self, on: bool) {
        self.fail_rename.store(on, Ordering::SeqCst);
    }

    /// `read_to_end` fails.
    pub fn fail_read(&self, on: bool) {
        self.fail_read.store(on, Ordering::SeqCst);
    }

    /// `open` and `create_new` fail.
    pub fn fail_open(&self, on: bool) {
        self.fail_open.store(on, Ordering::SeqCst);
    }

    /// `truncate` fails.
    pub fn fail_truncate(&self, on: bool) {
        self.fail_truncate.store(on, Ordering::SeqCst);
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<FsCall> {
        self.lock_calls().clone()
    }

    /// Forgets the calls recorded so far.
    pub fn clear_calls(&self) {
        self.lock_calls().clear();
    }

    fn lock_calls(&self) -> std::sync::MutexGuard<'_, Vec<FsCall>> {
        // A panic while holding the log only loses test bookkeeping; keep going.
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, call: FsCall) {
        self.lock_calls().push(call);
    }

    fn on(flag: &AtomicBool) -> bool {
        flag.load(Ordering::SeqCst)
    }
}

impl<F: FileSystem> FileSystem for FaultyFs<F> {
    fn open(&self, path: &Path) -> io::Result<File> {
        self.record(FsCall::Open(path.to_owned()));
        if Self::on(&self.fail_open) {
            return Err(injected("open"));
        }
        self.inner.open(path)
    }

    fn create_new(&self, path: &Path) -> io::Result<File> {
        self.record(FsCall::CreateNew(path.to_owned()));
        if Self::on(&self.fail_open) {
            return Err(injected("create"));
        }
        self.inner.create_new(path)
    }

    fn read_to_end(&self, file: &mut File, buf: &mut Vec<u8>) -> io::Result<()> {
        self.record(FsCall::ReadToEnd);
        if Self::on(&self.fail_read) {
            return Err(injected("read"));
        }
        self.inner.read_to_end(file, buf)
    }

    fn write_all(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        self.record(FsCall::WriteAll { len: bytes.len() });
        if Self::on(&self.fail_write) {
            return Err(injected("write"));
        }
        if Self::on(&self.tear_write) {
            self.inner.write_all(file, &bytes[..bytes.len() / 2])?;
            return Err(injected("torn write"));
        }
        self.inner.write_all(file, bytes)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        self.record(FsCall::SyncData);
        if Self::on(&self.fail_sync) {
            return Err(injected("sync_data"));
        }
        self.inner.sync_data(file)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.record(FsCall::SyncDir(dir.to_owned()));
        if Self::on(&self.fail_sync_dir) {
            return Err(injected("sync_dir"));
        }
        self.inner.sync_dir(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.record(FsCall::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
        });
        if Self::on(&self.fail_rename) {
            return Err(injected("rename"));
        }
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.record(FsCall::RemoveFile(path.to_owned()));
        self.inner.remove_file(path)
    }

    fn truncate(&self, file: &File, len: u64) -> io::Result<()> {
        self.record(FsCall::Truncate { len });
        if Self::on(&self.fail_truncate) {
            return Err(injected("truncate"));
        }
        self.inner.truncate(file, len)
    }

    fn try_lock(&self, file: &File) -> io::Result<bool> {
        self.record(FsCall::TryLock);
        self.inner.try_lock(file)
    }

    fn is_same_file(&self, file: &File, path: &Path) -> io::Result<bool> {
        self.record(FsCall::IsSameFile(path.to_owned()));
        self.inner.is_same_file(file, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faulty_fs_records_calls_and_injects_failures() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let fs = FaultyFs::new(RealFs);
        let mut f = fs.create_new(&p).unwrap();
        fs.write_all(&mut f, b"abcd").unwrap();
        fs.fail_sync(true);
        let e = fs.sync_data(&f).unwrap_err();
        assert!(e.to_string().starts_with("injected"));
        fs.tear_write(true);
        assert!(fs.write_all(&mut f, b"efgh").is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"abcdef");
        fs.tear_write(false);
        fs.fail_write(true);
        assert!(fs.write_all(&mut f, b"ijkl").is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"abcdef");
        assert_eq!(
            fs.calls(),
            vec![
                FsCall::CreateNew(p.clone()),
                FsCall::WriteAll { len: 4 },
                FsCall::SyncData,
                FsCall::WriteAll { len: 4 },
                FsCall::WriteAll { len: 4 },
            ]
        );
        fs.clear_calls();
        assert!(fs.calls().is_empty());
    }
}

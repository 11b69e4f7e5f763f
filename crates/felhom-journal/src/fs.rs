//! The file-system seam of the log: the `FileSystem` trait and `RealFs`. The fault-injecting
//! wrapper is in `faulty.rs`, behind the `test-support` feature.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Every file-system call the log makes, and nothing more. Handles are plain `std::fs::File`s:
/// the seam exists to observe and break calls, not to fake a file system.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Opens an existing file for reading and appending.
    fn open(&self, path: &Path) -> io::Result<File>;
    /// Creates a new file for reading and appending; fails with `AlreadyExists` if it exists.
    fn create_new(&self, path: &Path) -> io::Result<File>;
    /// Reads the file from its current position to the end, appending to `buf`.
    fn read_to_end(&self, file: &mut File, buf: &mut Vec<u8>) -> io::Result<()>;
    /// Writes all of `bytes` at the end of the file.
    fn write_all(&self, file: &mut File, bytes: &[u8]) -> io::Result<()>;
    /// `fdatasync`: the file's data (and the size needed to read it) reach the disk.
    fn sync_data(&self, file: &File) -> io::Result<()>;
    /// fsyncs a directory, making entries created, renamed or removed in it durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Atomically renames `from` over `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Sets the file's length (used to cut off a torn tail).
    fn truncate(&self, file: &File, len: u64) -> io::Result<()>;
    /// Takes the file's exclusive lock without blocking: `Ok(false)` if another holder has it.
    fn try_lock(&self, file: &File) -> io::Result<bool>;
    /// Whether `path` still names the open `file` (not replaced or removed since it was opened).
    fn is_same_file(&self, file: &File, path: &Path) -> io::Result<bool>;
}

/// The real file system (std, no unsafe). The lock is `File::try_lock`, an advisory `flock`
/// on Unix: released when the last handle to the open file closes, including on a crash.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl FileSystem for RealFs {
    fn open(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).append(true).open(path)
    }

    fn create_new(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(path)
    }

    fn read_to_end(&self, file: &mut File, buf: &mut Vec<u8>) -> io::Result<()> {
        file.read_to_end(buf).map(drop)
    }

    fn write_all(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        file.write_all(bytes)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn truncate(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn try_lock(&self, file: &File) -> io::Result<bool> {
        match file.try_lock() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    fn is_same_file(&self, file: &File, path: &Path) -> io::Result<bool> {
        let open = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(named) => Ok(open.dev() == named.dev() && open.ino() == named.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_lock_is_exclusive_across_handles_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let a = RealFs.create_new(&p).unwrap();
        let b = RealFs.open(&p).unwrap();
        assert!(RealFs.try_lock(&a).unwrap());
        assert!(!RealFs.try_lock(&b).unwrap());
        drop(a);
        assert!(RealFs.try_lock(&b).unwrap());
    }

    #[test]
    fn same_file_notices_replacement_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let q = dir.path().join("g");
        let f = RealFs.create_new(&p).unwrap();
        assert!(RealFs.is_same_file(&f, &p).unwrap());
        drop(RealFs.create_new(&q).unwrap());
        RealFs.rename(&q, &p).unwrap();
        assert!(!RealFs.is_same_file(&f, &p).unwrap());
        RealFs.remove_file(&p).unwrap();
        assert!(!RealFs.is_same_file(&f, &p).unwrap());
    }
}

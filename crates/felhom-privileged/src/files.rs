//! The host files the backend edits (`/etc/fstab`, mountpoints), behind `HostFiles` so tests
//! use a temporary root; replaced durably (temp file, fsync, rename).

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use crate::PrivilegedError;

/// The host files the backend edits, behind a trait so tests use a temporary directory.
pub trait HostFiles: Send + Sync {
    /// Reads `/etc/fstab`.
    fn read_fstab(&self) -> impl Future<Output = Result<String, PrivilegedError>> + Send;
    /// Replaces `/etc/fstab` atomically and durably.
    fn write_fstab(
        &self,
        contents: String,
    ) -> impl Future<Output = Result<(), PrivilegedError>> + Send;
    /// Creates a directory and its parents.
    fn create_dir_all(
        &self,
        path: &Path,
    ) -> impl Future<Output = Result<(), PrivilegedError>> + Send;
}

/// Host files under a root directory: `/` live, a temporary directory in tests.
#[derive(Debug, Clone)]
pub struct RootedFiles {
    root: PathBuf,
}

impl RootedFiles {
    /// The real host.
    pub fn host() -> Self {
        RootedFiles {
            root: PathBuf::from("/"),
        }
    }

    /// Files under `root` (absolute paths are re-rooted there).
    pub fn under(root: impl Into<PathBuf>) -> Self {
        RootedFiles { root: root.into() }
    }

    fn path(&self, absolute: &Path) -> PathBuf {
        self.root
            .join(absolute.strip_prefix("/").unwrap_or(absolute))
    }

    fn fstab(&self) -> PathBuf {
        self.path(Path::new("/etc/fstab"))
    }
}

fn files_error(path: &Path, e: impl fmt::Display) -> PrivilegedError {
    PrivilegedError::Files {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

/// Write temp, fsync, rename over, fsync the directory: a crash leaves the old or the new
/// fstab, never a torn one (a torn fstab can stop the host from booting).
fn replace_file_durably(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(".fstab.felhom-agent.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(&tmp, meta.permissions())?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl HostFiles for RootedFiles {
    async fn read_fstab(&self) -> Result<String, PrivilegedError> {
        let path = self.fstab();
        match tokio::fs::read_to_string(&path).await {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(files_error(&path, e)),
        }
    }

    async fn write_fstab(&self, contents: String) -> Result<(), PrivilegedError> {
        let path = self.fstab();
        let p = path.clone();
        tokio::task::spawn_blocking(move || replace_file_durably(&p, contents.as_bytes()))
            .await
            .map_err(|e| files_error(&path, e))?
            .map_err(|e| files_error(&path, e))
    }

    async fn create_dir_all(&self, path: &Path) -> Result<(), PrivilegedError> {
        let full = self.path(path);
        tokio::fs::create_dir_all(&full)
            .await
            .map_err(|e| files_error(&full, e))
    }
}

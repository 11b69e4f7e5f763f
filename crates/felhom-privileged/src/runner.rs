//! Running one program (no shell) under a timeout: the `CommandRunner` seam and the live
//! `TokioCommandRunner`.

use std::future::Future;
use std::io;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::PrivilegedError;

/// The output of a finished command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// Exit code; `None` if a signal ended it.
    pub status: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    /// A successful run with this standard output (for [`RecordingRunner`] replies).
    pub fn ok(stdout: impl Into<Vec<u8>>) -> Self {
        CommandOutput {
            status: Some(0),
            stdout: stdout.into(),
            stderr: Vec::new(),
        }
    }

    /// A run that exited with `code`.
    pub fn exit(code: i32, stdout: impl Into<Vec<u8>>, stderr: impl Into<Vec<u8>>) -> Self {
        CommandOutput {
            status: Some(code),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// The last few hundred characters of standard error, for error messages.
    pub(crate) fn stderr_tail(&self) -> String {
        let s = String::from_utf8_lossy(&self.stderr);
        let s = s.trim();
        let mut start = s.len().saturating_sub(500);
        while !s.is_char_boundary(start) {
            start += 1;
        }
        s[start..].to_owned()
    }
}

/// Runs one program with arguments (no shell) under a timeout.
pub trait CommandRunner: Send + Sync {
    /// Runs `program` with `args`, killing it after `timeout`.
    fn run(
        &self,
        program: &str,
        args: &[String],
        timeout: Duration,
    ) -> impl Future<Output = Result<CommandOutput, PrivilegedError>> + Send;
}

/// The live runner: `tokio::process`, no shell, a fixed `PATH` and the C locale (stable output
/// to parse), stdin closed, the child killed if the run is dropped or times out.
#[derive(Debug, Clone)]
pub struct TokioCommandRunner {
    /// Largest stdout (and, separately, stderr) accepted.
    pub max_output_bytes: usize,
}

impl Default for TokioCommandRunner {
    fn default() -> Self {
        TokioCommandRunner {
            max_output_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Reads at most `limit + 1` bytes, so an overflow is detected without unbounded memory.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(
    r: Option<R>,
    limit: usize,
) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(r) = r {
        r.take(limit as u64 + 1).read_to_end(&mut buf).await?;
    }
    Ok(buf)
}

impl CommandRunner for TokioCommandRunner {
    async fn run(
        &self,
        program: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<CommandOutput, PrivilegedError> {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| PrivilegedError::Spawn {
                program: program.to_owned(),
                detail: e.to_string(),
            })?;
        let limit = self.max_output_bytes;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let run = async {
            let (out, err) = tokio::join!(read_capped(stdout, limit), read_capped(stderr, limit));
            let status = child.wait().await?;
            Ok::<_, io::Error>((out?, err?, status))
        };
        let (stdout, stderr, status) = match tokio::time::timeout(timeout, run).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                return Err(PrivilegedError::Spawn {
                    program: program.to_owned(),
                    detail: e.to_string(),
                })
            }
            Err(_) => {
                // Dropping `run` released the borrow; kill now rather than at drop time.
                let _ = child.start_kill();
                return Err(PrivilegedError::Timeout {
                    program: program.to_owned(),
                    after: timeout,
                });
            }
        };
        if stdout.len() > limit || stderr.len() > limit {
            return Err(PrivilegedError::OutputTooLarge {
                program: program.to_owned(),
                limit,
            });
        }
        Ok(CommandOutput {
            status: status.code(),
            stdout,
            stderr,
        })
    }
}

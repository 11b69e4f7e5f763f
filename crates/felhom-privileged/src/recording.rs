//! A [`CommandRunner`] for tests (feature `test-support`): records calls, replays replies.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use crate::{CommandOutput, CommandRunner, PrivilegedError};

/// One call a [`RecordingRunner`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// Program name.
    pub program: String,
    /// Arguments, exactly as passed.
    pub args: Vec<String>,
    /// Timeout given.
    pub timeout: Duration,
}

/// A runner for tests: records every call and replays queued replies in order (an error if
/// none is queued). Runs nothing.
#[derive(Debug, Default)]
pub struct RecordingRunner {
    calls: Mutex<Vec<RecordedCall>>,
    replies: Mutex<VecDeque<Result<CommandOutput, PrivilegedError>>>,
}

impl RecordingRunner {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a reply.
    pub fn reply(&self, reply: Result<CommandOutput, PrivilegedError>) -> &Self {
        self.replies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(reply);
        self
    }

    /// The calls seen so far.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl CommandRunner for RecordingRunner {
    async fn run(
        &self,
        program: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<CommandOutput, PrivilegedError> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(RecordedCall {
                program: program.to_owned(),
                args: args.to_vec(),
                timeout,
            });
        self.replies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .unwrap_or_else(|| {
                Err(PrivilegedError::Spawn {
                    program: program.to_owned(),
                    detail: "recording runner has no reply queued".to_owned(),
                })
            })
    }
}

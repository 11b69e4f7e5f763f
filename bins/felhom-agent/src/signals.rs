//! SIGTERM and SIGINT as a future: the daemon registers both before doing anything else, so a
//! stop during startup or recovery is a clean exit, not the default kill.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The two stop signals, registered.
#[derive(Debug)]
pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    /// Registers the handlers (from now on the signals no longer kill the process).
    pub fn register() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

//! SIGTERM and SIGINT as a future: the daemon registers both before doing anything else, so a
//! stop during startup or recovery is a clean exit, not the default kill. SIGHUP, SIGUSR1 and
//! SIGQUIT are registered too ([`OtherSignals`]), so none of them kills the daemon without a
//! drain: they are logged, and the daemon runs on.

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

/// Signals that must not kill the daemon (their default action would, skipping the drain).
#[derive(Debug)]
pub struct OtherSignals {
    hup: Signal,
    usr1: Signal,
    quit: Signal,
}

impl OtherSignals {
    /// Registers the handlers (from now on these signals no longer kill the process).
    pub fn register() -> std::io::Result<Self> {
        Ok(Self {
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// Waits for the next one and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.hup.recv() => "SIGHUP",
            _ = self.usr1.recv() => "SIGUSR1",
            _ = self.quit.recv() => "SIGQUIT",
        }
    }
}

/// Logs what a non-stop signal does: nothing but this line; SIGHUP says what is re-read.
pub fn log_other(signal: &str) {
    if signal == "SIGHUP" {
        tracing::warn!(
            signal,
            "SIGHUP: the desired-state file is re-read on every pass anyway; the config (log \
             level, hub, Proxmox, journal) is read only at start: restart the service to apply \
             a changed config (systemctl restart felhom-agent). Running on"
        );
    } else {
        tracing::warn!(
            signal,
            "ignored: only SIGTERM or SIGINT stops felhom-agent. Running on"
        );
    }
}

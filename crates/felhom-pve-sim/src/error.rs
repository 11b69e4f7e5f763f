//! `SimError`: why a simulator could not start. Nothing is running after any of them, so
//! retrying (with a fixed config) is always safe.

/// Failure to start a `PveSim`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The loopback listener could not be bound (retrying may succeed).
    #[error("pve-sim: cannot bind 127.0.0.1:0: {0}")]
    Bind(#[source] std::io::Error),
    /// The CA or leaf certificate could not be generated.
    #[error("pve-sim: certificate generation failed: {0}")]
    Certificate(String),
    /// The TLS server configuration was rejected.
    #[error("pve-sim: tls setup failed: {0}")]
    Tls(String),
    /// The `SimConfig` is invalid (retrying with the same config fails again).
    #[error("pve-sim: invalid config: {0}")]
    Config(String),
}

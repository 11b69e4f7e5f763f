//! felhom-agent-core: what the two binaries share — the config (file, environment overlay,
//! mode-aware validation, redaction), the golden contract check, and the hub side of the agent.
//!
//! Never: print, log or return a secret from the config (token secret, hub API key); do I/O in
//! the pure parts (config validation takes the environment as a map and opens no path it names).

pub mod config;
pub mod golden;

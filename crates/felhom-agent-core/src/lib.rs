//! felhom-agent-core: what the two binaries share — the config (file, environment overlay,
//! mode-aware validation, redaction), the golden contract check, and the hub side of the agent:
//! the [`hub`] client, the [`collector`], the [`heartbeat`] loop and the [`cloudflared`] probe.
//!
//! Never: print, log or return a secret from the config (token secret, hub API key); do I/O in
//! the pure parts (config validation takes the environment as a map and opens no path it names);
//! spawn any process but the read-only `systemctl is-active cloudflared` probe; talk to the hub
//! without verified TLS.

pub mod cloudflared;
pub mod collector;
pub mod config;
pub mod golden;
pub mod heartbeat;
pub mod hub;
pub mod pve;

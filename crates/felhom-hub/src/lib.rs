//! felhom-hub: the hub side of the agent — the [`hub`] client, the [`collector`] (one host
//! report from the Proxmox API), the [`heartbeat`] loop, and the [`cloudflared`] probe.
//!
//! Never: talk to the hub without verified TLS (there is no insecure mode for the hub), send a
//! report built from a failed node-status or guest-list read (a report with no guests tells the
//! hub they are gone), let the hub API key reach a log, an error or `Debug` output, or spawn any
//! process but the read-only `systemctl is-active cloudflared` probe.

pub mod cloudflared;
pub mod collector;
pub mod heartbeat;
pub mod hub;

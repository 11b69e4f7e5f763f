//! felhom-hub integration tests, over real TLS on loopback: the hub client against
//! `HubSim`, the collector against `PveSim`, the heartbeat loop against both (tokio's clock
//! paused only around its sleeps), the cloudflared probe with stand-in programs, and the hub
//! key never showing in errors, `Debug` output or logs.

mod cloudflared;
mod collector;
mod heartbeat;
mod hub_client;
mod incremental;
mod secrets;
mod support;

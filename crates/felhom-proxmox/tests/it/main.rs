//! felhom-proxmox integration tests: the dependency fence; the HTTPS client over real TLS on
//! loopback against a few-line test server (wire format, impostor); and the real `PveClient`
//! against the real PVE simulator (`felhom-pve-sim`): every read and mutation, the failure
//! classes, TLS trust modes and secret hygiene.

mod deps;
mod fixture;
mod https;
mod secrets;
mod sim_destructive;
mod sim_errors;
mod sim_mutations;
mod sim_reads;
mod sim_tls;
mod support;

//! Integration tests of the PVE simulator over real TLS on loopback, with a small raw HTTPS
//! client (hyper-util + hyper-rustls trusting the simulator's CA).

mod auth;
mod backup;
mod client;
mod errors;
mod faults;
mod guests;
mod hub;
mod snapshots;
mod storage;
mod tasks;
mod tls;

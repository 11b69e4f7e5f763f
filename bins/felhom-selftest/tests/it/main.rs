//! End-to-end tests of the built `felhom-selftest` binary against the PVE simulator on
//! loopback (real TLS, pinned fingerprint): the simulator runs in this process, the binary as a
//! child process with a config written to a temp dir.

mod config;
mod hub;
mod privileges;
mod read;
mod support;
mod task;

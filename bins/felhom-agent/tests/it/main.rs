//! End-to-end tests of the built `felhom-agent` binary: the one-shot commands, `verify-op`
//! against the committed SSHSIG vectors, and the daemon against the PVE and hub simulators on
//! loopback.

mod commands;
mod daemon;
mod journal_cmd;
mod support;
mod verify_op;

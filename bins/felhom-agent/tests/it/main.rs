//! End-to-end tests of the built `felhom-agent` binary: the one-shot commands, `verify-op`
//! against the committed SSHSIG vectors, and the daemon against the PVE and hub simulators on
//! loopback, and in the hostile cases of issue 10 (second instance, stuck reads, signals, a
//! hub answering nothing).

mod commands;
mod daemon;
mod hostile;
mod hub_intent;
mod journal_cmd;
mod metrics;
mod restore;
mod signed_ops;
mod support;
mod verify_op;

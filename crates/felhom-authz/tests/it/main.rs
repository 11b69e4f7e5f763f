//! felhom-authz integration tests: one binary (link time), one module per concern.

mod file_store;
mod props;
mod replay;
mod security_keys;
mod stages;
mod support;
mod vectors;

//! felhom-authz integration tests: one binary (link time), one module per concern.

mod binding;
mod file_store;
mod props;
mod replay;
mod security_keys;
mod stages;
mod support;
mod vectors;

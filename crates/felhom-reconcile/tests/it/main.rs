//! Integration tests for felhom-reconcile: one binary, one module per scenario.

mod crash;
mod engine;
mod gate;
mod gate_props;
mod pipeline;
mod recovery;
mod restore;
mod signing;
mod support;

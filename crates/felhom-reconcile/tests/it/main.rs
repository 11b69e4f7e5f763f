//! Integration tests for felhom-reconcile: one binary, one module per scenario.

mod engine;
mod pipeline;
mod recovery;
mod support;

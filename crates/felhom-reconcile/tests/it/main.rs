//! Integration tests for felhom-reconcile: one binary, one module per scenario.

mod pipeline;

//! Integration tests of felhom-hub-proto: the golden contract and the dependency rule.

mod deps;
mod golden;

//! felhom-privileged integration tests: the fence as a fact of the dependency tree.

mod deps;

//! felhom-testkit: what the workspace's tests share — one copy each of the simulator-backed
//! client builders, the agent-config writers, log capture, and the dependency-tree check that
//! turns a crate boundary (the privileged fence, hub-proto's serde-only rule) into a test.
//!
//! Never: become a dependency of anything but tests (`[dev-dependencies]` only), or hold
//! behaviour a product crate needs.

pub mod deps;

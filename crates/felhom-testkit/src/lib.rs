//! felhom-testkit: what the workspace's tests share — one copy each of the simulator-backed
//! client builders (`pve`), the agent-config writers (`config`), log capture (`logs`), a parsed `/metrics` scrape (`metrics`), and the
//! dependency-tree check that turns a crate boundary (the privileged fence, hub-proto's
//! serde-only rule) into a test (`deps`).
//!
//! Never: become a dependency of anything but tests and xtask's heavy tooling
//! (`[dev-dependencies]` or an optional dependency), or hold behaviour a product crate needs.

pub mod config;
pub mod deps;
pub mod logs;
pub mod metrics;
pub mod pve;

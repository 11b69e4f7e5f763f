//! What the PVE-side benches share: the simulator's runtime, the agent's runtime, the
//! agent's client pinned to the simulator.

use super::*;

/// The simulator's server runs on its own runtime (one worker thread), like PVE in its own
/// process; the agent side runs on a current-thread runtime, like the daemon.
pub(super) fn sim_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("pve-sim")
        .enable_all()
        .build()?)
}

pub(super) fn agent_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The agent's client for `sim`, pinned to its certificate (as the daemon's config does).
pub(super) fn pve_client(sim: &PveSim) -> Result<PveClient> {
    Ok(felhom_testkit::pve::client_with(
        sim,
        felhom_testkit::pve::ClientOpts {
            timeout: Duration::from_secs(30),
            ..Default::default()
        },
    ))
}

//! End-to-end tests of the built `felhom-sign` binary: real `ssh-keygen -Y sign`, the agent's
//! own `felhom-agent verify-op` over the same files, and every refusal the issue names.

mod cli;
mod round_trip;
mod support;

//! felhom-sign: the operator's workstation tool for destructive ops. Composes the canonical op
//! blob (`new`), says in plain language what it will do and who signed it (`show`), signs it
//! with OpenSSH's own `ssh-keygen -Y sign -n felhom-op-v1` (`sign`), and runs the agent's own
//! verifier over it as a dry run (`check`). No Proxmox, no hub, no network.
//!
//! It must never: read or handle a private key itself (ssh-keygen does, so hardware keys and
//! ssh-agent work), compose a blob the agent would refuse for its shape or window, or
//! re-serialise a blob it is asked to show, sign or check (the raw bytes are what count).

pub mod check;
pub mod compose;
pub mod duration;
mod error;
pub mod keygen;
pub mod show;

pub use error::SignError;

use std::io::Read;
use std::path::Path;

/// Reads at most `limit + 1` bytes of `path`: enough for the verifier to refuse an oversized
/// input by its length without reading a huge file.
pub fn read_limited(what: &'static str, path: &Path, limit: usize) -> Result<Vec<u8>, SignError> {
    let err = |source| SignError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(err)?
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    Ok(bytes)
}

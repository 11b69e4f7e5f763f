//! felhom-types: small value types several felhom crates check the same way, so each rule is
//! written once — [`Vmid`] (PVE's guest id range) and [`HttpsUrl`] (the `https://` base URLs
//! of the Proxmox API and the hub).
//!
//! Never: depend on anything but serde (a leaf every crate may use), do I/O, or repeat a URL
//! that may carry a password in an error.

mod url;
mod vmid;

pub use url::{HttpsUrl, UrlError};
pub use vmid::{Vmid, VmidError};

//! felhom-types: small value types several felhom crates check the same way, so each rule is
//! written once — [`Vmid`] (PVE's guest id range), [`VmidRange`] (a reserved block of them) and [`HttpsUrl`] (the `https://` base URLs
//! of the Proxmox API and the hub).
//!
//! Never: depend on anything but serde (a leaf every crate may use), do I/O, or repeat a URL
//! that may carry a password in an error.

mod range;
mod url;
mod vmid;

pub use range::{VmidRange, VmidRangeError, MAX_RANGE_LEN};
pub use url::{HttpsUrl, UrlError};
pub use vmid::{Vmid, VmidError};

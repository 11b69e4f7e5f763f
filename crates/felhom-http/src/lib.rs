//! felhom-http: the one HTTPS client setup of the felhom agent, used by the Proxmox client
//! (`felhom-proxmox`) and the hub client (`felhom-hub`): TLS trust (leaf pins, a CA file,
//! system roots, an explicitly named insecure mode), HTTP/1.1 with bounded time and body size,
//! error classes that say whether a request may have reached the server, and [`Secret`].
//!
//! Never: disable certificate verification unless the caller named the insecure mode, skip the
//! handshake-signature check (a pin alone would accept an impostor replaying the certificate),
//! read a response body without a size limit, send without a timeout, or let a [`Secret`] reach
//! a log, an error or `Debug` output. It knows nothing of Proxmox or the hub.
//!
//! Map: [`tls`] (trust modes, [`Fingerprint`], the leaf verifier) → [`client`] ([`HttpsClient`]);
//! [`secret`] holds [`Secret`].

pub mod client;
pub mod secret;
pub mod tls;

pub use client::{
    HttpError, HttpRequest, HttpResponse, HttpsClient, HttpsConfig, HttpsConfigError, PoolSettings,
    TlsFailure,
};
pub use secret::{Secret, REDACTED};
pub use tls::{Fingerprint, FingerprintError, TlsConfigError, TlsTrust};

//! felhom-proxmox integration tests: the structural fence, and the HTTPS client over real TLS on
//! loopback against a few-line test server.

mod fence;
mod https;
mod support;

//! [`ListenAddr`]: where `/metrics` is served (`metrics.listen`).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// An `IP:PORT` to serve `/metrics` on: a literal address (a host name is never resolved, so
/// the config means the same on every start). Port 0 takes any free port (the daemon logs the
/// one it got; for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(SocketAddr);

/// `metrics.listen` is not an `IP:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListenAddrError {
    /// Not a literal socket address.
    #[error(
        "expected IP:PORT such as \"127.0.0.1:9731\" or \"[::1]:9731\" (a literal address, \
         no host name), got {0:?}"
    )]
    NotAnAddress(String),
}

impl ListenAddr {
    /// Parses `s`.
    pub fn parse(s: &str) -> Result<ListenAddr, ListenAddrError> {
        SocketAddr::from_str(s)
            .map(ListenAddr)
            .map_err(|_| ListenAddrError::NotAnAddress(s.chars().take(100).collect()))
    }

    /// The address.
    pub fn socket_addr(self) -> SocketAddr {
        self.0
    }

    /// Whether only this host can connect (127.0.0.0/8, `::1`). Anything else must be kept to
    /// the Prometheus server by the host firewall: the listener has no TLS and no auth.
    pub fn is_loopback(self) -> bool {
        self.0.ip().is_loopback()
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_addresses_only() {
        let a = ListenAddr::parse("127.0.0.1:9731").unwrap();
        assert!(a.is_loopback());
        assert_eq!(a.to_string(), "127.0.0.1:9731");
        assert!(ListenAddr::parse("[::1]:9731").unwrap().is_loopback());
        assert!(!ListenAddr::parse("0.0.0.0:9731").unwrap().is_loopback());
        assert!(!ListenAddr::parse("192.0.2.7:9731").unwrap().is_loopback());
        assert_eq!(
            ListenAddr::parse("127.0.0.1:0")
                .unwrap()
                .socket_addr()
                .port(),
            0
        );
        for bad in [
            "localhost:9731",
            "127.0.0.1",
            ":9731",
            "127.0.0.1:99999",
            "",
            "::1:9731",
        ] {
            let e = ListenAddr::parse(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("got {bad:?}")), "{e}");
        }
    }
}

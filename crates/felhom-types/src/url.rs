//! [`HttpsUrl`]: an `https://` base URL parsed enough to connect — host, port and path — and
//! nothing the agent would silently drop (user info, query, fragment).

use std::fmt;

/// An `https://` URL: host, port and path prefix. No user info, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsUrl {
    host: String,
    port: u16,
    explicit_port: bool,
    path: String,
}

/// Why a string is not an acceptable `https://` URL. It repeats the input only when the input
/// holds no `@` (a URL with user info may carry a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError {
    /// What is wrong, a fixed phrase, e.g. `must be an https:// URL`.
    pub reason: &'static str,
    /// The input, unless it might hold credentials.
    input: Option<String>,
}

impl UrlError {
    /// `reason` about `input`; the input is dropped if it holds an `@`.
    pub fn new(reason: &'static str, input: &str) -> UrlError {
        UrlError {
            reason,
            input: (!input.contains('@')).then(|| input.to_owned()),
        }
    }
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.input {
            Some(s) => write!(f, "{}, got {s:?}", self.reason),
            None => f.write_str(self.reason),
        }
    }
}

impl std::error::Error for UrlError {}

impl HttpsUrl {
    /// Always `https`: the only scheme accepted.
    pub fn scheme(&self) -> &'static str {
        "https"
    }

    /// The host: a DNS name (lowercase), an IPv4 address, or an IPv6 address without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, 443 when the URL gives none.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The path prefix without a trailing slash: `""` or e.g. `/felhom`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// This URL with `suffix` (starting with `/`) appended to its path:
    /// `https://hub.example:8443/felhom` + `/api/v1/host-report`.
    pub fn join(&self, suffix: &str) -> String {
        format!("{self}{suffix}")
    }

    /// This URL with its path replaced by `path` (empty or starting with `/`).
    pub fn with_path(&self, path: &str) -> HttpsUrl {
        HttpsUrl {
            path: path.trim_end_matches('/').to_owned(),
            ..self.clone()
        }
    }

    /// Parses `s` as an `https://` URL.
    pub fn parse(s: &str) -> Result<HttpsUrl, UrlError> {
        Self::parse_reason(s).map_err(|reason| UrlError::new(reason, s))
    }

    fn parse_reason(s: &str) -> Result<HttpsUrl, &'static str> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err("must be an https:// URL");
        };
        if !scheme.eq_ignore_ascii_case("https") {
            return Err("must be an https:// URL");
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err("must not contain credentials (user@ or user:password@)");
        }
        if tail.contains(['?', '#']) {
            return Err("must not have a query or fragment");
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((addr, after)) = v6.split_once(']') else {
                return Err("has an unclosed '[' in the host");
            };
            if addr.is_empty()
                || !addr
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            {
                return Err("has an invalid IPv6 address");
            }
            match after {
                "" => (addr.to_owned(), None),
                p => match p.strip_prefix(':') {
                    Some(p) => (addr.to_owned(), Some(p)),
                    None => return Err("has something after the IPv6 address that is not a port"),
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
                None => (authority.to_ascii_lowercase(), None),
            }
        };
        if host.is_empty() {
            return Err("has no host");
        }
        if !host.contains(':')
            && !host.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
        {
            return Err("has an invalid host name");
        }
        let port_num = match port {
            None => 443,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => n,
                _ => return Err("has an invalid port (1 to 65535)"),
            },
        };
        Ok(HttpsUrl {
            host,
            port: port_num,
            explicit_port: port.is_some(),
            path: tail.trim_end_matches('/').to_owned(),
        })
    }
}

impl std::str::FromStr for HttpsUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HttpsUrl::parse(s)
    }
}

impl fmt::Display for HttpsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.explicit_port {
            write!(f, "https://{}{}", self.authority(), self.path)
        } else if self.host.contains(':') {
            write!(f, "https://[{}]{}", self.host, self.path)
        } else {
            write!(f, "https://{}{}", self.host, self.path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_public_and_never_repeats_a_url_with_credentials() {
        let err = "https://u:hunter2@hub".parse::<HttpsUrl>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "must not contain credentials (user@ or user:password@)"
        );
        assert!(!format!("{err:?}").contains("hunter2"));
        let err = HttpsUrl::parse("ftp://x").unwrap_err();
        assert_eq!(err.reason, "must be an https:// URL");
        assert_eq!(err.to_string(), "must be an https:// URL, got \"ftp://x\"");
        assert_eq!(
            HttpsUrl::parse("https://hub").unwrap().to_string(),
            "https://hub"
        );
    }

    #[test]
    fn url_parts() {
        let u = HttpsUrl::parse("https://[fd00::1]:8006").unwrap();
        assert_eq!(u.scheme(), "https");
        assert_eq!(u.host(), "fd00::1");
        assert_eq!(u.port(), 8006);
        assert_eq!(u.authority(), "[fd00::1]:8006");
        assert_eq!(u.to_string(), "https://[fd00::1]:8006");
        let u = HttpsUrl::parse("https://[fd00::1]/x").unwrap();
        assert_eq!((u.port(), u.path()), (443, "/x"));
        assert_eq!(u.to_string(), "https://[fd00::1]/x");
        assert_eq!(u.with_path("").to_string(), "https://[fd00::1]");
        let u = HttpsUrl::parse("https://192.0.2.10:8006").unwrap();
        assert_eq!(u.authority(), "192.0.2.10:8006");
        assert_eq!(u.join("/a"), "https://192.0.2.10:8006/a");
    }
}

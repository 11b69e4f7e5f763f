//! `HubClient`: POSTs a `HostReport` to the hub (`/api/v1/host-report`) with Bearer auth over
//! verified TLS and decodes the `ControlEnvelope` it answers; `HubError` says what failed.
//!
//! Built on felhom-proxmox's `HttpsClient`, the project's one HTTPS stack (timeout over the
//! whole exchange, bounded response body). Trust is the system roots, a CA file or pinned
//! certificate fingerprints: there is no way to turn verification off for the hub. The API key lives in a `Secret` and becomes a
//! header (marked sensitive) only inside [`HubClient::report`]; no error, log line or `Debug`
//! output carries it.

use std::fmt;
use std::time::Duration;

use felhom_http::{
    HttpError, HttpRequest, HttpsClient, HttpsConfig, HttpsConfigError, Secret, TlsTrust,
};
use felhom_hub_proto::{
    ControlEnvelope, DesiredStateBody, HostReport, SignedOpsBody, DESIRED_STATE_PATH,
    HOST_REPORT_PATH, SIGNED_OPS_PATH,
};
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use http::Method;

use felhom_types::HttpsUrl;

/// Largest envelope accepted: a real one is under 200 bytes.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// Largest desired-state or signed-ops body accepted: the desired-state file's own limit.
pub const MAX_INTENT_BYTES: usize = 4 * 1024 * 1024;

/// Longest excerpt of an error body kept in [`HubError::Http`], in characters.
pub const MAX_BODY_EXCERPT_CHARS: usize = 256;

/// Connecting may take at most this long (or the request timeout, if shorter).
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the key is replaced with if the hub echoes it in a body.
const REDACTED: &str = felhom_http::REDACTED;

/// Settings of a [`HubClient`], owned here so the hub client needs no config crate
/// (felhom-config converts its `hub` section into this). `Debug` is safe: the key prints
/// redacted.
#[derive(Debug, Clone)]
pub struct HubClientConfig {
    /// The hub's base URL; reports go to `{url}/api/v1/host-report`.
    pub url: HttpsUrl,
    /// This host's id at the hub (what reports and signed ops name).
    pub host_id: String,
    /// Sent as `Authorization: Bearer <api_key>`.
    pub api_key: Secret,
    /// Limit for one whole report exchange (connect, TLS, send, read the answer).
    pub timeout: Duration,
    /// How the hub's certificate is trusted: system roots, a CA file or pins. Never
    /// [`TlsTrust::InsecureSkipVerify`]: [`HubClient::new`] refuses it.
    pub trust: TlsTrust,
}

/// Why an API key cannot be sent to the hub. Never holds the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// The key is empty.
    #[error("must not be empty")]
    Empty,
    /// The key cannot travel in an HTTP header.
    #[error("must be printable ASCII without spaces")]
    NotAHeader,
}

/// The one rule for the hub API key: non-empty visible ASCII (it becomes a header value).
pub fn check_api_key(key: &Secret) -> Result<(), ApiKeyError> {
    if key.is_empty() {
        Err(ApiKeyError::Empty)
    } else if !key.expose().bytes().all(|b| b.is_ascii_graphic()) {
        Err(ApiKeyError::NotAHeader)
    } else {
        Ok(())
    }
}

/// Why a [`HubClient`] could not be built. Never holds the key; retrying is pointless until
/// the configuration changes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubClientError {
    /// The API key is empty.
    #[error("hub.api_key: must not be empty")]
    EmptyKey,
    /// The API key cannot travel in an HTTP header (control characters, spaces, non-ASCII).
    #[error("hub.api_key: must be printable ASCII without spaces")]
    KeyNotAHeader,
    /// The timeout is zero.
    #[error("hub.timeout_seconds: must be greater than zero")]
    ZeroTimeout,
    /// Verification turned off: never for the hub.
    #[error("hub: certificate verification cannot be turned off for the hub")]
    Insecure,
    /// The HTTPS client refused the settings (an unreadable or empty `hub.ca_file`, no system
    /// roots).
    #[error("hub: {0}")]
    Https(#[from] HttpsConfigError),
}

impl From<ApiKeyError> for HubClientError {
    fn from(e: ApiKeyError) -> Self {
        match e {
            ApiKeyError::Empty => HubClientError::EmptyKey,
            ApiKeyError::NotAHeader => HubClientError::KeyNotAHeader,
        }
    }
}

/// A report that did not get an envelope back.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The report could not be encoded as JSON. Never sent.
    #[error("hub report: encoding the report failed: {detail}")]
    Encode {
        /// serde's message.
        detail: String,
    },
    /// Transport or TLS failure: the request never reached the hub, or may have (see
    /// [`HttpError::never_sent`]). A report is a heartbeat, not a mutation: sending the next one
    /// is always safe.
    #[error("hub report: {0}")]
    Transport(#[source] HttpError),
    /// The hub answered with a non-2xx status (401: the key is refused; 5xx: the hub is
    /// unwell). The hub received the request.
    #[error("hub report: {url} answered {status}: {body}")]
    Http {
        /// The report URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the answer's body, at most [`MAX_BODY_EXCERPT_CHARS`] characters,
        /// control characters replaced, the key (if echoed) redacted.
        body: String,
    },
    /// The hub answered 2xx with a body that is no `ControlEnvelope`. The hub probably took
    /// the report.
    #[error("hub report: {url} answered with an invalid envelope: {detail}")]
    Decode {
        /// The report URL.
        url: String,
        /// What is wrong (serde's message, bounded, the key redacted).
        detail: String,
    },
}

impl HubError {
    /// The hub refused the API key (401): fix the config rather than wait.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, HubError::Http { status: 401, .. })
    }
}

/// A `GET` of hub-served intent (desired state, signed ops) that gave no usable body. Whatever
/// the cause, the caller changes nothing: the last good intent stays in force.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Transport or TLS failure (or a body over [`MAX_INTENT_BYTES`]).
    #[error("hub fetch {url}: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        #[source]
        source: HttpError,
    },
    /// A non-2xx answer.
    #[error("hub fetch {url}: answered {status}: {body}")]
    Http {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the body, bounded, control characters replaced, the key redacted.
        body: String,
    },
    /// A 2xx answer whose body is not the contract's type (including an empty body).
    #[error("hub fetch {url}: malformed body: {detail}")]
    Malformed {
        /// The URL.
        url: String,
        /// serde's message, bounded, the key redacted.
        detail: String,
    },
}

impl FetchError {
    /// The HTTP status, if the hub answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The hub client. Cheap to clone (shares the connection pools).
#[derive(Clone)]
pub struct HubClient {
    http: HttpsClient,
    /// Same trust and timeouts, a larger body limit: desired state can be megabytes, an
    /// envelope never is.
    intent_http: HttpsClient,
    report_url: String,
    desired_url: String,
    signed_ops_url: String,
    api_key: Secret,
}

impl fmt::Debug for HubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubClient")
            .field("report_url", &self.report_url)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl HubClient {
    /// Validates the settings and builds the client (a CA file is read here; no network
    /// traffic yet).
    pub fn new(config: HubClientConfig) -> Result<Self, HubClientError> {
        check_api_key(&config.api_key)?;
        if config.timeout.is_zero() {
            return Err(HubClientError::ZeroTimeout);
        }
        if matches!(config.trust, TlsTrust::InsecureSkipVerify) {
            return Err(HubClientError::Insecure);
        }
        let https = |max_body_bytes, trust| {
            HttpsClient::new(HttpsConfig {
                trust,
                connect_timeout: config.timeout.min(MAX_CONNECT_TIMEOUT),
                request_timeout: config.timeout,
                max_body_bytes,
                user_agent: format!("felhom-agent/{}", env!("CARGO_PKG_VERSION")),
            })
        };
        let http = https(MAX_ENVELOPE_BYTES, config.trust.clone())?;
        let intent_http = https(MAX_INTENT_BYTES, config.trust)?;
        Ok(HubClient {
            http,
            intent_http,
            report_url: config.url.join(HOST_REPORT_PATH),
            desired_url: config.url.join(DESIRED_STATE_PATH),
            signed_ops_url: config.url.join(SIGNED_OPS_PATH),
            api_key: config.api_key,
        })
    }

    /// Where reports go: `{hub.url}/api/v1/host-report`.
    pub fn report_url(&self) -> &str {
        &self.report_url
    }

    /// POSTs `report` and returns the hub's envelope. An empty 2xx body reads as the default
    /// envelope (every field absent).
    pub async fn report(&self, report: &HostReport) -> Result<ControlEnvelope, HubError> {
        let body = serde_json::to_vec(report).map_err(|e| HubError::Encode {
            detail: e.to_string(),
        })?;
        let resp = self
            .http
            .send(self.request(body))
            .await
            .map_err(HubError::Transport)?;
        if !(200..300).contains(&resp.status) {
            return Err(HubError::Http {
                url: self.report_url.clone(),
                status: resp.status,
                body: self.excerpt(&String::from_utf8_lossy(&resp.body)),
            });
        }
        if resp.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(ControlEnvelope::default());
        }
        serde_json::from_slice(&resp.body).map_err(|e| HubError::Decode {
            url: self.report_url.clone(),
            detail: self.excerpt(&e.to_string()),
        })
    }

    /// `GET {hub.url}/api/v1/desired-state`: the hub's desired state for this host. Only the
    /// body's shape is checked here; the caller validates the guests and the generation.
    pub async fn desired_state(&self) -> Result<DesiredStateBody, FetchError> {
        self.fetch(&self.desired_url).await
    }

    /// `GET {hub.url}/api/v1/signed-ops`: the signed ops waiting for this host, blobs as the
    /// exact strings served.
    pub async fn signed_ops(&self) -> Result<SignedOpsBody, FetchError> {
        self.fetch(&self.signed_ops_url).await
    }

    async fn fetch<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, FetchError> {
        let resp = self
            .intent_http
            .send(self.authorized(HttpRequest::new(Method::GET, url.to_owned())))
            .await
            .map_err(|source| FetchError::Transport {
                url: url.to_owned(),
                source,
            })?;
        if !(200..300).contains(&resp.status) {
            return Err(FetchError::Http {
                url: url.to_owned(),
                status: resp.status,
                body: self.excerpt(&String::from_utf8_lossy(&resp.body)),
            });
        }
        serde_json::from_slice(&resp.body).map_err(|e| FetchError::Malformed {
            url: url.to_owned(),
            detail: self.excerpt(&e.to_string()),
        })
    }

    /// The request, with the key made into a header only now, marked sensitive so hyper and
    /// `http` never print it.
    fn request(&self, body: Vec<u8>) -> HttpRequest {
        self.authorized(HttpRequest::new(Method::POST, self.report_url.clone()))
            .body("application/json", body)
    }

    /// `req` with the Bearer key (sensitive) and `Accept: application/json`.
    fn authorized(&self, req: HttpRequest) -> HttpRequest {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.api_key.expose()))
            // `new` checked the key is visible ASCII, which always makes a valid header value
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        auth.set_sensitive(true);
        req.header(AUTHORIZATION, auth)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
    }

    /// `text` bounded, on one line, with the key redacted should the hub have echoed it.
    fn excerpt(&self, text: &str) -> String {
        bounded_excerpt(text, self.api_key.expose())
    }
}

/// Pure: the first [`MAX_BODY_EXCERPT_CHARS`] characters of `text` with control characters as
/// spaces and every occurrence of `secret` replaced, then trimmed; `…` marks a cut.
pub fn bounded_excerpt(text: &str, secret: &str) -> String {
    // Redact before cutting, so a key straddling the cut cannot leave a prefix behind.
    let redacted = if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, REDACTED)
    };
    let mut out: String = redacted
        .chars()
        .take(MAX_BODY_EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cut = redacted.chars().nth(MAX_BODY_EXCERPT_CHARS).is_some();
    out = out.trim().to_owned();
    if cut {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "hub-key-unit-Zq9xW3vB7nM2kL5p";

    fn config(key: &str) -> HubClientConfig {
        HubClientConfig {
            url: HttpsUrl::parse("https://hub.example.test/felhom/").unwrap(),
            host_id: "pve-01".into(),
            api_key: Secret::new(key),
            timeout: Duration::from_secs(5),
            trust: TlsTrust::SystemRoots,
        }
    }

    /// A client trusting a freshly generated CA (the file is read when the client is built).
    fn client() -> HubClient {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let ck = rcgen::generate_simple_self_signed(vec!["hub.example.test".to_owned()]).unwrap();
        std::fs::write(&ca, ck.cert.pem()).unwrap();
        let mut c = config(KEY);
        c.trust = TlsTrust::CaFile(ca);
        HubClient::new(c).unwrap()
    }

    #[test]
    fn the_report_url_joins_the_base_path() {
        let c = client();
        assert_eq!(
            c.report_url(),
            "https://hub.example.test/felhom/api/v1/host-report"
        );
    }

    #[test]
    fn the_request_carries_a_sensitive_bearer_header_and_json() {
        let c = client();
        let req = c.request(b"{}".to_vec());
        let auth = req.headers.get(AUTHORIZATION).unwrap();
        assert_eq!(auth.to_str().unwrap(), format!("Bearer {KEY}"));
        assert!(auth.is_sensitive());
        assert_eq!(req.headers.get("content-type").unwrap(), "application/json");
        assert_eq!(req.method, Method::POST);
        assert!(!format!("{req:?}").contains(KEY));
        assert!(!format!("{c:?}").contains(KEY));
        assert!(!format!("{:?}", config(KEY)).contains(KEY));
    }

    #[test]
    fn bad_keys_and_timeouts_are_refused_without_showing_the_key() {
        assert!(matches!(
            HubClient::new(config("")),
            Err(HubClientError::EmptyKey)
        ));
        for bad in ["has space-Zq9xW3", "tab\there-Zq9xW3", "nön-ascii-Zq9xW3"] {
            let e = HubClient::new(config(bad)).unwrap_err();
            assert!(matches!(e, HubClientError::KeyNotAHeader), "{bad}");
            assert!(!e.to_string().contains("Zq9xW3"), "{e}");
            assert!(!format!("{e:?}").contains("Zq9xW3"), "{e:?}");
        }
        let mut c = config(KEY);
        c.timeout = Duration::ZERO;
        assert!(matches!(
            HubClient::new(c),
            Err(HubClientError::ZeroTimeout)
        ));
    }

    #[test]
    fn the_hub_never_runs_without_verification() {
        let mut c = config(KEY);
        c.trust = TlsTrust::InsecureSkipVerify;
        let e = HubClient::new(c).unwrap_err();
        assert!(matches!(e, HubClientError::Insecure), "{e}");
        // Pins are a verified mode.
        let mut c = config(KEY);
        c.trust = TlsTrust::Pinned(vec![felhom_http::Fingerprint::of_der(b"hub")]);
        assert!(HubClient::new(c).is_ok());
    }

    #[test]
    fn the_api_key_rule_is_one_function() {
        assert_eq!(check_api_key(&Secret::new("")), Err(ApiKeyError::Empty));
        assert_eq!(
            check_api_key(&Secret::new("a b")),
            Err(ApiKeyError::NotAHeader)
        );
        assert_eq!(check_api_key(&Secret::new(KEY)), Ok(()));
        assert_eq!(
            HubClientError::from(ApiKeyError::Empty).to_string(),
            format!("hub.api_key: {}", ApiKeyError::Empty)
        );
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let mut c = config(KEY);
        c.trust = TlsTrust::CaFile("/nonexistent/felhom/hub-ca.pem".into());
        let e = HubClient::new(c).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/felhom/hub-ca.pem"),
            "{e}"
        );
        assert!(e.to_string().starts_with("hub: "), "{e}");
    }

    #[test]
    fn excerpts_are_bounded_single_line_and_redacted() {
        assert_eq!(bounded_excerpt("  oops\n", KEY), "oops");
        assert_eq!(bounded_excerpt("a\r\nb\tc", KEY), "a  b c");
        let echoed = format!("{{\"error\":\"bad key {KEY}\"}}");
        let e = bounded_excerpt(&echoed, KEY);
        assert!(!e.contains(KEY) && e.contains(REDACTED), "{e}");
        let long = "x".repeat(10_000);
        let e = bounded_excerpt(&long, KEY);
        assert_eq!(e.chars().count(), MAX_BODY_EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        // A key straddling the cut leaves no prefix of itself behind.
        let straddle = format!("{}{KEY}", "y".repeat(MAX_BODY_EXCERPT_CHARS - 5));
        let e = bounded_excerpt(&straddle, KEY);
        assert!(!e.contains(&KEY[..5]), "{e}");
        // Multi-byte characters are cut on a character boundary.
        let e = bounded_excerpt(&"é".repeat(1000), KEY);
        assert_eq!(e.chars().count(), MAX_BODY_EXCERPT_CHARS + 1);
    }

    #[test]
    fn errors_display_their_place_and_classify() {
        let e = HubError::Http {
            url: "https://hub/api/v1/host-report".into(),
            status: 401,
            body: "{\"error\":\"invalid api key\"}".into(),
        };
        assert!(e.is_unauthorized());
        assert_eq!(
            e.to_string(),
            "hub report: https://hub/api/v1/host-report answered 401: {\"error\":\"invalid api key\"}"
        );
        let e = HubError::Decode {
            url: "https://hub/x".into(),
            detail: "invalid type".into(),
        };
        assert!(!e.is_unauthorized());
        assert!(e.to_string().contains("invalid envelope"));
    }
}

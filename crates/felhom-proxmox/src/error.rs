//! Errors of the PVE API client: `ProxmoxError`, with `ApiError` (an HTTP error answer, with the
//! missing privilege parsed out of a 403) and `TaskError` (a task that ran and failed).
//!
//! None of these ever holds the token secret: they are built from requests' method and path and
//! from what the server sent back, never from request headers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::upid::Upid;
use felhom_http::HttpError;

/// A privilege PVE said was missing, from `Permission check failed (<path>, <Priv>)` or the
/// `check_any` form `(<path>, PrivA|PrivB)` (any one of them would have done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPrivilege {
    /// ACL path, e.g. `/vms/100`.
    pub path: String,
    /// The privilege, or the alternatives of which any one suffices.
    pub privileges: Vec<String>,
}

const PERM_PREFIX: &str = "Permission check failed (";

impl MissingPrivilege {
    /// Finds PVE's permission message in a text (an error message, a task exit status or log
    /// line) and parses it. `None` if the text names no path and privilege.
    pub fn parse(text: &str) -> Option<Self> {
        let start = text.find(PERM_PREFIX)? + PERM_PREFIX.len();
        let rest = &text[start..];
        let inner = &rest[..rest.find(')')?];
        let (path, privs) = inner.split_once(", ")?;
        let path = path.trim();
        let privileges: Vec<String> = privs
            .split('|')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        if !path.starts_with('/') || privileges.is_empty() {
            return None;
        }
        Some(MissingPrivilege {
            path: path.to_owned(),
            privileges,
        })
    }
}

impl fmt::Display for MissingPrivilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.privileges.join("|"), self.path)
    }
}

/// PVE answered a request with an HTTP error status (other than 401 and 595–599).
///
/// PVE reports "not found", locks, digest conflicts and "already running" as 500 with a text
/// message, not as 404/409; the message is what distinguishes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Request method.
    pub method: String,
    /// API path, e.g. `/nodes/pve/lxc/100/config`.
    pub path: String,
    /// PVE's message: the body `message` (pve-http-server ≥ 5.2), else the reason phrase,
    /// else a plain-text body, trimmed.
    pub message: String,
    /// Parameter errors (400): parameter name → problem.
    pub errors: BTreeMap<String, String>,
    /// For a permission failure, the missing privilege and its path.
    pub permission: Option<MissingPrivilege>,
}

/// Longest message kept from an error response (body message, reason phrase, plain-text body,
/// each parameter error): the body may be up to the client's 8 MiB cap, and the message is
/// logged and reported.
const MAX_MESSAGE: usize = 1024;
/// Most parameter errors kept from one response (PVE names one per bad parameter).
const MAX_PARAM_ERRORS: usize = 64;
/// Longest parameter name kept.
const MAX_PARAM_NAME: usize = 128;

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl ApiError {
    /// Builds the error from an error response: the reason phrase and the body, either of which
    /// may carry the message (older PVE only the reason, newer both).
    pub fn from_response(
        method: &str,
        path: &str,
        status: u16,
        reason: Option<&str>,
        body: &[u8],
    ) -> Self {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default)]
            message: Option<String>,
            #[serde(default)]
            errors: Option<BTreeMap<String, serde_json::Value>>,
        }
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        let (body_message, errors, plain) = match serde_json::from_slice::<Body>(body) {
            Ok(b) => (
                b.message
                    .map(|m| m.trim_end().to_owned())
                    .filter(|m| !m.is_empty()),
                b.errors
                    .unwrap_or_default()
                    .into_iter()
                    .take(MAX_PARAM_ERRORS)
                    .map(|(k, v)| {
                        let v = match v {
                            serde_json::Value::String(s) => truncate(s.trim_end(), MAX_MESSAGE),
                            other => truncate(&other.to_string(), MAX_MESSAGE),
                        };
                        (truncate(&k, MAX_PARAM_NAME), v)
                    })
                    .collect(),
                None,
            ),
            // The HTTP layer's own errors (501 and friends) come as plain text.
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                (
                    None,
                    BTreeMap::new(),
                    (!text.is_empty()).then(|| truncate(text, MAX_MESSAGE)),
                )
            }
        };
        let message = body_message
            .as_deref()
            .or(reason)
            .map(|m| truncate(m, MAX_MESSAGE))
            .or(plain)
            .unwrap_or_else(|| {
                http::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("unknown error")
                    .to_owned()
            });
        let permission = body_message
            .as_deref()
            .and_then(MissingPrivilege::parse)
            .or_else(|| reason.and_then(MissingPrivilege::parse));
        ApiError {
            status,
            method: method.to_owned(),
            path: path.to_owned(),
            message,
            errors,
            permission,
        }
    }

    /// A 403: the token lacks a privilege (see [`ApiError::permission`]).
    pub fn is_permission_denied(&self) -> bool {
        self.status == 403
    }

    /// The 400 `no such task` PVE returns while a just-created task's log is not yet visible.
    pub fn is_no_such_task(&self) -> bool {
        self.status == 400
            && (self.message.contains("no such task")
                || self.errors.values().any(|v| v.contains("no such task")))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pve api {} {} failed with {}: {}",
            self.method, self.path, self.status, self.message
        )?;
        for (k, v) in &self.errors {
            write!(f, "; {k}: {v}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// A task PVE accepted (the POST returned a UPID) that then ended in an error. A 200 on the POST
/// is not success: authorization, locks and "does not exist" can fail inside the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    /// The task.
    pub upid: Upid,
    /// PVE's exit status text (the `TASK ERROR:` message, newlines replaced by spaces).
    pub exitstatus: String,
    /// The missing privilege, if the exit status or the log names one.
    pub privilege: Option<MissingPrivilege>,
    /// The last lines of the task log (best effort: empty if the log could not be read).
    pub log_tail: Vec<String>,
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pve task {} failed: {}", self.upid, self.exitstatus)?;
        if let Some(p) = &self.privilege {
            write!(f, " (missing privilege {p})")?;
        }
        Ok(())
    }
}

impl std::error::Error for TaskError {}

/// Everything a PVE API call or a task wait can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProxmoxError {
    /// PVE answered with an error status. The request reached PVE; whether it acted depends
    /// on the message (a 500 lock timeout can follow a create that happened).
    #[error(transparent)]
    Api(Box<ApiError>),
    /// 401: the token is unknown, expired, disabled or its secret is wrong. PVE delays every
    /// 401 by 3 s and sends no body. Not retryable.
    #[error("pve api {method} {path}: authentication failed ({})", reason.as_deref().unwrap_or("401"))]
    Unauthorized {
        method: String,
        path: String,
        reason: Option<String>,
    },
    /// A task ran and failed.
    #[error(transparent)]
    Task(Box<TaskError>),
    /// Transport or TLS failure; see [`HttpError::never_sent`].
    #[error(transparent)]
    Http(HttpError),
    /// The answer did not have the expected shape.
    #[error("pve api {method} {path}: cannot decode response: {detail}")]
    Decode {
        method: String,
        path: String,
        detail: String,
    },
    /// `wait_task` gave up waiting. The task keeps running on the server.
    #[error("gave up waiting for pve task {upid} after {waited:?}; it may still be running")]
    WaitTimeout { upid: Upid, waited: Duration },
    /// `wait_task` was cancelled. The task keeps running on the server.
    #[error("stopped waiting for pve task {upid} (cancelled); it may still be running")]
    Cancelled { upid: Upid },
    /// 595–599: pveproxy could not complete its forward to pvedaemon (or another node); the
    /// AnyEvent pseudo-status. Transport-class and retryable; for a mutation, check whether it
    /// took effect first (596 includes failures after the request was sent).
    #[error("pve api {method} {path}: proxy error {status}{}", reason.as_deref().map(|r| format!(" {r}")).unwrap_or_default())]
    Proxy {
        method: String,
        path: String,
        status: u16,
        reason: Option<String>,
    },
    /// A caller-supplied argument was refused before anything was sent.
    #[error("invalid argument {what}: {detail}")]
    InvalidArgument { what: &'static str, detail: String },
    /// This implementation of `ProxmoxApi` does not offer the operation (a test fake).
    #[error("operation {operation} is not supported by this pve api implementation")]
    Unsupported { operation: &'static str },
}

impl ProxmoxError {
    /// Worth repeating after a short pause: transport hiccups and 595–599. For a mutation,
    /// repeat blindly only if [`ProxmoxError::never_sent`] holds; otherwise read state first.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProxmoxError::Http(e) => e.is_transient(),
            ProxmoxError::Proxy { .. } => true,
            _ => false,
        }
    }

    /// The request certainly did not reach PVE, so it cannot have had an effect.
    pub fn never_sent(&self) -> bool {
        match self {
            ProxmoxError::Http(e) => e.never_sent(),
            ProxmoxError::InvalidArgument { .. } | ProxmoxError::Unsupported { .. } => true,
            _ => false,
        }
    }

    /// The missing privilege, for an API 403 or a task that failed a permission check.
    pub fn missing_privilege(&self) -> Option<&MissingPrivilege> {
        match self {
            ProxmoxError::Api(e) => e.permission.as_ref(),
            ProxmoxError::Task(e) => e.privilege.as_ref(),
            _ => None,
        }
    }

    /// The HTTP status PVE answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProxmoxError::Api(e) => Some(e.status),
            ProxmoxError::Unauthorized { .. } => Some(401),
            ProxmoxError::Proxy { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<HttpError> for ProxmoxError {
    fn from(e: HttpError) -> Self {
        ProxmoxError::Http(e)
    }
}

impl From<ApiError> for ProxmoxError {
    fn from(e: ApiError) -> Self {
        ProxmoxError::Api(Box::new(e))
    }
}

impl From<TaskError> for ProxmoxError {
    fn from(e: TaskError) -> Self {
        ProxmoxError::Task(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/../../testdata/pve/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn single_privilege_from_a_403_body_and_reason() {
        let reason = "Permission check failed (/vms/100, VM.Config.Options)";
        let e = ApiError::from_response(
            "PUT",
            "/nodes/pve/lxc/100/config",
            403,
            Some(reason),
            &fixture("error-403.json"),
        );
        assert!(e.is_permission_denied());
        assert_eq!(e.message, reason, "body message, trailing newline trimmed");
        let p = e.permission.as_ref().unwrap();
        assert_eq!(p.path, "/vms/100");
        assert_eq!(p.privileges, ["VM.Config.Options"]);
        assert_eq!(
            e.to_string(),
            "pve api PUT /nodes/pve/lxc/100/config failed with 403: Permission check failed (/vms/100, VM.Config.Options)"
        );
    }

    #[test]
    fn any_of_list_from_the_reason_only_as_older_pve_sends_it() {
        let reason = "Permission check failed (/vms/100, VM.Config.Disk|VM.Config.CPU|VM.Config.Memory|VM.Config.Network|VM.Config.Options)";
        let e = ApiError::from_response("PUT", "/x", 403, Some(reason), br#"{"data":null}"#);
        assert_eq!(e.message, reason);
        let p = e.permission.unwrap();
        assert_eq!(p.path, "/vms/100");
        assert_eq!(p.privileges.len(), 5);
        assert_eq!(p.privileges[4], "VM.Config.Options");
        assert_eq!(p.to_string(), "VM.Config.Disk|VM.Config.CPU|VM.Config.Memory|VM.Config.Network|VM.Config.Options on /vms/100");
    }

    #[test]
    fn permission_from_the_body_when_the_reason_is_missing() {
        let body = br#"{"data":null,"message":"Permission check failed (/storage/local, Datastore.AllocateSpace)\n"}"#;
        let e = ApiError::from_response("POST", "/nodes/pve/vzdump", 403, None, body);
        assert_eq!(
            e.permission.unwrap().privileges,
            ["Datastore.AllocateSpace"]
        );
    }

    #[test]
    fn bare_permission_message_has_no_privilege() {
        let e = ApiError::from_response("GET", "/x", 403, Some("Permission check failed"), b"");
        assert!(e.permission.is_none());
        assert_eq!(e.message, "Permission check failed");
    }

    #[test]
    fn parameter_errors_map_from_400() {
        let e = ApiError::from_response(
            "POST",
            "/nodes/pve/lxc",
            400,
            Some("Parameter verification failed."),
            &fixture("error-400.json"),
        );
        assert_eq!(e.message, "Parameter verification failed.");
        assert_eq!(
            e.errors["vmid"],
            "type check ('integer') failed - got 'abc'"
        );
        assert!(
            e.to_string()
                .ends_with("; vmid: type check ('integer') failed - got 'abc'"),
            "{e}"
        );
        assert!(!e.is_no_such_task());
    }

    #[test]
    fn pre_5_2_400_without_message_uses_the_reason() {
        let e = ApiError::from_response(
            "POST",
            "/x",
            400,
            Some("Parameter verification failed."),
            &fixture("error-400-pre-5.2.json"),
        );
        assert_eq!(e.message, "Parameter verification failed.");
        assert_eq!(
            e.errors["command"],
            "type check ('string') failed - got ARRAY"
        );
    }

    #[test]
    fn no_such_task_is_recognised() {
        let e = ApiError::from_response(
            "GET",
            "/t",
            400,
            None,
            &fixture("error-400-no-such-task-derived.json"),
        );
        assert!(e.is_no_such_task());
        assert_eq!(e.errors["upid"], "no such task");
    }

    #[test]
    fn multi_line_500_keeps_the_whole_body_message() {
        let e = ApiError::from_response(
            "POST",
            "/x",
            500,
            Some("create sdn zone object failed: 400 Parameter verification failed."),
            &fixture("error-500-multiline.json"),
        );
        assert_eq!(
            e.message,
            "create sdn zone object failed: 400 Parameter verification failed.\nipam: ipam-simple not existing"
        );
    }

    #[test]
    fn plain_text_and_empty_bodies() {
        let e = ApiError::from_response(
            "GET",
            "/x",
            501,
            None,
            b"Unexpected content for method 'GET'",
        );
        assert_eq!(e.message, "Unexpected content for method 'GET'");
        let e = ApiError::from_response("GET", "/x", 502, None, b"");
        assert_eq!(e.message, "Bad Gateway");
        let long = "x".repeat(5000);
        let e = ApiError::from_response("GET", "/x", 500, None, long.as_bytes());
        assert!(e.message.len() < 1100);
    }

    #[test]
    fn json_messages_reasons_and_parameter_errors_are_bounded_too() {
        // A hostile or broken PVE can fill the whole body cap with one message.
        let huge = "m".repeat(1 << 20);
        let body = serde_json::json!({
            "message": format!("no such task {huge}"),
            "errors": (0..1000)
                .map(|i| (format!("p{i}{}", "k".repeat(500)), huge.clone()))
                .collect::<BTreeMap<_, _>>(),
        })
        .to_string();
        let e = ApiError::from_response("GET", "/x", 400, Some(&huge), body.as_bytes());
        assert!(
            e.message.len() <= MAX_MESSAGE + '…'.len_utf8(),
            "{}",
            e.message.len()
        );
        assert!(e.message.starts_with("no such task") && e.message.ends_with('…'));
        assert!(e.is_no_such_task());
        assert_eq!(e.errors.len(), MAX_PARAM_ERRORS);
        for (k, v) in &e.errors {
            assert!(k.len() <= MAX_PARAM_NAME + 3 && v.len() <= MAX_MESSAGE + 3);
        }
        assert!(e.to_string().len() < 200_000, "{}", e.to_string().len());
        // Only the reason phrase: bounded as well.
        let e = ApiError::from_response("GET", "/x", 500, Some(&huge), b"");
        assert!(e.message.len() <= MAX_MESSAGE + '…'.len_utf8());
        // A permission named in a long message is still found.
        let e = ApiError::from_response(
            "GET",
            "/x",
            403,
            Some(&format!(
                "Permission check failed (/vms/100, VM.Audit) {huge}"
            )),
            b"",
        );
        assert_eq!(e.permission.unwrap().privileges, ["VM.Audit"]);
    }

    #[test]
    fn privilege_in_task_texts() {
        let p =
            MissingPrivilege::parse("TASK ERROR: Permission check failed (/vms/100, VM.Backup)")
                .unwrap();
        assert_eq!(
            p,
            MissingPrivilege {
                path: "/vms/100".into(),
                privileges: vec!["VM.Backup".into()]
            }
        );
        assert!(MissingPrivilege::parse("CT is locked (backup)").is_none());
        assert!(MissingPrivilege::parse("Permission check failed (garbage)").is_none());
    }

    #[test]
    fn errors_stay_small_enough_to_return_by_value() {
        // Large payloads are boxed so every `Result<_, ProxmoxError>` stays cheap to move.
        assert!(
            std::mem::size_of::<ProxmoxError>() <= 128,
            "{}",
            std::mem::size_of::<ProxmoxError>()
        );
    }

    #[test]
    fn retry_and_status_helpers() {
        let proxy = ProxmoxError::Proxy {
            method: "GET".into(),
            path: "/x".into(),
            status: 596,
            reason: Some("Connection timed out".into()),
        };
        assert!(proxy.is_retryable());
        assert!(!proxy.never_sent());
        assert_eq!(proxy.status(), Some(596));
        assert_eq!(
            proxy.to_string(),
            "pve api GET /x: proxy error 596 Connection timed out"
        );
        let unauth = ProxmoxError::Unauthorized {
            method: "GET".into(),
            path: "/version".into(),
            reason: Some("Authentication failed!".into()),
        };
        assert!(!unauth.is_retryable());
        assert_eq!(unauth.status(), Some(401));
        assert_eq!(
            unauth.to_string(),
            "pve api GET /version: authentication failed (Authentication failed!)"
        );
        let api = ProxmoxError::from(ApiError::from_response(
            "GET",
            "/x",
            500,
            Some("CT is locked (backup)"),
            b"",
        ));
        assert!(!api.is_retryable());
        assert!(api.missing_privilege().is_none());
    }
}

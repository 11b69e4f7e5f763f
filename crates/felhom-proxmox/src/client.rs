//! `PveClient`: the HTTPS implementation of `ProxmoxApi` against `https://HOST:8006/api2/json`.
//!
//! Requests are built by pure functions (path segments percent-encoded, parameters
//! form-urlencoded, booleans as 0/1, GET/DELETE parameters in the query and never a body) and
//! responses decoded by pure functions (the `{"data": ...}` envelope, `data: null` where PVE
//! means "done", error statuses into typed errors), so both are unit-tested without a network.
//! The token secret is read only when the `Authorization` header is built for a request, and
//! that header is marked sensitive.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use http::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use http::Method;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::api::{
    ConfigUpdate, ProxmoxApi, RestoreRequest, SetConfigOutcome, VzdumpOutcome, VzdumpRequest,
};
use crate::error::{ApiError, ProxmoxError};
use crate::types::{
    GuestSummary, LxcConfig, NodeInfo, NodeStatus, Permissions, Snapshot, StorageContent,
    StorageInfo, TaskFilter, TaskList, TaskListItem, TaskLog, TaskLogLine, TaskSource, TaskStatus,
    Version,
};
use crate::upid::{is_node_name, Upid};
use felhom_http::Secret;
use felhom_http::TlsTrust;
use felhom_http::{HttpRequest, HttpResponse, HttpsClient, HttpsConfig, HttpsConfigError};
use felhom_types::{HttpsUrl, UrlError, Vmid};

/// Default whole-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default response size limit: generous for task logs and storage listings, still bounded.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Longest time spent establishing a TCP connection, whatever the request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PVE API token: `user@realm!name` and its secret. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    token_id: String,
    secret: Secret,
}

/// Why a token id or secret was refused. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token id breaks one of PVE's rules for `user@realm!name`; `reason` says which.
    #[error("{reason}, got {token_id:?}")]
    TokenId {
        token_id: String,
        reason: &'static str,
    },
    /// The secret is empty or unusable in the header (the value itself is not shown).
    #[error("{reason}")]
    Secret { reason: &'static str },
}

/// Which part of `[A-Za-z][A-Za-z0-9._-]+` (at least 2 characters) `s` breaks, if any.
fn pve_ident_problem(s: &str) -> Option<IdentProblem> {
    let b = s.as_bytes();
    if b.len() < 2 {
        Some(IdentProblem::Short)
    } else if !b[0].is_ascii_alphabetic() {
        Some(IdentProblem::First)
    } else if !b[1..]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
    {
        Some(IdentProblem::Chars)
    } else {
        None
    }
}

enum IdentProblem {
    Short,
    First,
    Chars,
}

impl ApiToken {
    /// Validates and builds a token: [`ApiToken::check_token_id`] and
    /// [`ApiToken::check_secret`].
    pub fn new(token_id: impl Into<String>, secret: Secret) -> Result<Self, TokenError> {
        let token_id = token_id.into();
        Self::check_token_id(&token_id)?;
        Self::check_secret(&secret)?;
        Ok(ApiToken { token_id, secret })
    }

    /// PVE's rules for a token id (`split_tokenid` and pve-access-control's patterns): `user@realm!name`,
    /// the user 1 to 60 characters without whitespace, `:`, `/` or `!`, the realm and the token
    /// name `[A-Za-z][A-Za-z0-9._-]+` (realm at most 32, name at most 64 characters). The error
    /// says which rule is broken.
    pub fn check_token_id(token_id: &str) -> Result<(), TokenError> {
        let bad = |reason| TokenError::TokenId {
            token_id: token_id.to_owned(),
            reason,
        };
        if token_id.len() > 128 {
            return Err(bad("must be at most 128 characters"));
        }
        let (userid, name) = token_id
            .rsplit_once('!')
            .ok_or_else(|| bad("must be user@realm!tokenname"))?;
        let (user, realm) = userid
            .rsplit_once('@')
            .ok_or_else(|| bad("must be user@realm!tokenname"))?;
        if user.is_empty()
            || user.len() > 60
            || user
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ':' | '/' | '!'))
        {
            return Err(bad(
                "user must be 1 to 60 characters without whitespace, ':', '/' or '!'",
            ));
        }
        if pve_ident_problem(realm).is_some() || realm.len() > 32 {
            return Err(bad(
                "realm must be 2 to 32 characters matching [A-Za-z][A-Za-z0-9._-]+",
            ));
        }
        match pve_ident_problem(name) {
            Some(IdentProblem::Short) => Err(bad(
                "token name must be at least 2 characters ([A-Za-z][A-Za-z0-9._-]+)",
            )),
            Some(IdentProblem::First) => Err(bad(
                "token name must start with a letter ([A-Za-z][A-Za-z0-9._-]+)",
            )),
            Some(IdentProblem::Chars) => Err(bad(
                "token name may hold only letters, digits, '.', '_' and '-' ([A-Za-z][A-Za-z0-9._-]+)",
            )),
            None if name.len() > 64 => Err(bad("token name must be at most 64 characters")),
            None => Ok(()),
        }
    }

    /// The secret must be usable in the header: PVE splits on the last `=`, stops at `;` and
    /// percent-decodes, so those characters cannot appear. The error never shows the secret.
    pub fn check_secret(secret: &Secret) -> Result<(), TokenError> {
        if secret.is_empty() {
            return Err(TokenError::Secret {
                reason: "token secret is empty",
            });
        }
        if !secret
            .expose()
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b'=' | b'%' | b','))
        {
            return Err(TokenError::Secret {
                reason:
                    "token secret must be printable ASCII without whitespace, ';', '=', '%' or ','",
            });
        }
        Ok(())
    }

    /// `user@realm!name`.
    pub fn token_id(&self) -> &str {
        &self.token_id
    }

    /// The secret (its `Debug` and `Display` are redacted; only `expose` shows it).
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The `Authorization` header value, built at send time and marked sensitive so hyper and
    /// any header dump leave it out.
    fn header_value(&self) -> HeaderValue {
        let mut v = HeaderValue::from_str(&format!(
            "PVEAPIToken={}={}",
            self.token_id,
            self.secret.expose()
        ))
        // Both parts were validated as visible ASCII, which is always a valid header value.
        .unwrap_or_else(|_| HeaderValue::from_static("PVEAPIToken=invalid"));
        v.set_sensitive(true);
        v
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("token_id", &self.token_id)
            .field("secret", &self.secret)
            .finish()
    }
}

/// Settings of a [`PveClient`]. `Debug` is safe: the token prints redacted.
#[derive(Debug, Clone)]
pub struct PveClientConfig {
    /// `https://host:8006` (a trailing `/api2/json` is accepted).
    pub api_url: String,
    /// The node this agent manages (its own).
    pub node: String,
    /// API token.
    pub token: ApiToken,
    /// Certificate trust.
    pub trust: TlsTrust,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Response size limit.
    pub max_body_bytes: usize,
}

impl PveClientConfig {
    /// A config with the default timeout and body limit.
    pub fn new(
        api_url: impl Into<String>,
        node: impl Into<String>,
        token: ApiToken,
        trust: TlsTrust,
    ) -> Self {
        PveClientConfig {
            api_url: api_url.into(),
            node: node.into(),
            token,
            trust,
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Why a [`PveClient`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientConfigError {
    /// `api_url` is unusable.
    #[error("proxmox.api_url: {0}")]
    ApiUrl(UrlError),
    /// `node` is not a PVE node name.
    #[error("proxmox.node: {0}")]
    Node(NodeNameError),
    /// The HTTPS client could not be built (TLS trust, limits).
    #[error(transparent)]
    Https(#[from] HttpsConfigError),
}

/// The PVE API's base URL: `https://HOST[:PORT][/prefix]`, with or without the trailing
/// `/api2/json` (the client adds it). The one rule for `proxmox.api_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl(HttpsUrl);

impl ApiUrl {
    /// Parses `s`: an [`HttpsUrl`] whose path is empty or ends with `/api2/json`.
    pub fn parse(s: &str) -> Result<ApiUrl, UrlError> {
        let url = HttpsUrl::parse(s.trim())?;
        if url.path().is_empty() {
            return Ok(ApiUrl(url));
        }
        match url.path().strip_suffix("/api2/json") {
            Some(prefix) => Ok(ApiUrl(url.with_path(prefix))),
            None => Err(UrlError::new(
                "path must be empty or end with /api2/json (the client adds it)",
                s,
            )),
        }
    }

    /// The URL without `/api2/json`, as an operator writes it.
    pub fn url(&self) -> &HttpsUrl {
        &self.0
    }

    /// The API base the client sends to: `https://host:8006/api2/json`.
    pub fn api_base(&self) -> String {
        self.0.join("/api2/json")
    }
}

impl fmt::Display for ApiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A string that is not a PVE node name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a node name (1 to 63 letters, digits and inner '-'), got {node:?}")]
pub struct NodeNameError {
    /// The string given.
    pub node: String,
}

/// PVE's `pve-node` format (a DNS label): the one rule for `proxmox.node`.
pub fn check_node_name(node: &str) -> Result<(), NodeNameError> {
    if is_node_name(node) {
        Ok(())
    } else {
        Err(NodeNameError {
            node: node.to_owned(),
        })
    }
}

/// Normalises `https://host:8006[/api2/json]` to the API base without a trailing slash.
pub(crate) fn api_base(url: &str) -> Result<String, ClientConfigError> {
    ApiUrl::parse(url)
        .map(|u| u.api_base())
        .map_err(ClientConfigError::ApiUrl)
}

/// Characters left as-is in a path segment; everything else is percent-encoded (a UPID's
/// `:`, `@` and `!` included, as Proxmox's own Rust client does).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// One API call, before the token and base URL are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) method: Method,
    /// Path below `/api2/json`, segments already encoded.
    pub(crate) path: String,
    pub(crate) params: Vec<(String, String)>,
}

impl Call {
    fn new(method: Method, path: String) -> Self {
        Call {
            method,
            path,
            params: Vec::new(),
        }
    }
    fn param(mut self, key: &str, value: impl Into<String>) -> Self {
        self.params.push((key.to_owned(), value.into()));
        self
    }
    /// PVE's schema accepts only `1`/`0` for booleans in form bodies (`true` is a 400).
    fn flag(self, key: &str, value: bool) -> Self {
        self.param(key, if value { "1" } else { "0" })
    }

    fn encoded_params(&self) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.params {
            ser.append_pair(k, v);
        }
        ser.finish()
    }

    /// The HTTP request: parameters in the query for GET/DELETE (a body there is a 501), in a
    /// form body otherwise.
    pub(crate) fn to_request(&self, base: &str, token: &ApiToken) -> HttpRequest {
        let body_method = self.method == Method::POST || self.method == Method::PUT;
        let mut url = format!("{base}{}", self.path);
        if !body_method && !self.params.is_empty() {
            url.push('?');
            url.push_str(&self.encoded_params());
        }
        let mut req = HttpRequest::new(self.method.clone(), url)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(AUTHORIZATION, token.header_value());
        if body_method && !self.params.is_empty() {
            req = req.body("application/x-www-form-urlencoded", self.encoded_params());
        }
        req
    }
}

fn invalid(what: &'static str, detail: String) -> ProxmoxError {
    ProxmoxError::InvalidArgument { what, detail }
}

fn check_vmid(vmid: u32) -> Result<(), ProxmoxError> {
    Vmid::try_from(vmid)
        .map(drop)
        .map_err(|e| invalid("vmid", e.to_string()))
}

/// PVE's `pve-configid`: `[a-z][a-z0-9_-]+`, case-insensitive (config keys, snapshot names).
fn is_configid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
}

fn check_snapname(name: &str) -> Result<(), ProxmoxError> {
    if !is_configid(name) || name.len() > 40 {
        return Err(invalid(
            "snapshot name",
            format!("{name:?} must match [a-zA-Z][a-zA-Z0-9_-]+ and be at most 40 characters"),
        ));
    }
    // PVE reserves both: `current` is the live state, `vzdump` the backup's temporary snapshot.
    if name == "current" || name == "vzdump" {
        return Err(invalid(
            "snapshot name",
            format!("{name:?} is reserved by pve"),
        ));
    }
    Ok(())
}

/// PVE's `pve-storage-id`: `[a-z][a-z0-9\-_.]*[a-z0-9]`, case-insensitive.
fn check_storage(storage: &str) -> Result<(), ProxmoxError> {
    let b = storage.as_bytes();
    let ok = b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "storage",
            format!("{storage:?} is not a pve storage id"),
        ))
    }
}

fn check_volid(volid: &str) -> Result<(), ProxmoxError> {
    let ok = volid
        .split_once(':')
        .is_some_and(|(storage, rest)| check_storage(storage).is_ok() && !rest.is_empty())
        && !volid.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "volume id",
            format!("{volid:?} is not storage:volume"),
        ))
    }
}

fn check_no_control(what: &'static str, s: &str) -> Result<(), ProxmoxError> {
    // Newlines are fine (descriptions are multi-line); other control characters are not.
    if s.chars().any(|c| c.is_control() && c != '\n') {
        Err(invalid(what, "contains control characters".to_owned()))
    } else {
        Ok(())
    }
}

/// Parameters a `ConfigUpdate` may not smuggle in `set`: they are the call's own.
const RESERVED_CONFIG_KEYS: &[&str] = &["delete", "digest", "revert", "node", "vmid"];
/// Parameters `RestoreRequest` types itself.
const RESERVED_RESTORE_KEYS: &[&str] = &[
    "vmid",
    "ostemplate",
    "restore",
    "force",
    "storage",
    "unique",
    "start",
    "node",
];

/// Pure request builders, one per API operation.
pub(crate) mod calls {
    use super::*;

    fn node_path(node: &str, rest: &str) -> String {
        format!("/nodes/{}{rest}", seg(node))
    }

    pub(crate) fn version() -> Call {
        Call::new(Method::GET, "/version".into())
    }
    pub(crate) fn nodes() -> Call {
        Call::new(Method::GET, "/nodes".into())
    }
    pub(crate) fn node_status(node: &str) -> Call {
        Call::new(Method::GET, node_path(node, "/status"))
    }
    pub(crate) fn list_lxc(node: &str) -> Call {
        Call::new(Method::GET, node_path(node, "/lxc"))
    }
    pub(crate) fn guest_status(node: &str, vmid: u32) -> Result<Call, ProxmoxError> {
        check_vmid(vmid)?;
        Ok(Call::new(
            Method::GET,
            node_path(node, &format!("/lxc/{vmid}/status/current")),
        ))
    }
    pub(crate) fn guest_config(node: &str, vmid: u32) -> Result<Call, ProxmoxError> {
        check_vmid(vmid)?;
        Ok(Call::new(
            Method::GET,
            node_path(node, &format!("/lxc/{vmid}/config")),
        ))
    }
    pub(crate) fn list_storage() -> Call {
        Call::new(Method::GET, "/storage".into())
    }
    pub(crate) fn node_storage(node: &str) -> Call {
        Call::new(Method::GET, node_path(node, "/storage"))
    }
    pub(crate) fn storage_content(
        node: &str,
        storage: &str,
        content: Option<&str>,
        vmid: Option<u32>,
    ) -> Result<Call, ProxmoxError> {
        check_storage(storage)?;
        let mut call = Call::new(
            Method::GET,
            node_path(node, &format!("/storage/{}/content", seg(storage))),
        );
        if let Some(content) = content {
            if content.is_empty() || !content.bytes().all(|b| b.is_ascii_lowercase()) {
                return Err(invalid(
                    "content type",
                    format!("{content:?} is not a pve content type"),
                ));
            }
            call = call.param("content", content);
        }
        if let Some(vmid) = vmid {
            check_vmid(vmid)?;
            call = call.param("vmid", vmid.to_string());
        }
        Ok(call)
    }
    pub(crate) fn task_status(upid: &Upid) -> Call {
        Call::new(
            Method::GET,
            node_path(
                upid.node(),
                &format!("/tasks/{}/status", seg(upid.as_str())),
            ),
        )
    }
    pub(crate) fn task_log(upid: &Upid, start: u64, limit: u64) -> Call {
        Call::new(
            Method::GET,
            node_path(upid.node(), &format!("/tasks/{}/log", seg(upid.as_str()))),
        )
        .param("start", start.to_string())
        .param("limit", limit.to_string())
    }
    pub(crate) fn list_tasks(node: &str, filter: &TaskFilter) -> Result<Call, ProxmoxError> {
        let mut call = Call::new(Method::GET, node_path(node, "/tasks"));
        if let Some(vmid) = filter.vmid {
            check_vmid(vmid)?;
            call = call.param("vmid", vmid.to_string());
        }
        if let Some(kind) = &filter.typefilter {
            // A UPID's type field: no `:`, whitespace or `/`; task types are words.
            if kind.is_empty()
                || !kind
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
            {
                return Err(invalid(
                    "task type",
                    format!("{kind:?} is not a pve task type"),
                ));
            }
            call = call.param("typefilter", kind.as_str());
        }
        if let Some(since) = filter.since {
            call = call.param("since", since.to_string());
        }
        if filter.source != TaskSource::Archive {
            call = call.param("source", filter.source.as_str());
        }
        if let Some(limit) = filter.limit {
            call = call.param("limit", limit.to_string());
        }
        Ok(call)
    }
    pub(crate) fn permissions() -> Call {
        Call::new(Method::GET, "/access/permissions".into())
    }
    pub(crate) fn list_snapshots(node: &str, vmid: u32) -> Result<Call, ProxmoxError> {
        check_vmid(vmid)?;
        Ok(Call::new(
            Method::GET,
            node_path(node, &format!("/lxc/{vmid}/snapshot")),
        ))
    }
    pub(crate) fn restore_lxc(node: &str, req: &RestoreRequest) -> Result<Call, ProxmoxError> {
        check_vmid(req.vmid)?;
        check_volid(&req.archive)?;
        let mut call = Call::new(Method::POST, node_path(node, "/lxc"))
            .param("vmid", req.vmid.to_string())
            .param("ostemplate", req.archive.as_str())
            .flag("restore", true);
        if let Some(storage) = &req.storage {
            check_storage(storage)?;
            call = call.param("storage", storage.as_str());
        }
        if req.force {
            call = call.flag("force", true);
        }
        if req.unique {
            call = call.flag("unique", true);
        }
        if req.start {
            call = call.flag("start", true);
        }
        for (k, v) in &req.extra {
            if !is_configid(k) || RESERVED_RESTORE_KEYS.contains(&k.as_str()) {
                return Err(invalid(
                    "restore parameter",
                    format!("{k:?} is not an allowed extra key"),
                ));
            }
            check_no_control("restore parameter value", v)?;
            call = call.param(k, v.as_str());
        }
        Ok(call)
    }
    pub(crate) fn vzdump(node: &str, req: &VzdumpRequest) -> Result<Call, ProxmoxError> {
        check_vmid(req.vmid)?;
        check_storage(&req.storage)?;
        let mut call = Call::new(Method::POST, node_path(node, "/vzdump"))
            .param("vmid", req.vmid.to_string())
            .param("storage", req.storage.as_str())
            .param("mode", req.mode.as_str())
            .param("compress", req.compress.as_str());
        if let Some(notes) = &req.notes {
            check_no_control("notes", notes)?;
            if notes.len() > 1024 {
                return Err(invalid(
                    "notes",
                    "longer than pve's 1024 characters".to_owned(),
                ));
            }
            call = call.param("notes-template", notes.as_str());
        }
        if req.protected {
            call = call.flag("protected", true);
        }
        Ok(call)
    }
    pub(crate) fn snapshot(
        node: &str,
        vmid: u32,
        name: &str,
        description: Option<&str>,
    ) -> Result<Call, ProxmoxError> {
        check_vmid(vmid)?;
        check_snapname(name)?;
        let mut call = Call::new(
            Method::POST,
            node_path(node, &format!("/lxc/{vmid}/snapshot")),
        )
        .param("snapname", name);
        if let Some(d) = description {
            check_no_control("snapshot description", d)?;
            call = call.param("description", d);
        }
        Ok(call)
    }
    pub(crate) fn rollback(
        node: &str,
        vmid: u32,
        name: &str,
        start: bool,
    ) -> Result<Call, ProxmoxError> {
        check_vmid(vmid)?;
        check_snapname(name)?;
        let call = Call::new(
            Method::POST,
            node_path(
                node,
                &format!("/lxc/{vmid}/snapshot/{}/rollback", seg(name)),
            ),
        );
        // the schema's `start` (default 0): start the CT once rolled back
        Ok(if start {
            call.flag("start", true)
        } else {
            call
        })
    }
    pub(crate) fn destroy_guest(node: &str, vmid: u32) -> Result<Call, ProxmoxError> {
        check_vmid(vmid)?;
        // DELETE carries its parameters in the query (a body is 501 in pveproxy); without
        // `force` PVE refuses a running CT, so the caller stops it first
        Ok(
            Call::new(Method::DELETE, node_path(node, &format!("/lxc/{vmid}")))
                .flag("purge", true)
                .flag("destroy-unreferenced-disks", true),
        )
    }
    pub(crate) fn restore_over(
        node: &str,
        vmid: u32,
        archive: &str,
        storage: &str,
    ) -> Result<Call, ProxmoxError> {
        restore_lxc(
            node,
            &RestoreRequest {
                vmid,
                archive: archive.to_owned(),
                storage: Some(storage.to_owned()),
                force: true,
                ..RestoreRequest::default()
            },
        )
    }
    pub(crate) fn delete_snapshot(node: &str, vmid: u32, name: &str) -> Result<Call, ProxmoxError> {
        check_vmid(vmid)?;
        check_snapname(name)?;
        Ok(Call::new(
            Method::DELETE,
            node_path(node, &format!("/lxc/{vmid}/snapshot/{}", seg(name))),
        ))
    }
    pub(crate) fn start(node: &str, vmid: u32) -> Result<Call, ProxmoxError> {
        check_vmid(vmid)?;
        Ok(Call::new(
            Method::POST,
            node_path(node, &format!("/lxc/{vmid}/status/start")),
        ))
    }
    pub(crate) fn stop(node: &str, vmid: u32) -> Result<Call, ProxmoxError> {
        check_vmid(vmid)?;
        Ok(Call::new(
            Method::POST,
            node_path(node, &format!("/lxc/{vmid}/status/stop")),
        ))
    }
    pub(crate) fn set_config(
        node: &str,
        vmid: u32,
        update: &ConfigUpdate,
    ) -> Result<Call, ProxmoxError> {
        check_vmid(vmid)?;
        if update.set.is_empty() && update.delete.is_empty() {
            // PVE would answer 500 "no options specified".
            return Err(invalid(
                "config update",
                "sets and deletes nothing".to_owned(),
            ));
        }
        let mut call = Call::new(Method::PUT, node_path(node, &format!("/lxc/{vmid}/config")));
        for (k, v) in &update.set {
            if !is_configid(k) || RESERVED_CONFIG_KEYS.contains(&k.as_str()) {
                return Err(invalid(
                    "config key",
                    format!("{k:?} is not a settable config key"),
                ));
            }
            check_no_control("config value", v)?;
            call = call.param(k, v.as_str());
        }
        let mut deleted = BTreeSet::new();
        for k in &update.delete {
            if !is_configid(k) || RESERVED_CONFIG_KEYS.contains(&k.as_str()) {
                return Err(invalid(
                    "config key",
                    format!("{k:?} is not a deletable config key"),
                ));
            }
            if update.set.contains_key(k) {
                // PVE: "you can't use '-opt' and -delete opt' at the same time".
                return Err(invalid(
                    "config key",
                    format!("{k:?} is both set and deleted"),
                ));
            }
            deleted.insert(k.as_str());
        }
        if !deleted.is_empty() {
            call = call.param("delete", deleted.into_iter().collect::<Vec<_>>().join(","));
        }
        if let Some(digest) = &update.digest {
            if digest.is_empty()
                || digest.len() > 40
                || !digest.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(invalid(
                    "digest",
                    format!("{digest:?} is not a sha-1 hex digest"),
                ));
            }
            call = call.param("digest", digest.as_str());
        }
        Ok(call)
    }
}

/// The decode detail for a list endpoint whose `data` is `null`.
const NOT_A_LIST: &str = "expected a list in data, got null";

/// The `{"data": ..., "total": n}` envelope.
#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
    #[serde(default, deserialize_with = "crate::lenient::opt_u64")]
    total: Option<u64>,
}

/// Maps a non-2xx response to its error.
pub(crate) fn check_status(
    method: &str,
    path: &str,
    resp: &HttpResponse,
) -> Result<(), ProxmoxError> {
    match resp.status {
        200..=299 => Ok(()),
        401 => Err(ProxmoxError::Unauthorized {
            method: method.to_owned(),
            path: path.to_owned(),
            reason: resp.reason.clone(),
        }),
        595..=599 => Err(ProxmoxError::Proxy {
            method: method.to_owned(),
            path: path.to_owned(),
            status: resp.status,
            reason: resp.reason.clone(),
        }),
        status => Err(ProxmoxError::from(ApiError::from_response(
            method,
            path,
            status,
            resp.reason.as_deref(),
            &resp.body,
        ))),
    }
}

/// Decodes a successful response's envelope.
pub(crate) fn decode<T: DeserializeOwned>(
    method: &str,
    path: &str,
    resp: &HttpResponse,
) -> Result<(T, Option<u64>), ProxmoxError> {
    check_status(method, path, resp)?;
    let env: Envelope<T> =
        serde_json::from_slice(&resp.body).map_err(|e| ProxmoxError::Decode {
            method: method.to_owned(),
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    Ok((env.data, env.total))
}

fn decode_error(call: &Call, detail: String) -> ProxmoxError {
    ProxmoxError::Decode {
        method: call.method.to_string(),
        path: call.path.clone(),
        detail,
    }
}

fn parse_upid(call: &Call, s: &str) -> Result<Upid, ProxmoxError> {
    s.parse()
        .map_err(|e| decode_error(call, format!("expected a task upid: {e}")))
}

/// The PVE API client for one node.
#[derive(Clone)]
pub struct PveClient {
    http: HttpsClient,
    base: String,
    node: String,
    token: ApiToken,
}

impl fmt::Debug for PveClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PveClient")
            .field("base", &self.base)
            .field("node", &self.node)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl PveClient {
    /// Validates the config and builds the client (no network traffic yet).
    pub fn new(config: PveClientConfig) -> Result<Self, ClientConfigError> {
        let base = api_base(&config.api_url)?;
        check_node_name(&config.node).map_err(ClientConfigError::Node)?;
        let http = HttpsClient::new(HttpsConfig {
            trust: config.trust,
            connect_timeout: config.timeout.min(MAX_CONNECT_TIMEOUT),
            request_timeout: config.timeout,
            max_body_bytes: config.max_body_bytes,
            user_agent: format!("felhom-agent/{}", env!("CARGO_PKG_VERSION")),
        })?;
        Ok(PveClient {
            http,
            base,
            node: config.node,
            token: config.token,
        })
    }

    /// The API base URL, `https://host:8006/api2/json`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn send(&self, call: &Call) -> Result<HttpResponse, ProxmoxError> {
        Ok(self
            .http
            .send(call.to_request(&self.base, &self.token))
            .await?)
    }

    async fn data<T: DeserializeOwned>(&self, call: Call) -> Result<T, ProxmoxError> {
        let resp = self.send(&call).await?;
        decode(call.method.as_str(), &call.path, &resp).map(|(d, _)| d)
    }

    /// A list. PVE answers an empty index with `[]`; `data: null` (or anything not a list) is
    /// a failed read naming the endpoint, never "nothing there" — for the guest list that
    /// would tell the hub every guest is gone.
    async fn list<T: DeserializeOwned>(&self, call: Call) -> Result<Vec<T>, ProxmoxError> {
        let resp = self.send(&call).await?;
        let (data, _) = decode::<Option<Vec<T>>>(call.method.as_str(), &call.path, &resp)?;
        data.ok_or_else(|| decode_error(&call, NOT_A_LIST.to_owned()))
    }

    async fn task(&self, call: Result<Call, ProxmoxError>) -> Result<Upid, ProxmoxError> {
        let call = call?;
        let s: String = self.data(call.clone()).await?;
        parse_upid(&call, &s)
    }
}

impl ProxmoxApi for PveClient {
    fn node(&self) -> &str {
        &self.node
    }

    fn caller(&self) -> Option<&str> {
        Some(self.token.token_id())
    }

    async fn version(&self) -> Result<Version, ProxmoxError> {
        self.data(calls::version()).await
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, ProxmoxError> {
        self.list(calls::nodes()).await
    }

    async fn node_status(&self) -> Result<NodeStatus, ProxmoxError> {
        self.data(calls::node_status(&self.node)).await
    }

    async fn list_lxc(&self) -> Result<Vec<GuestSummary>, ProxmoxError> {
        self.list(calls::list_lxc(&self.node)).await
    }

    async fn guest_status(&self, vmid: u32) -> Result<GuestSummary, ProxmoxError> {
        self.data(calls::guest_status(&self.node, vmid)?).await
    }

    async fn guest_config(&self, vmid: u32) -> Result<LxcConfig, ProxmoxError> {
        self.data(calls::guest_config(&self.node, vmid)?).await
    }

    async fn list_storage(&self) -> Result<Vec<StorageInfo>, ProxmoxError> {
        self.list(calls::list_storage()).await
    }

    async fn node_storage(&self) -> Result<Vec<StorageInfo>, ProxmoxError> {
        self.list(calls::node_storage(&self.node)).await
    }

    async fn storage_content(
        &self,
        storage: &str,
        content: Option<&str>,
        vmid: Option<u32>,
    ) -> Result<Vec<StorageContent>, ProxmoxError> {
        self.list(calls::storage_content(&self.node, storage, content, vmid)?)
            .await
    }

    async fn task_status(&self, upid: &Upid) -> Result<TaskStatus, ProxmoxError> {
        self.data(calls::task_status(upid)).await
    }

    async fn task_log(&self, upid: &Upid, start: u64, limit: u64) -> Result<TaskLog, ProxmoxError> {
        let call = calls::task_log(upid, start, limit);
        let resp = self.send(&call).await?;
        let (lines, total) =
            decode::<Option<Vec<TaskLogLine>>>(call.method.as_str(), &call.path, &resp)?;
        // PVE answers an empty log with one `no content` line, never null
        let lines = lines.ok_or_else(|| decode_error(&call, NOT_A_LIST.to_owned()))?;
        Ok(TaskLog { lines, total })
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<TaskList, ProxmoxError> {
        let call = calls::list_tasks(&self.node, filter)?;
        let resp = self.send(&call).await?;
        let (tasks, total) =
            decode::<Option<Vec<TaskListItem>>>(call.method.as_str(), &call.path, &resp)?;
        let tasks = tasks.ok_or_else(|| decode_error(&call, NOT_A_LIST.to_owned()))?;
        Ok(TaskList { tasks, total })
    }

    async fn permissions(&self) -> Result<Permissions, ProxmoxError> {
        self.data(calls::permissions()).await
    }

    async fn list_snapshots(&self, vmid: u32) -> Result<Vec<Snapshot>, ProxmoxError> {
        self.list(calls::list_snapshots(&self.node, vmid)?).await
    }

    async fn restore_lxc(&self, req: &RestoreRequest) -> Result<Upid, ProxmoxError> {
        self.task(calls::restore_lxc(&self.node, req)).await
    }

    async fn vzdump(&self, req: &VzdumpRequest) -> Result<VzdumpOutcome, ProxmoxError> {
        let call = calls::vzdump(&self.node, req)?;
        let s: String = self.data(call.clone()).await?;
        vzdump_outcome(&call, &s)
    }

    async fn snapshot(
        &self,
        vmid: u32,
        name: &str,
        description: Option<&str>,
    ) -> Result<Upid, ProxmoxError> {
        self.task(calls::snapshot(&self.node, vmid, name, description))
            .await
    }

    async fn rollback(&self, vmid: u32, name: &str, start: bool) -> Result<Upid, ProxmoxError> {
        self.task(calls::rollback(&self.node, vmid, name, start))
            .await
    }

    async fn destroy_guest(&self, vmid: u32) -> Result<Upid, ProxmoxError> {
        self.task(calls::destroy_guest(&self.node, vmid)).await
    }

    async fn restore_over(
        &self,
        vmid: u32,
        archive: &str,
        storage: &str,
    ) -> Result<Upid, ProxmoxError> {
        self.task(calls::restore_over(&self.node, vmid, archive, storage))
            .await
    }

    async fn delete_snapshot(&self, vmid: u32, name: &str) -> Result<Upid, ProxmoxError> {
        self.task(calls::delete_snapshot(&self.node, vmid, name))
            .await
    }

    async fn start(&self, vmid: u32) -> Result<Upid, ProxmoxError> {
        self.task(calls::start(&self.node, vmid)).await
    }

    async fn stop(&self, vmid: u32) -> Result<Upid, ProxmoxError> {
        self.task(calls::stop(&self.node, vmid)).await
    }

    async fn set_config(
        &self,
        vmid: u32,
        update: &ConfigUpdate,
    ) -> Result<SetConfigOutcome, ProxmoxError> {
        let call = calls::set_config(&self.node, vmid, update)?;
        let data: Option<String> = self.data(call.clone()).await?;
        set_config_outcome(&call, data)
    }
}

fn vzdump_outcome(call: &Call, data: &str) -> Result<VzdumpOutcome, ProxmoxError> {
    if data == "OK" {
        Ok(VzdumpOutcome::NothingRan)
    } else {
        parse_upid(call, data).map(VzdumpOutcome::Task)
    }
}

fn set_config_outcome(call: &Call, data: Option<String>) -> Result<SetConfigOutcome, ProxmoxError> {
    match data {
        None => Ok(SetConfigOutcome::Applied),
        Some(s) => parse_upid(call, &s).map(SetConfigOutcome::Task),
    }
}

/// Fuzzing entry point (the `fuzz/` crate only, not an API): decodes one response the way the
/// client decodes every endpoint's answer — status check, envelope, each response type, list
/// and task forms — and renders the results, so a decoder or `Display` that panics on hostile
/// bytes is found. Never panics itself on any input.
#[doc(hidden)]
pub fn fuzz_decode_every_response(status: u16, reason: Option<&str>, body: &[u8]) {
    fn one<T: DeserializeOwned + fmt::Debug>(resp: &HttpResponse) -> Option<T> {
        match decode::<T>("GET", "/fuzz", resp) {
            Ok((data, _total)) => Some(data),
            Err(e) => {
                let _ = e.to_string();
                None
            }
        }
    }
    let resp = HttpResponse {
        status,
        reason: reason.map(str::to_owned),
        headers: http::HeaderMap::new(),
        body: bytes::Bytes::copy_from_slice(body),
    };
    let call = Call::new(Method::POST, "/fuzz".to_owned());
    let _ = one::<Version>(&resp);
    for node in one::<Option<Vec<NodeInfo>>>(&resp)
        .flatten()
        .unwrap_or_default()
    {
        let _ = node.fingerprint().map(|f| f.map(|f| f.to_string()));
    }
    let _ = one::<NodeStatus>(&resp);
    let _ = one::<Option<Vec<GuestSummary>>>(&resp);
    let _ = one::<GuestSummary>(&resp);
    let _ = one::<LxcConfig>(&resp).map(|c| c.rootfs_size_bytes());
    let _ = one::<Option<Vec<StorageInfo>>>(&resp);
    let _ = one::<Option<Vec<StorageContent>>>(&resp);
    let _ = one::<TaskStatus>(&resp).map(|t| (t.is_running(), t.exit().map(|e| e.is_success())));
    let _ = one::<Option<Vec<TaskLogLine>>>(&resp);
    let _ = one::<Permissions>(&resp).map(|p| p.allows("/vms/100", "VM.Audit"));
    let _ = one::<Option<Vec<Snapshot>>>(&resp)
        .flatten()
        .map(|s| s.iter().filter(|s| s.is_current()).count());
    if let Some(s) = one::<String>(&resp) {
        let _ = parse_upid(&call, &s).map(|u| u.to_string());
        let _ = vzdump_outcome(&call, &s).map_err(|e| e.to_string());
    }
    if let Some(s) = one::<Option<String>>(&resp) {
        let _ = set_config_outcome(&call, s).map_err(|e| e.to_string());
    }
    let _ = ApiError::from_response("GET", "/fuzz", status, reason, body).to_string();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TaskExit;
    use std::collections::BTreeMap;

    const SECRET: &str = "0b3f6a1c-5d2e-4f7a-9c8b-1a2b3c4d5e6f";
    const UPID: &str = "UPID:pve:00188D93:0186372E:69B66E35:vzcreate:100:felhom@pve!agent:";

    fn token() -> ApiToken {
        ApiToken::new("felhom@pve!agent", Secret::new(SECRET)).unwrap()
    }

    fn resp(status: u16, reason: Option<&str>, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            reason: reason.map(str::to_owned),
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn token_ids_are_validated() {
        for ok in [
            "root@pam!mytoken",
            "felhom@pve!agent",
            "a.b-c@my-realm!t_1",
            "user@x@pve!tok",
        ] {
            assert!(ApiToken::new(ok, Secret::new("s")).is_ok(), "{ok}");
        }
        for bad in [
            "root@pam",
            "root!tok",
            "@pam!tok",
            "root@pam!",
            "root@pam!t",
            "root@pam!1tok",
            "root@p!tok",
            "root@pam!to ken",
            "ro ot@pam!tok",
            "root@pam!tok!x",
            "r/oot@pam!tok",
        ] {
            let err = ApiToken::new(bad, Secret::new(SECRET)).unwrap_err();
            assert!(matches!(err, TokenError::TokenId { .. }), "{bad}: {err}");
            assert!(!err.to_string().contains(SECRET));
        }
    }

    #[test]
    fn a_token_id_error_names_the_rule_it_breaks() {
        let said = |id: &str| ApiToken::check_token_id(id).unwrap_err().to_string();
        assert_eq!(
            said("a@pve!b"),
            "token name must be at least 2 characters ([A-Za-z][A-Za-z0-9._-]+), got \"a@pve!b\""
        );
        assert!(said("a@pve!1tok").starts_with("token name must start with a letter"));
        assert!(said("a@pve!to ken").starts_with("token name may hold only letters"));
        assert!(said("a@p!tok").starts_with("realm must be 2 to 32 characters"));
        assert!(said("@pve!tok").starts_with("user must be 1 to 60 characters"));
        assert!(said("root").starts_with("must be user@realm!tokenname"));
        assert!(said(&format!("a@pve!t{}", "o".repeat(64)))
            .starts_with("token name must be at most 64"));
    }

    #[test]
    fn secrets_are_validated_without_being_shown() {
        for bad in ["", "a b", "a=b", "a;b", "a%20", "tab\t", "ünï"] {
            let err = ApiToken::new("root@pam!tok", Secret::new(bad)).unwrap_err();
            assert!(matches!(err, TokenError::Secret { .. }), "{bad:?}");
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad), "{err}");
                assert!(!format!("{err:?}").contains(bad), "{err:?}");
            }
        }
    }

    #[test]
    fn token_and_config_debug_are_redacted() {
        let t = token();
        let dbg = format!("{t:?}");
        assert!(
            dbg.contains("felhom@pve!agent") && !dbg.contains(SECRET),
            "{dbg}"
        );
        let cfg = PveClientConfig::new("https://pve:8006", "pve", t.clone(), TlsTrust::SystemRoots);
        assert!(!format!("{cfg:?}").contains(SECRET));
        assert!(!format!("{cfg:#?}").contains(SECRET));
        let req = calls::version().to_request("https://pve:8006/api2/json", &t);
        assert!(!format!("{req:?}").contains(SECRET));
    }

    #[test]
    fn auth_header_is_built_at_send_time_and_sensitive() {
        let req = calls::version().to_request("https://pve:8006/api2/json", &token());
        let auth = req.headers.get(AUTHORIZATION).unwrap();
        assert!(auth.is_sensitive());
        assert_eq!(
            auth.to_str().unwrap(),
            format!("PVEAPIToken=felhom@pve!agent={SECRET}")
        );
        assert_eq!(req.url, "https://pve:8006/api2/json/version");
        assert!(req.body.is_empty());
    }

    #[test]
    fn no_error_shows_the_secret() {
        let t = token();
        let req =
            calls::task_status(&UPID.parse().unwrap()).to_request("https://pve:8006/api2/json", &t);
        let mut errors: Vec<ProxmoxError> = [401, 403, 500, 501, 596]
            .into_iter()
            .map(|status| {
                decode::<Version>("GET", "/x", &resp(status, Some("reason"), "{}")).unwrap_err()
            })
            .collect();
        errors.push(decode::<Version>("GET", "/x", &resp(200, None, "nope")).unwrap_err());
        errors.push(calls::guest_config("pve", 1).unwrap_err());
        errors.push(ProxmoxError::Http(felhom_http::HttpError::Timeout {
            method: req.method.to_string(),
            url: req.url.clone(),
            after: Duration::from_secs(1),
        }));
        for e in &errors {
            for text in [e.to_string(), format!("{e:?}")] {
                assert!(!text.contains(SECRET), "{text}");
            }
        }
        let bad = ApiToken::new("nope", Secret::new(SECRET)).unwrap_err();
        assert!(!format!("{bad} {bad:?}").contains(SECRET));
    }

    #[test]
    fn api_urls_are_normalised() {
        for (input, want) in [
            ("https://pve:8006", "https://pve:8006/api2/json"),
            ("https://pve:8006/", "https://pve:8006/api2/json"),
            (
                "https://10.0.0.2:8006/api2/json",
                "https://10.0.0.2:8006/api2/json",
            ),
            (
                "https://pve.example/proxy/api2/json/",
                "https://pve.example/proxy/api2/json",
            ),
            ("https://[::1]:8006", "https://[::1]:8006/api2/json"),
        ] {
            assert_eq!(api_base(input).unwrap(), want, "{input}");
        }
        for bad in [
            "http://pve:8006",
            "pve:8006",
            "https://user:pw@pve:8006",
            "https://pve:8006/other",
            "https://pve:8006/?x=1",
            "",
        ] {
            let err = api_base(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("proxmox.api_url"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn client_construction_validates_node() {
        let cfg = PveClientConfig::new(
            "https://pve:8006",
            "bad_node",
            token(),
            TlsTrust::InsecureSkipVerify,
        );
        assert!(matches!(
            PveClient::new(cfg),
            Err(ClientConfigError::Node { .. })
        ));
        let cfg = PveClientConfig::new(
            "https://pve:8006",
            "pve-01",
            token(),
            TlsTrust::InsecureSkipVerify,
        );
        let client = PveClient::new(cfg).unwrap();
        assert_eq!(client.node(), "pve-01");
        assert_eq!(client.base_url(), "https://pve:8006/api2/json");
        assert!(!format!("{client:?}").contains(SECRET));
    }

    #[track_caller]
    fn check(call: Call, method: Method, path: &str, params: &[(&str, &str)]) {
        assert_eq!(call.method, method);
        assert_eq!(call.path, path);
        let got: Vec<(&str, &str)> = call
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, params);
    }

    #[test]
    fn task_list_filters_become_params_and_bad_ones_are_refused() {
        check(
            calls::list_tasks("pve", &TaskFilter::default()).unwrap(),
            Method::GET,
            "/nodes/pve/tasks",
            &[],
        );
        let filter = TaskFilter {
            vmid: Some(101),
            typefilter: Some("vzstart".into()),
            since: Some(1_700_000_000),
            source: TaskSource::All,
            limit: Some(10),
        };
        check(
            calls::list_tasks("pve", &filter).unwrap(),
            Method::GET,
            "/nodes/pve/tasks",
            &[
                ("vmid", "101"),
                ("typefilter", "vzstart"),
                ("since", "1700000000"),
                ("source", "all"),
                ("limit", "10"),
            ],
        );
        for bad in [
            TaskFilter {
                vmid: Some(1),
                ..TaskFilter::default()
            },
            TaskFilter {
                typefilter: Some("vz start".into()),
                ..TaskFilter::default()
            },
            TaskFilter {
                typefilter: Some(String::new()),
                ..TaskFilter::default()
            },
        ] {
            assert!(
                matches!(
                    calls::list_tasks("pve", &bad),
                    Err(ProxmoxError::InvalidArgument { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn task_list_items_decode_leniently() {
        let body = r#"{"data":[
            {"upid":"UPID:pve:0000A1B2:00ABCDEF:65000000:vzstart:101:felhom@pve!agent:","node":"pve","pid":"41394","pstart":11259375,"starttime":1694498816,"type":"vzstart","id":101,"user":"felhom@pve","tokenid":"agent","status":"RUNNING"},
            {"upid":"UPID:pve:0000A1B3:00ABCDEF:65000001:vzstop:101:root@pam:","starttime":1694498817,"endtime":1694498818,"type":"vzstop","id":"101","user":"root@pam","status":"WARNINGS: 2"},
            {"upid":"UPID:pve:0000A1B4:00ABCDEF:65000002:vzdestroy:102:root@pam:","type":"vzdestroy","id":"102","status":"unable to destroy CT 102 - container is running"},
            {"upid":"UPID:pve:0000A1B5:00ABCDEF:65000003:vzstart:103:root@pam:","type":"vzstart","id":"103"}
        ],"total":4}"#;
        let (items, total) =
            decode::<Option<Vec<TaskListItem>>>("GET", "/nodes/pve/tasks", &resp(200, None, body))
                .unwrap();
        let items = items.unwrap();
        assert_eq!(total, Some(4));
        assert!(items[0].is_running());
        assert_eq!(items[0].exit(), None);
        assert_eq!(items[0].pid, Some(41394), "a number as a string");
        assert_eq!(items[0].id.as_deref(), Some("101"), "an id as a number");
        assert_eq!(items[0].tokenid.as_deref(), Some("agent"));
        assert_eq!(items[1].exit(), Some(TaskExit::Warnings(2)));
        assert_eq!(items[1].endtime, Some(1694498818));
        assert_eq!(
            items[2].exit(),
            Some(TaskExit::Failed(
                "unable to destroy CT 102 - container is running".into()
            ))
        );
        assert_eq!(
            items[3].exit(),
            Some(TaskExit::Failed("unexpected status".into())),
            "finished without a status"
        );
    }

    #[test]
    fn read_paths() {
        check(calls::version(), Method::GET, "/version", &[]);
        check(calls::nodes(), Method::GET, "/nodes", &[]);
        check(
            calls::node_status("pve"),
            Method::GET,
            "/nodes/pve/status",
            &[],
        );
        check(calls::list_lxc("pve"), Method::GET, "/nodes/pve/lxc", &[]);
        check(
            calls::guest_status("pve", 100).unwrap(),
            Method::GET,
            "/nodes/pve/lxc/100/status/current",
            &[],
        );
        check(
            calls::guest_config("pve", 100).unwrap(),
            Method::GET,
            "/nodes/pve/lxc/100/config",
            &[],
        );
        check(calls::list_storage(), Method::GET, "/storage", &[]);
        check(
            calls::node_storage("pve"),
            Method::GET,
            "/nodes/pve/storage",
            &[],
        );
        check(
            calls::storage_content("pve", "local", Some("backup"), Some(100)).unwrap(),
            Method::GET,
            "/nodes/pve/storage/local/content",
            &[("content", "backup"), ("vmid", "100")],
        );
        check(
            calls::permissions(),
            Method::GET,
            "/access/permissions",
            &[],
        );
        check(
            calls::list_snapshots("pve", 100).unwrap(),
            Method::GET,
            "/nodes/pve/lxc/100/snapshot",
            &[],
        );
    }

    #[test]
    fn task_paths_use_the_upid_node_and_encode_the_upid() {
        let upid: Upid =
            "UPID:other-node:00188D93:0186372E:69B66E35:vzcreate:100:felhom@pve!agent:"
                .parse()
                .unwrap();
        let enc = "UPID%3Aother-node%3A00188D93%3A0186372E%3A69B66E35%3Avzcreate%3A100%3Afelhom%40pve%21agent%3A";
        check(
            calls::task_status(&upid),
            Method::GET,
            &format!("/nodes/other-node/tasks/{enc}/status"),
            &[],
        );
        let log = calls::task_log(&upid, 5, 50);
        check(
            log.clone(),
            Method::GET,
            &format!("/nodes/other-node/tasks/{enc}/log"),
            &[("start", "5"), ("limit", "50")],
        );
        let req = log.to_request("https://pve:8006/api2/json", &token());
        assert!(req.url.ends_with("/log?start=5&limit=50"), "{}", req.url);
        assert!(req.body.is_empty(), "no body on GET");
    }

    #[test]
    fn mutation_paths_and_forms() {
        let restore = RestoreRequest {
            vmid: 105,
            archive: "local:backup/vzdump-lxc-100-2025_01_02-03_04_05.tar.zst".into(),
            storage: Some("local-lvm".into()),
            force: true,
            unique: true,
            start: false,
            extra: BTreeMap::from([("hostname".to_owned(), "web".to_owned())]),
        };
        check(
            calls::restore_lxc("pve", &restore).unwrap(),
            Method::POST,
            "/nodes/pve/lxc",
            &[
                ("vmid", "105"),
                (
                    "ostemplate",
                    "local:backup/vzdump-lxc-100-2025_01_02-03_04_05.tar.zst",
                ),
                ("restore", "1"),
                ("storage", "local-lvm"),
                ("force", "1"),
                ("unique", "1"),
                ("hostname", "web"),
            ],
        );
        let dump = VzdumpRequest {
            vmid: 100,
            storage: "local".into(),
            notes: Some("{{guestname}} nightly".into()),
            protected: true,
            ..Default::default()
        };
        check(
            calls::vzdump("pve", &dump).unwrap(),
            Method::POST,
            "/nodes/pve/vzdump",
            &[
                ("vmid", "100"),
                ("storage", "local"),
                ("mode", "snapshot"),
                ("compress", "zstd"),
                ("notes-template", "{{guestname}} nightly"),
                ("protected", "1"),
            ],
        );
        check(
            calls::snapshot("pve", 100, "pre-upgrade", Some("before\nupgrade")).unwrap(),
            Method::POST,
            "/nodes/pve/lxc/100/snapshot",
            &[
                ("snapname", "pre-upgrade"),
                ("description", "before\nupgrade"),
            ],
        );
        check(
            calls::rollback("pve", 100, "pre-upgrade", false).unwrap(),
            Method::POST,
            "/nodes/pve/lxc/100/snapshot/pre-upgrade/rollback",
            &[],
        );
        check(
            calls::rollback("pve", 100, "pre-upgrade", true).unwrap(),
            Method::POST,
            "/nodes/pve/lxc/100/snapshot/pre-upgrade/rollback",
            &[("start", "1")],
        );
        check(
            calls::destroy_guest("pve", 105).unwrap(),
            Method::DELETE,
            "/nodes/pve/lxc/105",
            &[("purge", "1"), ("destroy-unreferenced-disks", "1")],
        );
        check(
            calls::restore_over("pve", 105, "local:backup/a.tar.zst", "local-lvm").unwrap(),
            Method::POST,
            "/nodes/pve/lxc",
            &[
                ("vmid", "105"),
                ("ostemplate", "local:backup/a.tar.zst"),
                ("restore", "1"),
                ("storage", "local-lvm"),
                ("force", "1"),
            ],
        );
        check(
            calls::delete_snapshot("pve", 100, "pre-upgrade").unwrap(),
            Method::DELETE,
            "/nodes/pve/lxc/100/snapshot/pre-upgrade",
            &[],
        );
        check(
            calls::start("pve", 100).unwrap(),
            Method::POST,
            "/nodes/pve/lxc/100/status/start",
            &[],
        );
        check(
            calls::stop("pve", 100).unwrap(),
            Method::POST,
            "/nodes/pve/lxc/100/status/stop",
            &[],
        );
    }

    #[test]
    fn set_config_form() {
        let update = ConfigUpdate {
            set: BTreeMap::from([
                ("cores".to_owned(), "4".to_owned()),
                ("description".to_owned(), "web & api\nline 2".to_owned()),
                ("onboot".to_owned(), "1".to_owned()),
            ]),
            delete: vec!["tags".into(), "mp0".into(), "tags".into()],
            digest: Some("5911baea29f4c0073fb063fd9ab29e75892832bf".into()),
        };
        let call = calls::set_config("pve", 100, &update).unwrap();
        check(
            call.clone(),
            Method::PUT,
            "/nodes/pve/lxc/100/config",
            &[
                ("cores", "4"),
                ("description", "web & api\nline 2"),
                ("onboot", "1"),
                ("delete", "mp0,tags"),
                ("digest", "5911baea29f4c0073fb063fd9ab29e75892832bf"),
            ],
        );
        let req = call.to_request("https://pve:8006/api2/json", &token());
        assert_eq!(
            req.url, "https://pve:8006/api2/json/nodes/pve/lxc/100/config",
            "no query on PUT"
        );
        assert_eq!(
            std::str::from_utf8(&req.body).unwrap(),
            "cores=4&description=web+%26+api%0Aline+2&onboot=1&delete=mp0%2Ctags&digest=5911baea29f4c0073fb063fd9ab29e75892832bf"
        );
        assert_eq!(
            req.headers[http::header::CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
    }

    #[test]
    fn arguments_are_refused_before_sending() {
        let cases: Vec<Result<Call, ProxmoxError>> = vec![
            calls::guest_config("pve", 99),
            calls::guest_config("pve", 1_000_000_000),
            calls::snapshot("pve", 100, "current", None),
            calls::snapshot("pve", 100, "vzdump", None),
            calls::snapshot("pve", 100, "a", None),
            calls::snapshot("pve", 100, "has space", None),
            calls::snapshot("pve", 100, &"x".repeat(41), None),
            calls::rollback("pve", 100, "../x", false),
            calls::storage_content("pve", "../etc", None, None),
            calls::storage_content("pve", "local", Some("Backup"), None),
            calls::set_config("pve", 100, &ConfigUpdate::default()),
            calls::set_config(
                "pve",
                100,
                &ConfigUpdate {
                    set: BTreeMap::from([("digest".into(), "x".into())]),
                    ..Default::default()
                },
            ),
            calls::set_config(
                "pve",
                100,
                &ConfigUpdate {
                    set: BTreeMap::from([("cores".into(), "2".into())]),
                    delete: vec!["cores".into()],
                    digest: None,
                },
            ),
            calls::set_config(
                "pve",
                100,
                &ConfigUpdate {
                    delete: vec!["a,b".into()],
                    ..Default::default()
                },
            ),
            calls::set_config(
                "pve",
                100,
                &ConfigUpdate {
                    set: BTreeMap::from([("cores".into(), "2".into())]),
                    delete: vec![],
                    digest: Some("not-hex".into()),
                },
            ),
            calls::set_config(
                "pve",
                100,
                &ConfigUpdate {
                    set: BTreeMap::from([("hostname".into(), "a\rb".into())]),
                    ..Default::default()
                },
            ),
            calls::restore_lxc(
                "pve",
                &RestoreRequest {
                    vmid: 100,
                    archive: "no-storage".into(),
                    ..Default::default()
                },
            ),
            calls::restore_lxc(
                "pve",
                &RestoreRequest {
                    vmid: 100,
                    archive: "local:backup/x.tar".into(),
                    extra: BTreeMap::from([("force".into(), "1".into())]),
                    ..Default::default()
                },
            ),
            calls::vzdump(
                "pve",
                &VzdumpRequest {
                    vmid: 100,
                    storage: String::new(),
                    ..Default::default()
                },
            ),
        ];
        for (i, c) in cases.into_iter().enumerate() {
            let err = c.unwrap_err();
            assert!(
                matches!(err, ProxmoxError::InvalidArgument { .. }),
                "case {i}: {err}"
            );
            assert!(err.never_sent());
        }
    }

    #[test]
    fn decoding_envelopes() {
        let (v, total): (Version, _) = decode(
            "GET",
            "/version",
            &resp(200, None, r#"{"data":{"version":"9.0.3"}}"#),
        )
        .unwrap();
        assert_eq!(v.version, "9.0.3");
        assert_eq!(total, None);
        let (lines, total): (Option<Vec<TaskLogLine>>, _) = decode(
            "GET",
            "/log",
            &resp(200, None, r#"{"data":[{"n":1,"t":"TASK OK"}],"total":"1"}"#),
        )
        .unwrap();
        assert_eq!(lines.unwrap()[0].t, "TASK OK");
        assert_eq!(total, Some(1));
        let (none, _): (Option<String>, _) =
            decode("PUT", "/c", &resp(200, None, r#"{"data":null}"#)).unwrap();
        assert_eq!(none, None);
        let err = decode::<Version>("GET", "/version", &resp(200, None, "<html>")).unwrap_err();
        assert!(matches!(err, ProxmoxError::Decode { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("pve api GET /version: cannot decode response"),
            "{err}"
        );
        let err =
            decode::<Version>("GET", "/version", &resp(200, None, r#"{"data":null}"#)).unwrap_err();
        assert!(matches!(err, ProxmoxError::Decode { .. }));
    }

    #[test]
    fn error_statuses() {
        let err = decode::<Version>(
            "GET",
            "/version",
            &resp(401, Some("Authentication failed!"), ""),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ProxmoxError::Unauthorized { reason: Some(r), .. } if r == "Authentication failed!")
        );
        let err = decode::<Version>(
            "GET",
            "/nodes/pve/status",
            &resp(596, Some("Connection timed out"), ""),
        )
        .unwrap_err();
        assert!(matches!(err, ProxmoxError::Proxy { status: 596, .. }));
        assert!(err.is_retryable());
        let err = decode::<Version>(
            "PUT",
            "/nodes/pve/lxc/100/config",
            &resp(403, Some("Permission check failed (/vms/100, VM.Config.Options)"), r#"{"data":null,"message":"Permission check failed (/vms/100, VM.Config.Options)\n"}"#),
        )
        .unwrap_err();
        let p = err.missing_privilege().unwrap();
        assert_eq!(
            (p.path.as_str(), p.privileges[0].as_str()),
            ("/vms/100", "VM.Config.Options")
        );
        let err = decode::<Version>(
            "GET",
            "/x",
            &resp(
                500,
                Some("Configuration file 'nodes/pve/lxc/999.conf' does not exist"),
                "",
            ),
        )
        .unwrap_err();
        assert_eq!(err.status(), Some(500));
        assert!(err.to_string().contains("does not exist"));
    }

    #[test]
    fn dual_mode_outcomes() {
        let call = calls::set_config(
            "pve",
            100,
            &ConfigUpdate {
                set: BTreeMap::from([("cores".into(), "2".into())]),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            set_config_outcome(&call, None).unwrap(),
            SetConfigOutcome::Applied
        );
        assert!(
            matches!(set_config_outcome(&call, Some(UPID.into())).unwrap(), SetConfigOutcome::Task(u) if u.as_str() == UPID)
        );
        assert!(matches!(
            set_config_outcome(&call, Some(String::new())),
            Err(ProxmoxError::Decode { .. })
        ));
        let call = calls::vzdump(
            "pve",
            &VzdumpRequest {
                vmid: 100,
                storage: "local".into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            vzdump_outcome(&call, "OK").unwrap(),
            VzdumpOutcome::NothingRan
        );
        assert!(matches!(
            vzdump_outcome(&call, UPID).unwrap(),
            VzdumpOutcome::Task(_)
        ));
        assert!(matches!(
            vzdump_outcome(&call, "garbage"),
            Err(ProxmoxError::Decode { .. })
        ));
    }
}

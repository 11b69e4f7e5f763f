//! API handlers behind the HTTP layer, in PVE's order (`PVE::HTTPServer::rest_handler`): route
//! → merge URI parameters → the schema's permission check (403) → the node check (`proxyto`) →
//! parameter validation (400) → the endpoint's own code. Handlers run under the state lock and
//! never await; tasks they start complete later on tokio time.

mod access;
mod lxc;
mod node;
mod snapshot;
mod storage;
mod tasks;
mod vzdump;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::Value;

use crate::config::ListOrder;
use crate::faults::Faults;
use crate::params::{self, PVal, ParamErrors, Params};
use crate::state::{Guest, Inner};

/// A handler error: status, message (with PVE's trailing newline) and, for 400s, the per
/// parameter `errors` map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) message: String,
    pub(crate) errors: Option<ParamErrors>,
}

impl ApiError {
    /// Any status; `die "...\n"` messages end with a newline, so add one if missing.
    pub(crate) fn with_status(status: u16, message: &str) -> ApiError {
        let mut message = message.to_string();
        if !message.ends_with('\n') {
            message.push('\n');
        }
        ApiError {
            status,
            message,
            errors: None,
        }
    }

    /// A plain `die`: 500.
    pub(crate) fn internal(message: impl AsRef<str>) -> ApiError {
        ApiError::with_status(500, message.as_ref())
    }

    /// `raise_perm_exc("$path, $priv")`.
    pub(crate) fn perm(what: &str) -> ApiError {
        ApiError::with_status(403, &format!("Permission check failed ({what})"))
    }

    /// `raise_perm_exc()` without detail.
    pub(crate) fn perm_plain() -> ApiError {
        ApiError::with_status(403, "Permission check failed")
    }

    /// `raise_param_exc($errors)`.
    pub(crate) fn params(errors: ParamErrors) -> ApiError {
        ApiError {
            status: 400,
            message: "Parameter verification failed.\n".to_string(),
            errors: Some(errors),
        }
    }

    /// `raise_param_exc({ $key => $msg })`.
    pub(crate) fn param(key: &str, message: String) -> ApiError {
        let mut errors = ParamErrors::new();
        errors.insert(key.to_string(), message);
        ApiError::params(errors)
    }

    fn not_implemented(method: &str, path: &str) -> ApiError {
        // returned, not died: no trailing newline
        ApiError {
            status: 501,
            message: format!("Method '{method} {path}' not implemented"),
            errors: None,
        }
    }
}

/// A successful handler result: `data` and the optional `total`.
#[derive(Clone, Debug, PartialEq, Default)]
pub(crate) struct Reply {
    pub(crate) data: Value,
    pub(crate) total: Option<u64>,
    /// A list rendered item by item (each a JSON text): `data` is this array, and `data`
    /// itself is unused. For the long lists, where building `Value` maps costs the most.
    pub(crate) items: Option<Vec<String>>,
}

impl Reply {
    pub(crate) fn data(data: Value) -> Reply {
        Reply {
            data,
            ..Reply::default()
        }
    }

    /// A list whose items are already JSON texts.
    pub(crate) fn items(items: Vec<String>) -> Reply {
        Reply {
            items: Some(items),
            ..Reply::default()
        }
    }

    pub(crate) fn null() -> Reply {
        Reply::data(Value::Null)
    }
}

pub(crate) type ApiResult = Result<Reply, ApiError>;

/// What a handler works with.
pub(crate) struct Ctx<'a> {
    pub(crate) inner: &'a mut Inner,
    pub(crate) faults: &'a Faults,
    pub(crate) authid: &'a str,
    pub(crate) params: Params,
}

impl Ctx<'_> {
    /// `$rpcenv->check($user, $path, $privs)` (all privileges).
    pub(crate) fn check(&self, path: &str, privs: &[&str]) -> Result<(), ApiError> {
        match self
            .inner
            .principals
            .denial(self.authid, path, privs, false)
        {
            Some(what) => Err(ApiError::perm(&what)),
            None => Ok(()),
        }
    }

    /// `$rpcenv->check_any($user, $path, $privs)`.
    pub(crate) fn check_any(&self, path: &str, privs: &[&str]) -> Result<(), ApiError> {
        match self.inner.principals.denial(self.authid, path, privs, true) {
            Some(what) => Err(ApiError::perm(&what)),
            None => Ok(()),
        }
    }

    /// `check(..., $noerr = 1)`.
    pub(crate) fn allowed(&self, path: &str, privs: &[&str]) -> bool {
        self.inner
            .principals
            .allows(self.authid, path, privs, false)
    }

    /// The validated `vmid` parameter.
    pub(crate) fn vmid(&self) -> u32 {
        self.params
            .int("vmid")
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    }

    pub(crate) fn now(&self) -> u64 {
        self.inner.clock.now()
    }

    /// `load_config` failure text.
    pub(crate) fn no_config(&self, vmid: u32) -> String {
        format!(
            "Configuration file 'nodes/{}/lxc/{vmid}.conf' does not exist",
            self.inner.node
        )
    }

    /// `PVE::LXC::Config->load_config($vmid)`.
    pub(crate) fn guest(&self, vmid: u32) -> Result<&Guest, ApiError> {
        self.inner
            .guests
            .get(&vmid)
            .ok_or_else(|| ApiError::internal(self.no_config(vmid)))
    }
}

/// `check_lock`: `CT is locked (<lock>)`.
pub(crate) fn lock_error(guest: &Guest) -> Option<String> {
    guest.lock().map(|l| format!("CT is locked ({l})"))
}

/// `PVE::API2->find_handler`: empty path fragments are skipped; a path that matches no
/// handler for this method is not implemented.
fn match_route(
    method: &str,
    rel: &str,
) -> Result<(&'static str, BTreeMap<String, String>), ApiError> {
    let segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    let Some(route) = find_route(method, &segs) else {
        return Err(ApiError::not_implemented(method, rel));
    };
    let captured = route
        .segs
        .iter()
        .zip(&segs)
        .filter_map(|(t, s)| {
            t.strip_prefix('{')
                .and_then(|t| t.strip_suffix('}'))
                .map(|name| (name.to_string(), s.to_string()))
        })
        .collect();
    Ok((route.key, captured))
}

/// One served endpoint, split once: `"GET /nodes/{node}/lxc"` → `GET`, `[nodes, {node}, lxc]`.
struct Route {
    key: &'static str,
    method: &'static str,
    segs: Vec<&'static str>,
}

static ROUTES: LazyLock<Vec<Route>> = LazyLock::new(|| {
    params::SERVED
        .iter()
        .filter_map(|key| {
            let (method, template) = key.split_once(' ')?;
            Some(Route {
                key,
                method,
                segs: template.split('/').filter(|s| !s.is_empty()).collect(),
            })
        })
        .collect()
});

/// The first served route (in `SERVED` order) for `method` and these path segments.
fn find_route(method: &str, segs: &[&str]) -> Option<&'static Route> {
    ROUTES.iter().find(|r| {
        r.method == method
            && r.segs.len() == segs.len()
            && r.segs
                .iter()
                .zip(segs)
                .all(|(t, s)| (t.starts_with('{') && t.ends_with('}')) || t == s)
    })
}

/// The served endpoint a request path belongs to (`GET /nodes/{node}/lxc`), if any.
pub(crate) fn route_template(method: &str, rel: &str) -> Option<&'static str> {
    let segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    find_route(method, &segs).map(|r| r.key)
}

fn substitute(template: &str, params: &Params) -> String {
    let mut out = String::new();
    for (i, seg) in template.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => out.push_str(&params.str(name).unwrap_or_default()),
            None => out.push_str(seg),
        }
    }
    out
}

/// Runs one API request against the state.
pub(crate) fn dispatch(
    inner: &mut Inner,
    faults: &Faults,
    method: &str,
    rel: &str,
    authid: &str,
    mut params: Params,
) -> ApiResult {
    let (key, uri) = match_route(method, rel)?;
    let spec = params::endpoint(key)
        .ok_or_else(|| ApiError::internal(format!("pve-sim: no schema entry for {key}")))?;
    for (k, v) in &uri {
        if let Some(given) = params.0.get(k) {
            if given.text().as_deref() != Some(v.as_str()) {
                return Err(ApiError::param(
                    k,
                    "duplicate parameter (already defined in URI) with conflicting values!"
                        .to_string(),
                ));
            }
        }
        params.insert(k, PVal::Str(v.clone()));
    }
    if let Some(perm) = &spec.permission {
        let path = substitute(&perm.path, &params);
        let privs: Vec<&str> = perm.privs.iter().map(String::as_str).collect();
        if let Some(what) = inner.principals.denial(authid, &path, &privs, perm.any) {
            return Err(ApiError::perm(&what));
        }
    }
    if spec.proxyto.as_deref() == Some("node") {
        if let Some(node) = params.str("node") {
            if node != inner.node {
                // a single-node host resolves other node names through DNS, and fails
                return Err(ApiError::internal(format!(
                    "hostname lookup '{node}' failed - failed to get address info for: {node}: \
                     Name or service not known"
                )));
            }
        }
    }
    params::validate(spec, &params).map_err(ApiError::params)?;
    let order = inner.list_order;
    let mut ctx = Ctx {
        inner,
        faults,
        authid,
        params,
    };
    let mut result = handle(&mut ctx, key);
    if let (Ok(reply), ListOrder::Shuffled(seed)) = (&mut result, order) {
        if let Some(items) = &mut reply.items {
            // only the guest index renders its items (a shuffled endpoint)
            shuffle(items, seed, key);
        } else if let Value::Array(items) = &mut reply.data {
            match key {
                "GET /nodes"
                | "GET /nodes/{node}/lxc"
                | "GET /storage"
                | "GET /nodes/{node}/storage"
                | "GET /nodes/{node}/storage/{storage}/content" => shuffle(items, seed, key),
                // PVE appends the synthetic `current` entry after the hash-ordered snapshots
                "GET /nodes/{node}/lxc/{vmid}/snapshot" => {
                    let len = items.len().saturating_sub(1);
                    shuffle(&mut items[..len], seed, key);
                }
                // the task index is sorted by PVE itself (newest first)
                _ => {}
            }
        }
    }
    result
}

/// A deterministic permutation of `items` from `seed` and the endpoint (splitmix64 driving a
/// Fisher–Yates shuffle); a permutation that happens to keep the input order is rotated, so a
/// sorted input of two or more entries never comes back sorted.
pub(crate) fn shuffle<T: Default>(items: &mut [T], seed: u64, endpoint: &str) {
    let mut state = endpoint.bytes().fold(seed ^ 0x9E37_79B9_7F4A_7C15, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    });
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let n = items.len();
    if n < 2 {
        return;
    }
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        perm.swap(i, j);
    }
    if perm.iter().enumerate().all(|(i, p)| i == *p) {
        perm.rotate_left(1);
    }
    // position i takes the entry that was at perm[i]
    let mut old: Vec<T> = items.iter_mut().map(std::mem::take).collect();
    for (slot, from) in items.iter_mut().zip(perm) {
        *slot = std::mem::take(&mut old[from]);
    }
}

fn handle(ctx: &mut Ctx<'_>, key: &str) -> ApiResult {
    match key {
        "GET /version" => node::version(ctx),
        "GET /nodes" => node::nodes(ctx),
        "GET /nodes/{node}/status" => node::status(ctx),
        "GET /access/permissions" => access::permissions(ctx),
        "GET /storage" => storage::index(ctx),
        "GET /nodes/{node}/storage" => storage::node_index(ctx),
        "GET /nodes/{node}/storage/{storage}/content" => storage::content(ctx),
        "GET /nodes/{node}/lxc" => lxc::list(ctx),
        "POST /nodes/{node}/lxc" => lxc::create(ctx),
        "DELETE /nodes/{node}/lxc/{vmid}" => lxc::destroy(ctx),
        "GET /nodes/{node}/lxc/{vmid}/status/current" => lxc::status_current(ctx),
        "POST /nodes/{node}/lxc/{vmid}/status/start" => lxc::start(ctx),
        "POST /nodes/{node}/lxc/{vmid}/status/stop" => lxc::stop(ctx, "vzstop"),
        "POST /nodes/{node}/lxc/{vmid}/status/shutdown" => lxc::stop(ctx, "vzshutdown"),
        "GET /nodes/{node}/lxc/{vmid}/config" => lxc::get_config(ctx),
        "PUT /nodes/{node}/lxc/{vmid}/config" => lxc::set_config(ctx),
        "GET /nodes/{node}/lxc/{vmid}/snapshot" => snapshot::list(ctx),
        "POST /nodes/{node}/lxc/{vmid}/snapshot" => snapshot::create(ctx),
        "POST /nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback" => snapshot::rollback(ctx),
        "DELETE /nodes/{node}/lxc/{vmid}/snapshot/{snapname}" => snapshot::delete(ctx),
        "POST /nodes/{node}/vzdump" => vzdump::vzdump(ctx),
        "GET /nodes/{node}/tasks" => tasks::list(ctx),
        "GET /nodes/{node}/tasks/{upid}/status" => tasks::status(ctx),
        "GET /nodes/{node}/tasks/{upid}/log" => tasks::log(ctx),
        other => Err(ApiError::internal(format!(
            "pve-sim: no handler for {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_templates_and_skip_empty_fragments() {
        let (key, uri) = match_route("GET", "/nodes/pve/lxc/100/config").unwrap();
        assert_eq!(key, "GET /nodes/{node}/lxc/{vmid}/config");
        assert_eq!(uri["vmid"], "100");
        let (key, _) = match_route("GET", "//nodes/pve//lxc/").unwrap();
        assert_eq!(key, "GET /nodes/{node}/lxc");
        let err = match_route("PATCH", "/version").unwrap_err();
        assert_eq!(err.status, 501);
        assert_eq!(err.message, "Method 'PATCH /version' not implemented");
        assert!(match_route("GET", "/nodes/pve/foo").is_err());
    }

    #[test]
    fn every_served_endpoint_has_a_handler() {
        // dispatching each route reaches a handler instead of the "no handler" fallback
        for key in params::SERVED {
            let (method, template) = key.split_once(' ').unwrap();
            let path = template
                .replace("{node}", "pve")
                .replace("{vmid}", "100")
                .replace("{snapname}", "s1")
                .replace("{storage}", "local")
                .replace(
                    "{upid}",
                    "UPID:pve:00000001:00000001:00000001:vzstart:100:root@pam:",
                );
            let (k, _) = match_route(method, &path).unwrap();
            assert_eq!(k, *key);
        }
    }

    #[test]
    fn shuffles_are_deterministic_and_never_sorted() {
        for n in 2..40usize {
            let sorted: Vec<usize> = (0..n).collect();
            let mut a = sorted.clone();
            shuffle(&mut a, 7, "GET /storage");
            let mut b = sorted.clone();
            shuffle(&mut b, 7, "GET /storage");
            assert_eq!(a, b, "same seed, same order");
            assert_ne!(a, sorted, "never left sorted (n = {n})");
            let mut back = a.clone();
            back.sort_unstable();
            assert_eq!(back, sorted, "a permutation");
        }
        let sorted: Vec<usize> = (0..10).collect();
        let (mut a, mut b, mut c) = (sorted.clone(), sorted.clone(), sorted.clone());
        shuffle(&mut a, 1, "GET /storage");
        shuffle(&mut b, 2, "GET /storage");
        shuffle(&mut c, 1, "GET /nodes/{node}/lxc");
        assert_ne!(a, b, "seeds differ");
        assert_ne!(a, c, "endpoints differ");
        let mut one = vec![5];
        shuffle(&mut one, 1, "x");
        assert_eq!(one, [5]);
    }

    #[test]
    fn permission_paths_substitute_parameters() {
        let mut p = Params::default();
        p.insert("vmid", PVal::Str("100".into()));
        assert_eq!(substitute("/vms/{vmid}", &p), "/vms/100");
        assert_eq!(substitute("/storage/{storage}", &p), "/storage/");
    }
}

//! Shared set-up for the client-against-simulator tests: a simulator per test, a `PveClient`
//! pinned to it, fast task waits, and a TRACE-level log capture.

use std::io::Write;
use std::sync::{Mutex, Once, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use felhom_proxmox::{
    ApiToken, Fingerprint, HttpRequest, HttpsClient, HttpsConfig, PollSchedule, PveClient,
    PveClientConfig, Secret, TlsTrust, WaitOptions,
};
use felhom_pve_sim::{
    Acl, PveSim, SimConfig, TokenSpec, ADMINISTRATOR_PRIVILEGES, AGENT_PRIVILEGES,
    DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET,
};
use http::HeaderValue;

/// Request timeout of the clients here: far above loopback latency, far below the suite budget.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A simulator of the default host (see the simulator's README).
pub async fn sim() -> PveSim {
    sim_with(SimConfig::default()).await
}

/// A simulator of a customised host.
pub async fn sim_with(config: SimConfig) -> PveSim {
    PveSim::start(config).await.expect("simulator starts")
}

/// Trust exactly the simulator's leaf, by the fingerprint it reports.
pub fn pinned(sim: &PveSim) -> TlsTrust {
    TlsTrust::Pinned(vec![fingerprint(sim)])
}

/// The simulator's leaf fingerprint, typed.
pub fn fingerprint(sim: &PveSim) -> Fingerprint {
    sim.fingerprint()
        .parse()
        .expect("the simulator reports a sha-256 fingerprint")
}

/// Knobs of a test client; `Default` is the default token, pinned, [`TIMEOUT`].
pub struct ClientOpts {
    pub token_id: String,
    pub secret: String,
    pub trust: Option<TlsTrust>,
    pub timeout: Duration,
    pub max_body_bytes: Option<usize>,
}

impl Default for ClientOpts {
    fn default() -> Self {
        ClientOpts {
            token_id: DEFAULT_TOKEN_ID.to_owned(),
            secret: DEFAULT_TOKEN_SECRET.to_owned(),
            trust: None,
            timeout: TIMEOUT,
            max_body_bytes: None,
        }
    }
}

/// The real client against `sim`, with the default token and pinned trust.
pub fn client(sim: &PveSim) -> PveClient {
    client_with(sim, ClientOpts::default())
}

/// The real client against `sim`, customised.
pub fn client_with(sim: &PveSim, opts: ClientOpts) -> PveClient {
    let token = ApiToken::new(opts.token_id, Secret::new(opts.secret)).expect("valid token");
    let trust = opts.trust.unwrap_or_else(|| pinned(sim));
    let mut cfg = PveClientConfig::new(sim.base_url(), sim.node(), token, trust);
    cfg.timeout = opts.timeout;
    if let Some(max) = opts.max_body_bytes {
        cfg.max_body_bytes = max;
    }
    PveClient::new(cfg).expect("client builds")
}

/// A client for another token of the simulator.
pub fn client_for(sim: &PveSim, token_id: &str, secret: &str) -> PveClient {
    client_with(
        sim,
        ClientOpts {
            token_id: token_id.to_owned(),
            secret: secret.to_owned(),
            ..Default::default()
        },
    )
}

/// A privsep token of its own user (an Administrator) holding the agent's privileges on `/`
/// except `missing`: what an operator who forgot one ACL line hands the agent.
pub fn token_without(id: &str, secret: &str, missing: &str) -> TokenSpec {
    let privs: Vec<&str> = AGENT_PRIVILEGES
        .iter()
        .copied()
        .filter(|p| *p != missing)
        .collect();
    assert_eq!(
        privs.len() + 1,
        AGENT_PRIVILEGES.len(),
        "{missing} is an agent privilege"
    );
    TokenSpec::new(id, secret)
        .acl(Acl::new("/", &privs, true))
        .user_acl(Acl::new("/", ADMINISTRATOR_PRIVILEGES, true))
}

/// The raw JSON answer to an authenticated GET with the default token: to show what the
/// simulator sent, next to what the client made of it.
pub async fn raw_get(sim: &PveSim, path: &str) -> serde_json::Value {
    let https = HttpsClient::new(HttpsConfig {
        trust: pinned(sim),
        connect_timeout: TIMEOUT,
        request_timeout: TIMEOUT,
        max_body_bytes: 1 << 20,
        user_agent: "felhom-test".into(),
    })
    .unwrap();
    let mut auth = HeaderValue::from_str(&format!(
        "PVEAPIToken={DEFAULT_TOKEN_ID}={DEFAULT_TOKEN_SECRET}"
    ))
    .unwrap();
    auth.set_sensitive(true);
    let req = HttpRequest::new(
        http::Method::GET,
        format!("{}/api2/json{path}", sim.base_url()),
    )
    .header(http::header::AUTHORIZATION, auth);
    let resp = https.send(req).await.unwrap();
    assert_eq!(resp.status, 200, "{resp:?}");
    serde_json::from_slice(&resp.body).unwrap()
}

/// Task waits for tests: polls every 10–100 ms, gives up after 10 s (tasks run 50 ms).
pub fn fast_wait() -> WaitOptions {
    WaitOptions {
        timeout: Duration::from_secs(10),
        schedule: PollSchedule {
            initial: Duration::from_millis(10),
            factor: 1.5,
            max: Duration::from_millis(100),
        },
        ..Default::default()
    }
}

/// Everything tracing (and the `log` facade, which rustls uses) emits at any level on this
/// thread from [`LogCapture::start`] on. Tests using it run on tokio's current-thread runtime,
/// so the client's connection tasks and the simulator's server tasks log on this thread too.
///
/// One process-wide subscriber records every event with the thread that emitted it. (A scoped
/// `set_default` subscriber per test would be simpler, but tracing caches each call site's
/// interest globally, and a call site first reached by a test without a subscriber can stay
/// switched off for one that has one: the capture then silently misses events.)
pub struct LogCapture {
    thread: ThreadId,
    from: usize,
}

type Events = Mutex<Vec<(ThreadId, String)>>;

static EVENTS: OnceLock<Events> = OnceLock::new();

/// The captured events, installing the subscriber on first use.
fn events() -> &'static Events {
    static INSTALL: Once = Once::new();
    let events = EVENTS.get_or_init(|| Mutex::new(Vec::new()));
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_target(true)
            .with_writer(|| EventWriter {
                thread: std::thread::current().id(),
                buf: Vec::new(),
            })
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        tracing_log::LogTracer::init().expect("no other logger in this test binary");
    });
    events
}

impl LogCapture {
    pub fn start() -> LogCapture {
        let from = lock(events()).len();
        // A call site that registered concurrently with the install may have cached "off".
        tracing::callsite::rebuild_interest_cache();
        LogCapture {
            thread: std::thread::current().id(),
            from,
        }
    }

    /// The events of this thread captured so far, one or more lines each.
    pub fn text(&self) -> String {
        lock(events())[self.from..]
            .iter()
            .filter(|(t, _)| *t == self.thread)
            .map(|(_, e)| e.as_str())
            .collect()
    }
}

/// A test that panicked while logging leaves plain data behind: keep using it.
fn lock(events: &Events) -> std::sync::MutexGuard<'_, Vec<(ThreadId, String)>> {
    events.lock().unwrap_or_else(|e| e.into_inner())
}

/// Collects one formatted event and files it under the emitting thread when dropped.
struct EventWriter {
    thread: ThreadId,
    buf: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if let Some(events) = EVENTS.get() {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            lock(events).push((self.thread, text));
        }
    }
}

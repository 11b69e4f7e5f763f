//! The real `PveClient` against a running `PveSim`, over real TLS pinned to the simulator's
//! leaf, and the tokens a test hands the simulator.

use std::time::Duration;

use felhom_proxmox::{ApiToken, Fingerprint, PveClient, PveClientConfig, Secret, TlsTrust};
use felhom_pve_sim::{
    Acl, PveSim, TokenSpec, ADMINISTRATOR_PRIVILEGES, AGENT_PRIVILEGES, DEFAULT_TOKEN_ID,
    DEFAULT_TOKEN_SECRET,
};

/// Request timeout of the clients here: far above loopback latency, far below a suite's budget.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The simulator's leaf fingerprint, typed.
pub fn fingerprint(sim: &PveSim) -> Fingerprint {
    sim.fingerprint()
        .parse()
        .expect("the simulator reports a sha-256 fingerprint")
}

/// Trust exactly the simulator's leaf, by the fingerprint it reports.
pub fn pinned(sim: &PveSim) -> TlsTrust {
    TlsTrust::Pinned(vec![fingerprint(sim)])
}

/// Knobs of a test client; `Default` is the default token, pinned, [`TIMEOUT`].
#[derive(Debug)]
pub struct ClientOpts {
    /// The API token id.
    pub token_id: String,
    /// Its secret.
    pub secret: String,
    /// `None`: pinned to the simulator's leaf.
    pub trust: Option<TlsTrust>,
    /// The client's request timeout.
    pub timeout: Duration,
    /// `None`: the client's default body cap.
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

/// The real client against `sim`, with the default token, pinned trust and [`TIMEOUT`].
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
/// except `missing`: what an operator who forgot ACL lines hands the agent. Panics if one of
/// `missing` is not an agent privilege (the test would then prove nothing).
pub fn token_without(id: &str, secret: &str, missing: &[&str]) -> TokenSpec {
    for m in missing {
        assert!(
            AGENT_PRIVILEGES.contains(m),
            "{m} is not an agent privilege"
        );
    }
    let keep: Vec<&str> = AGENT_PRIVILEGES
        .iter()
        .copied()
        .filter(|p| !missing.contains(p))
        .collect();
    TokenSpec::new(id, secret)
        .acl(Acl::new("/", &keep, true))
        .user_acl(Acl::new("/", ADMINISTRATOR_PRIVILEGES, true))
}

//! Incremental collection against `PveSim` over real TLS: which beats read which guest
//! configs, when an out-of-band change shows in the report, and that a steady beat is a
//! handful of requests over connections already open.

use std::time::{Duration, SystemTime};

use felhom_hub::cloudflared::FixedProber;
use felhom_hub::collector::{self, CacheStats, CollectError, CollectOptions, GuestCache};
use felhom_hub_proto::{HostReport, ServiceState};
use felhom_proxmox::ProxmoxApi;
use felhom_pve_sim::{GuestSpec, HttpFault, PveSim, SimConfig};

use crate::support::{self, CountingApi};

fn at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_428_000)
}

async fn try_beat<A: ProxmoxApi>(
    api: &A,
    cache: &GuestCache,
) -> Result<(HostReport, CacheStats), CollectError> {
    collector::collect_cached(
        api,
        &FixedProber(ServiceState::Active),
        &CollectOptions::new("pve-01"),
        cache,
        at(),
    )
    .await
}

async fn beat<A: ProxmoxApi>(api: &A, cache: &GuestCache) -> (HostReport, CacheStats) {
    try_beat(api, cache).await.unwrap()
}

/// The default host plus guests `vmids` (named `ct<vmid>`).
async fn pve_with_guests(vmids: std::ops::Range<u32>) -> PveSim {
    let mut config = SimConfig::default();
    for vmid in vmids {
        config = config.guest(GuestSpec::new(vmid, &format!("ct{vmid}")));
    }
    support::pve_with(config).await
}

fn description(r: &HostReport, vmid: u32) -> Option<&str> {
    r.guests
        .iter()
        .find(|g| g.vmid == vmid)
        .and_then(|g| g.description.as_deref())
}

fn config_reads(pve: &PveSim, vmid: u32) -> u64 {
    pve.state()
        .requests("GET", &format!("/nodes/pve/lxc/{vmid}/config"))
}

#[tokio::test]
async fn a_description_changed_out_of_band_shows_at_the_next_full_resync() {
    let pve = support::pve().await;
    let api = support::pve_client(&pve);
    let cache = GuestCache::new(3);
    let (first, stats) = beat(&api, &cache).await;
    assert!(stats.full_resync);
    assert_eq!((stats.configs_read, stats.configs_cached), (2, 0));
    assert_eq!(description(&first, 100), Some("web server"));

    // Edited outside the agent: the guest list does not show it.
    assert!(pve
        .state()
        .set_config(100, "description", "moved to rack 2"));
    for n in 1..3 {
        let (r, stats) = beat(&api, &cache).await;
        assert!(!stats.full_resync, "beat {n}");
        assert_eq!(
            (stats.configs_read, stats.configs_cached),
            (0, 2),
            "beat {n}"
        );
        assert_eq!(
            description(&r, 100),
            Some("web server"),
            "beat {n}: not yet (bound: resync_every beats)"
        );
    }
    let (r, stats) = beat(&api, &cache).await;
    assert!(stats.full_resync, "every 3rd beat re-reads every config");
    assert_eq!(stats.configs_read, 2);
    assert_eq!(description(&r, 100), Some("moved to rack 2"));
    assert_eq!(config_reads(&pve, 100), 2, "read at beats 0 and 3 only");
}

#[tokio::test]
async fn changed_cores_show_at_the_next_beat_through_the_list() {
    let pve = support::pve().await;
    let api = support::pve_client(&pve);
    let cache = GuestCache::default();
    beat(&api, &cache).await;
    assert!(pve.state().set_config(100, "cores", "6"));
    let (r, stats) = beat(&api, &cache).await;
    assert!(!stats.full_resync);
    assert_eq!(
        (stats.configs_read, stats.configs_cached),
        (1, 1),
        "only the guest whose list entry changed"
    );
    let web = r.guests.iter().find(|g| g.vmid == 100).unwrap();
    assert_eq!(web.spec.as_ref().unwrap().cores, 6);
    assert_eq!(config_reads(&pve, 100), 2);
    assert_eq!(config_reads(&pve, 101), 1);
}

#[tokio::test]
async fn the_agents_own_writes_invalidate_and_new_or_gone_guests_are_followed() {
    let pve = support::pve().await;
    let api = support::pve_client(&pve);
    let cache = GuestCache::default();
    beat(&api, &cache).await;
    assert_eq!(cache.len(), 2);

    // What the reconcile engine does after writing a description.
    assert!(pve.state().set_config(101, "description", "primary db"));
    cache.clone().invalidate(101);
    let (r, stats) = beat(&api, &cache).await;
    assert_eq!((stats.configs_read, stats.configs_cached), (1, 1));
    assert_eq!(description(&r, 101), Some("primary db"));

    pve.state().add_guest(GuestSpec::new(102, "cache"));
    assert!(pve.state().remove_guest(100));
    let (r, stats) = beat(&api, &cache).await;
    let vmids: Vec<u32> = r.guests.iter().map(|g| g.vmid).collect();
    assert_eq!(vmids, [101, 102]);
    assert_eq!((stats.configs_read, stats.configs_cached), (1, 1));
    assert_eq!(cache.len(), 2, "the removed guest is forgotten");
}

#[tokio::test]
async fn a_steady_beat_is_a_handful_of_requests_and_no_new_connection() {
    let pve = pve_with_guests(200..260).await;
    let api = support::pve_client(&pve);
    let cache = GuestCache::default();
    let (cold, stats) = beat(&api, &cache).await;
    assert_eq!(cold.guests.len(), 62);
    assert_eq!(stats.configs_read, 62);
    let (requests, connections) = (pve.state().total_requests(), pve.connections_accepted());
    assert!(connections >= 1);
    assert!(
        connections <= 1 + collector::DEFAULT_CONFIG_CONCURRENCY as u64 + 3,
        "cold beat: at most the read concurrency plus the side-by-side reads: {connections}"
    );

    let (steady, stats) = beat(&api, &cache).await;
    assert_eq!(steady.guests, cold.guests);
    assert_eq!((stats.configs_read, stats.configs_cached), (0, 62));
    let steady_requests = pve.state().total_requests() - requests;
    assert!(
        steady_requests <= 10,
        "node status, guest list, storages and their backups: {steady_requests}"
    );
    assert_eq!(
        pve.connections_accepted(),
        connections,
        "a steady beat opens no new connection"
    );
}

#[tokio::test]
async fn a_resync_reads_the_known_configs_beside_the_list() {
    let pve = pve_with_guests(200..220).await;
    let cache = GuestCache::new(1);
    let (first, _) = beat(&support::pve_client(&pve), &cache).await;
    assert_eq!(cache.len(), 22);

    // This API answers the list only after the read concurrency's worth of config reads
    // started: a resync that waited for the list before reading would hang here.
    let api = CountingApi::list_after_reads(
        support::pve_client(&pve),
        collector::DEFAULT_CONFIG_CONCURRENCY,
    );
    let (r, stats) = tokio::time::timeout(Duration::from_secs(20), beat(&api, &cache))
        .await
        .expect("the known guests' configs were read before the list arrived");
    assert!(stats.full_resync);
    assert_eq!((stats.configs_read, stats.configs_cached), (22, 0));
    assert_eq!(api.config_reads(), 22);
    assert!(api.max_in_flight() <= collector::DEFAULT_CONFIG_CONCURRENCY);
    assert_eq!(r.guests, first.guests);
}

#[tokio::test]
async fn at_a_resync_a_gone_guest_is_dropped_and_a_new_one_read_after_the_list() {
    let pve = support::pve().await;
    let api = support::pve_client(&pve);
    let cache = GuestCache::new(1);
    beat(&api, &cache).await;
    assert!(pve.state().remove_guest(100));
    pve.state()
        .add_guest(GuestSpec::new(102, "cache").description("new one"));

    let (r, stats) = beat(&api, &cache).await;
    let vmids: Vec<u32> = r.guests.iter().map(|g| g.vmid).collect();
    assert_eq!(vmids, [101, 102]);
    assert!(r.guests.iter().all(|g| g.spec.is_some()));
    assert_eq!(description(&r, 102), Some("new one"));
    // 100 and 101 early (the cache knew them; 100's read fails, unreported), 102 after.
    assert_eq!(stats.configs_read, 3);
    assert_eq!(config_reads(&pve, 102), 1);
    assert_eq!(cache.len(), 2, "the gone guest is forgotten");
}

#[tokio::test]
async fn an_early_read_is_kept_under_the_list_entry_it_may_predate() {
    let pve = support::pve().await;
    let api = support::pve_client(&pve);
    let cache = GuestCache::new(2);
    beat(&api, &cache).await; // full
    let (_, stats) = beat(&api, &cache).await;
    assert_eq!((stats.full_resync, stats.configs_read), (false, 0));

    assert!(pve.state().set_config(100, "cores", "6"));
    let (r, stats) = beat(&api, &cache).await;
    assert_eq!((stats.full_resync, stats.configs_read), (true, 2));
    let web = r.guests.iter().find(|g| g.vmid == 100).unwrap();
    assert_eq!(
        web.spec.as_ref().unwrap().cores,
        6,
        "the resync's early read"
    );

    // The early read may be older than the list that showed the change, so it was cached
    // under the previous beat's entry: the change in the list is read once more.
    let (r, stats) = beat(&api, &cache).await;
    assert_eq!((stats.full_resync, stats.configs_read), (false, 1));
    assert_eq!(config_reads(&pve, 100), 3);
    assert_eq!(config_reads(&pve, 101), 2);
    let web = r.guests.iter().find(|g| g.vmid == 100).unwrap();
    assert_eq!(web.spec.as_ref().unwrap().cores, 6);

    let (_, stats) = beat(&api, &cache).await;
    assert_eq!((stats.full_resync, stats.configs_read), (true, 2));
}

#[tokio::test]
async fn a_resync_whose_list_fails_drops_its_early_reads_and_keeps_the_invalidations() {
    let pve = support::pve().await;
    let api = support::pve_client(&pve);
    let cache = GuestCache::new(2);
    beat(&api, &cache).await; // full
    beat(&api, &cache).await; // from the cache

    // The engine wrote 101; the next beat is a resync, and its list fails.
    assert!(pve.state().set_config(101, "description", "primary db"));
    cache.invalidate(101);
    pve.faults().fail_next(
        1,
        HttpFault::status(503, "busy").only(Some("GET"), Some("/nodes/pve/lxc")),
    );
    let e = try_beat(&api, &cache).await.unwrap_err();
    assert!(matches!(e, CollectError::GuestList { .. }), "{e}");
    assert_eq!(cache.len(), 2, "a failed beat forgets nothing");

    // The invalidation was not consumed by the failed beat: 101 is read again now.
    let (r, stats) = beat(&api, &cache).await;
    assert!(!stats.full_resync);
    assert_eq!((stats.configs_read, stats.configs_cached), (1, 1));
    assert_eq!(description(&r, 101), Some("primary db"));
}

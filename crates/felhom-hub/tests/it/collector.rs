//! The collector against `PveSim` over real TLS: what the report holds, which failures are hard
//! and which degrade, the bound on concurrent config reads, and the cloudflared state.

use std::time::{Duration, SystemTime};

use felhom_hub::cloudflared::FixedProber;
use felhom_hub::collector::{self, CollectError, CollectOptions};
use felhom_hub_proto::{BackupEntry, GuestSpec, GuestStatus, ServiceState};
use felhom_proxmox::{ProxmoxError, PveClient};
use felhom_pve_sim::{
    GuestSpec as SimGuest, HttpFault, SimConfig, StorageSpec, VolumeSpec, DEFAULT_BACKUP_CTIME,
};

use crate::support::{self, CountingApi};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

fn at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_428_000)
}

#[tokio::test]
async fn the_default_host_becomes_a_full_report() {
    let local = StorageSpec::dir("local", "/var/lib/vz")
        .content(&["backup", "iso", "rootdir", "vztmpl"])
        .volume(VolumeSpec::lxc_backup(100, DEFAULT_BACKUP_CTIME).notes("web nightly"))
        .volume(VolumeSpec::lxc_backup(101, DEFAULT_BACKUP_CTIME + 60).protected(true))
        .volume(VolumeSpec::vztmpl(
            "debian-12-standard_12.7-1_amd64.tar.zst",
            1,
            1,
        ));
    let pve = support::pve_with(
        SimConfig::default()
            .without_storage()
            .storage(local)
            .storage(StorageSpec::lvmthin("local-lvm", "pve", "data")),
    )
    .await;
    let api = support::pve_client(&pve);
    let r = collector::collect(&api, &FixedProber(ServiceState::Inactive), "pve-01", at())
        .await
        .unwrap();

    assert_eq!(r.schema_version, felhom_hub_proto::SCHEMA_VERSION);
    assert_eq!(r.host_id, "pve-01");
    assert_eq!(r.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(r.collected_at.as_str(), "2026-11-23T10:00:00Z");
    assert_eq!(r.host.node, "pve");
    assert_eq!(r.host.pve_version, felhom_pve_sim::DEFAULT_PVE_VERSION);
    assert!(r.host.kernel.ends_with("-pve"), "{}", r.host.kernel);
    assert_eq!(r.host.cpu_count, 8);
    assert_eq!(r.host.memory_total_bytes, 32 * GIB);
    assert!(r.host.rootfs_total_bytes > 0);
    assert_eq!(r.cloudflared, ServiceState::Inactive);

    let vmids: Vec<u32> = r.guests.iter().map(|g| g.vmid).collect();
    assert_eq!(vmids, [100, 101]);
    let web = &r.guests[0];
    assert_eq!(
        (web.name.as_str(), web.status),
        ("web", GuestStatus::Running)
    );
    assert_eq!(
        web.spec,
        Some(GuestSpec {
            cores: 2,
            memory_bytes: 2 * GIB,
            swap_bytes: 512 * MIB,
            disk_bytes: 8 * GIB,
        })
    );
    assert_eq!(
        web.description.as_deref(),
        Some("web server"),
        "PVE's trailing newline is gone"
    );
    let db = &r.guests[1];
    assert_eq!((db.name.as_str(), db.status), ("db", GuestStatus::Stopped));
    assert_eq!(
        db.spec.as_ref().map(|s| (s.cores, s.memory_bytes)),
        Some((1, GIB))
    );
    assert_eq!(db.description, None);

    let ids: Vec<&str> = r.storage_targets.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["local", "local-lvm"]);
    let local = &r.storage_targets[0];
    assert_eq!(local.storage_type, "dir");
    assert_eq!(local.content, ["backup", "iso", "rootdir", "vztmpl"]);
    assert!(local.active && local.total_bytes > 0 && local.avail_bytes <= local.total_bytes);
    assert_eq!(r.storage_targets[1].storage_type, "lvmthin");

    // Backups only (no template, no guest disks), sorted by guest.
    assert_eq!(r.backups.len(), 2, "{:?}", r.backups);
    let b100: &BackupEntry = &r.backups[0];
    assert_eq!(b100.vmid, 100);
    assert!(
        b100.volid
            .starts_with("local:backup/vzdump-lxc-100-2025_01_02-03_04_05"),
        "{}",
        b100.volid
    );
    assert_eq!(b100.ctime, DEFAULT_BACKUP_CTIME);
    assert_eq!(b100.notes.as_deref(), Some("web nightly"));
    assert!(!b100.protected);
    assert!(b100.size_bytes > 0 && !b100.format.is_empty());
    assert_eq!(
        (
            r.backups[1].vmid,
            r.backups[1].protected,
            r.backups[1].notes.as_deref()
        ),
        (101, true, None)
    );
    assert!(r.restore_tests.is_empty() && r.pbs_snapshots.is_empty() && r.audit_tail.is_empty());
}

#[tokio::test]
async fn a_node_status_failure_is_hard_and_only_reads_were_sent() {
    let pve = support::pve().await;
    pve.faults().fail_next(
        1,
        HttpFault::internal("pvestatd not running").only(Some("GET"), Some("/nodes/pve/status")),
    );
    let api = support::pve_client(&pve);
    let e = collector::collect(&api, &FixedProber(ServiceState::Active), "pve-01", at())
        .await
        .unwrap_err();
    match &e {
        CollectError::NodeStatus {
            node,
            source: ProxmoxError::Api(api),
        } => {
            assert_eq!(node, "pve");
            assert_eq!(api.status, 500);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string()
            .starts_with("collect: node status of pve unreadable: "),
        "{e}"
    );
    // The node status is read beside the guest list and storages (one beat's latency, not
    // three), so those may have started; all of them are reads.
    assert_eq!(pve.state().requests("GET", "/nodes/pve/status"), 1);
    assert!(pve.state().request_log().iter().all(|r| r.method == "GET"));
}

#[tokio::test]
async fn a_guest_list_failure_is_hard() {
    let pve = support::pve().await;
    pve.faults().fail_next(
        1,
        HttpFault::status(503, "busy").only(Some("GET"), Some("/nodes/pve/lxc")),
    );
    let api = support::pve_client(&pve);
    let e = collector::collect(&api, &FixedProber(ServiceState::Active), "pve-01", at())
        .await
        .unwrap_err();
    assert!(matches!(e, CollectError::GuestList { .. }), "{e}");
}

#[tokio::test]
async fn a_guest_list_that_is_not_a_list_is_a_failed_read() {
    // `{"data": null}` must not become "every guest is gone"
    let pve = support::pve().await;
    pve.faults().fail_next(
        1,
        HttpFault::body(200, r#"{"data":null}"#).only(Some("GET"), Some("/nodes/pve/lxc")),
    );
    let api = support::pve_client(&pve);
    let e = collector::collect(&api, &FixedProber(ServiceState::Active), "pve-01", at())
        .await
        .unwrap_err();
    let CollectError::GuestList { source, .. } = &e else {
        panic!("not a guest list failure: {e}");
    };
    assert!(matches!(source, ProxmoxError::Decode { .. }), "{source}");
    assert!(source.to_string().contains("expected a list"), "{source}");
    assert!(e.to_string().contains("/nodes/pve/lxc"), "{e}");
}

#[tokio::test]
async fn storage_order_is_stable_whatever_order_pve_lists_in() {
    use felhom_pve_sim::ListOrder;
    let config = |order| {
        let mut c = SimConfig::default().list_order(order);
        for id in ["nfs-b", "zfs-a", "backup-c", "dir-d"] {
            c = c.storage(StorageSpec::dir(id, &format!("/mnt/{id}")).content(&["backup"]));
        }
        c
    };
    let mut reports = Vec::new();
    let mut raw_orders = Vec::new();
    for seed in [1u64, 2] {
        let pve = support::pve_with(config(ListOrder::Shuffled(seed))).await;
        let api = support::pve_client(&pve);
        let listed: Vec<String> = felhom_proxmox::ProxmoxApi::node_storage(&api)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.storage)
            .collect();
        raw_orders.push(listed);
        let r = collector::collect(&api, &FixedProber(ServiceState::Active), "pve-01", at())
            .await
            .unwrap();
        reports.push(r);
    }
    // the two simulators really listed differently, neither sorted
    assert_ne!(raw_orders[0], raw_orders[1]);
    for listed in &raw_orders {
        let mut sorted = listed.clone();
        sorted.sort();
        assert_ne!(*listed, sorted);
    }
    let ids = |i: usize| -> Vec<String> {
        reports[i]
            .storage_targets
            .iter()
            .map(|s| s.id.clone())
            .collect()
    };
    assert_eq!(
        ids(0),
        ["backup-c", "dir-d", "local", "local-lvm", "nfs-b", "zfs-a"]
    );
    assert_eq!(ids(0), ids(1));
    assert_eq!(reports[0].storage_targets, reports[1].storage_targets);
    assert_eq!(reports[0].backups, reports[1].backups);
}

#[tokio::test]
async fn a_guest_config_failure_keeps_the_status_and_omits_the_spec() {
    let pve = support::pve().await;
    pve.faults().fail_next(
        1,
        HttpFault::internal("unable to read config").only(Some("GET"), Some("/lxc/100/config")),
    );
    let api = support::pve_client(&pve);
    let r = collector::collect(&api, &FixedProber(ServiceState::Active), "pve-01", at())
        .await
        .unwrap();
    let web = &r.guests[0];
    assert_eq!((web.vmid, web.status), (100, GuestStatus::Running));
    assert_eq!(web.name, "web");
    assert_eq!(web.spec, None);
    assert_eq!(web.description, None, "unknown, not \"none\"");
    assert!(r.guests[1].spec.is_some(), "the other guest is unaffected");
    let v = serde_json::to_value(web).unwrap();
    assert!(v.get("spec").is_none(), "omitted, not null: {v}");
}

#[tokio::test]
async fn storage_failures_only_leave_out_what_they_hide() {
    let pve = support::pve().await;
    let api = support::pve_client(&pve);
    pve.faults().fail_next(
        1,
        HttpFault::internal("storage 'local' is not online")
            .only(Some("GET"), Some("/storage/local/content")),
    );
    let r = collector::collect(&api, &FixedProber(ServiceState::Active), "pve-01", at())
        .await
        .unwrap();
    assert_eq!(r.storage_targets.len(), 2);
    assert!(r.backups.is_empty());
    assert_eq!(r.guests.len(), 2);

    pve.faults().fail_next(
        1,
        HttpFault::internal("boom").only(Some("GET"), Some("/nodes/pve/storage")),
    );
    let r = collector::collect(&api, &FixedProber(ServiceState::Active), "pve-01", at())
        .await
        .unwrap();
    assert!(r.storage_targets.is_empty() && r.backups.is_empty());
    assert_eq!(r.guests.len(), 2);

    // Healthy again: everything is back.
    let r = collector::collect(&api, &FixedProber(ServiceState::Active), "pve-01", at())
        .await
        .unwrap();
    assert_eq!((r.storage_targets.len(), r.backups.len()), (2, 1));
}

#[tokio::test]
async fn config_reads_are_bounded() {
    let mut config = SimConfig::default();
    for i in 0..30 {
        config = config.guest(SimGuest::new(200 + i, &format!("ct{i}")).running(i % 2 == 0));
    }
    let pve = support::pve_with(config).await;
    // Gated: no read returns before the expected number overlap, so reaching the bound is
    // shown by events, whatever the machine's speed; exceeding it shows in the peak. A
    // collector that overlapped fewer reads would hang, and the timeout names it.
    async fn collect(
        api: &CountingApi<PveClient>,
        options: &CollectOptions,
    ) -> felhom_hub_proto::HostReport {
        tokio::time::timeout(
            Duration::from_secs(30),
            collector::collect_with(api, &FixedProber(ServiceState::Active), options, at()),
        )
        .await
        .expect("the configured number of config reads overlapped")
        .unwrap()
    }
    let api = CountingApi::gated(
        support::pve_client(&pve),
        collector::DEFAULT_CONFIG_CONCURRENCY,
    );
    let r = collect(&api, &CollectOptions::new("pve-01")).await;
    assert_eq!(r.guests.len(), 32);
    assert!(
        r.guests.windows(2).all(|w| w[0].vmid < w[1].vmid),
        "ascending vmids"
    );
    assert!(r.guests.iter().all(|g| g.spec.is_some()));
    assert_eq!(api.config_reads(), 32);
    assert_eq!(api.max_in_flight(), collector::DEFAULT_CONFIG_CONCURRENCY);

    let narrow = CountingApi::gated(support::pve_client(&pve), 3);
    let options = CollectOptions {
        concurrency: 3,
        ..CollectOptions::new("pve-01")
    };
    collect(&narrow, &options).await;
    assert_eq!(narrow.max_in_flight(), 3);

    // The audit tail is read from its reader at each collection.
    // So are the restore-test results.
    let sample = felhom_hub_proto::golden::sample_host_report();
    let entry = sample.audit_tail[0].clone();
    let tested = sample.restore_tests.clone();
    let (shown, shown_tests) = (entry.clone(), tested.clone());
    let options = CollectOptions {
        audit_tail: collector::AuditTail::new(move || vec![shown.clone()]),
        restore_tests: collector::RestoreTail::new(move || shown_tests.clone()),
        ..CollectOptions::new("pve-01")
    };
    let r = collector::collect_with(&narrow, &FixedProber(ServiceState::Active), &options, at())
        .await
        .unwrap();
    assert_eq!(r.audit_tail, [entry]);
    assert_eq!(r.restore_tests, tested);
    // Zero is taken as one, not as "no reads".
    let serial = CountingApi::gated(support::pve_client(&pve), 1);
    let options = CollectOptions {
        concurrency: 0,
        ..CollectOptions::new("pve-01")
    };
    collect(&serial, &options).await;
    assert_eq!((serial.max_in_flight(), serial.config_reads()), (1, 32));
}

#[tokio::test]
async fn the_cloudflared_state_is_the_probers() {
    let pve = support::pve().await;
    let api = support::pve_client(&pve);
    for state in [
        ServiceState::Active,
        ServiceState::Inactive,
        ServiceState::Unknown,
    ] {
        let r = collector::collect(&api, &FixedProber(state), "pve-01", at())
            .await
            .unwrap();
        assert_eq!(r.cloudflared, state);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["cloudflared"], serde_json::to_value(state).unwrap());
    }
}

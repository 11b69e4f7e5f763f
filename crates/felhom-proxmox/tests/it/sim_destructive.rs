//! The destructive operations of `PveClient` (destroy, rollback with `start`, restore over an
//! existing guest) and a restore-test cycle into a new vmid, against the simulator over TLS:
//! PVE's refusals, the schema's privilege checks as 403s naming the privilege, and a step of
//! each cycle failed by fault injection.

use felhom_proxmox::{wait_task, GuestStatus, ProxmoxApi, ProxmoxError, RestoreRequest};
use felhom_pve_sim::{
    Acl, GuestSpec, HttpFault, SimConfig, TokenSpec, ADMINISTRATOR_PRIVILEGES, AGENT_PRIVILEGES,
};

use crate::fixture::{client, client_for, fast_wait, sim, sim_with};

const LIMITED: &str = "limited@pve!agent";
const LIMITED_SECRET: &str = "11111111-2222-4333-8444-555555555555";
const BACKUP_100: &str = "local:backup/vzdump-lxc-100-2025_01_02-03_04_05.tar.zst";

/// A privsep token with the agent's privileges on `/` except `missing`.
fn token_lacking(missing: &[&str]) -> TokenSpec {
    let privs: Vec<&str> = AGENT_PRIVILEGES
        .iter()
        .copied()
        .filter(|p| !missing.contains(p))
        .collect();
    assert_eq!(privs.len() + missing.len(), AGENT_PRIVILEGES.len());
    TokenSpec::new(LIMITED, LIMITED_SECRET)
        .acl(Acl::new("/", &privs, true))
        .user_acl(Acl::new("/", ADMINISTRATOR_PRIVILEGES, true))
}

fn api_status(err: &ProxmoxError) -> (u16, String) {
    match err {
        ProxmoxError::Api(e) => (e.status, e.message.clone()),
        other => panic!("not an api error: {other}"),
    }
}

#[tokio::test]
async fn destroy_refuses_a_running_guest_then_removes_a_stopped_one() {
    let sim = sim().await;
    let pve = client(&sim);
    let state = sim.state();

    let err = pve.destroy_guest(100).await.unwrap_err();
    assert_eq!(
        api_status(&err),
        (
            500,
            "unable to destroy CT 100 - container is running".into()
        )
    );
    assert_eq!(state.accepted_mutations(), 0);
    assert!(state.guest(100).is_some());

    let upid = pve.stop(100).await.unwrap();
    wait_task(&pve, &upid, &fast_wait()).await.unwrap();
    let upid = pve.destroy_guest(100).await.unwrap();
    assert_eq!(state.task(upid.as_str()).unwrap().task_type, "vzdestroy");
    let out = wait_task(&pve, &upid, &fast_wait()).await.unwrap();
    assert_eq!(out.exitstatus, "OK");
    assert!(state.guest(100).is_none());
    let listed: Vec<u32> = pve
        .list_lxc()
        .await
        .unwrap()
        .iter()
        .map(|g| g.vmid)
        .collect();
    assert_eq!(listed, [101]);
    // both flags passed the schema check: the one DELETE was accepted
    assert_eq!(state.requests_to("DELETE /nodes/{node}/lxc/{vmid}"), 2);
}

#[tokio::test]
async fn destroy_without_vm_allocate_is_a_403_naming_it() {
    let sim = sim_with(SimConfig::default().token(token_lacking(&["VM.Allocate"]))).await;
    let pve = client_for(&sim, LIMITED, LIMITED_SECRET);
    let err = pve.destroy_guest(101).await.unwrap_err();
    let missing = err.missing_privilege().expect("a privilege is named");
    assert_eq!(
        (missing.path.as_str(), missing.privileges.as_slice()),
        ("/vms/101", ["VM.Allocate".to_owned()].as_slice())
    );
    assert_eq!(sim.state().accepted_mutations(), 0);
    assert!(sim.state().guest(101).is_some());
}

#[tokio::test]
async fn rollback_with_start_leaves_the_guest_running() {
    let sim = sim_with(
        SimConfig::default().guest(
            GuestSpec::new(102, "app")
                .cores(2)
                .snapshot("before", "known good", 1_700_000_000)
                .set("cores", "4")
                .running(true),
        ),
    )
    .await;
    let pve = client(&sim);
    let upid = pve.rollback(102, "before", true).await.unwrap();
    assert_eq!(
        sim.state().task(upid.as_str()).unwrap().task_type,
        "vzrollback"
    );
    wait_task(&pve, &upid, &fast_wait()).await.unwrap();
    assert_eq!(
        pve.guest_status(102).await.unwrap().status,
        GuestStatus::Running,
        "start=1 starts it after the rollback"
    );
    assert_eq!(pve.guest_config(102).await.unwrap().cores, Some(2));

    let upid = pve.rollback(102, "before", false).await.unwrap();
    wait_task(&pve, &upid, &fast_wait()).await.unwrap();
    assert_eq!(
        pve.guest_status(102).await.unwrap().status,
        GuestStatus::Stopped,
        "without start it stays stopped"
    );
}

#[tokio::test]
async fn rollback_needs_either_snapshot_privilege() {
    let guest = GuestSpec::new(102, "app").snapshot("before", "", 1_700_000_000);
    // VM.Snapshot.Rollback alone is enough
    let sim = sim_with(
        SimConfig::default()
            .guest(guest.clone())
            .token(token_lacking(&["VM.Snapshot"])),
    )
    .await;
    let pve = client_for(&sim, LIMITED, LIMITED_SECRET);
    let upid = pve.rollback(102, "before", false).await.unwrap();
    wait_task(&pve, &upid, &fast_wait()).await.unwrap();

    let sim = sim_with(
        SimConfig::default()
            .guest(guest)
            .token(token_lacking(&["VM.Snapshot", "VM.Snapshot.Rollback"])),
    )
    .await;
    let pve = client_for(&sim, LIMITED, LIMITED_SECRET);
    let err = pve.rollback(102, "before", true).await.unwrap_err();
    let missing = err.missing_privilege().expect("a privilege is named");
    assert_eq!(missing.path, "/vms/102");
    assert_eq!(missing.privileges, ["VM.Snapshot", "VM.Snapshot.Rollback"]);
    assert_eq!(sim.state().accepted_mutations(), 0);
}

#[tokio::test]
async fn restore_over_replaces_a_stopped_guest_and_refuses_a_running_one() {
    let sim = sim().await;
    let pve = client(&sim);
    let state = sim.state();
    let err = pve
        .restore_over(100, BACKUP_100, "local-lvm")
        .await
        .unwrap_err();
    assert_eq!(
        api_status(&err),
        (500, "can't overwrite running container".into())
    );
    assert_eq!(state.accepted_mutations(), 0);

    state.set_running(100, false);
    state.set_config(100, "cores", "7");
    state.set_config(100, "description", "changed since");
    let upid = pve
        .restore_over(100, BACKUP_100, "local-lvm")
        .await
        .unwrap();
    assert_eq!(state.task(upid.as_str()).unwrap().task_type, "vzrestore");
    wait_task(&pve, &upid, &fast_wait()).await.unwrap();
    let cfg = pve.guest_config(100).await.unwrap();
    assert_eq!(cfg.cores, Some(2), "the backup's config is back");
    assert_eq!(cfg.description.as_deref(), Some("web server\n"));
    assert_eq!(cfg.lock, None);
}

#[tokio::test]
async fn restore_over_checks_vm_backup_and_the_target_storage() {
    // VM.Backup is enough over an existing guest (no VM.Allocate)
    let sim = sim_with(SimConfig::default().token(token_lacking(&["VM.Allocate"]))).await;
    sim.state().set_running(100, false);
    let pve = client_for(&sim, LIMITED, LIMITED_SECRET);
    let upid = pve
        .restore_over(100, BACKUP_100, "local-lvm")
        .await
        .unwrap();
    wait_task(&pve, &upid, &fast_wait()).await.unwrap();

    // neither: PVE's bare raise_perm_exc()
    let sim =
        sim_with(SimConfig::default().token(token_lacking(&["VM.Allocate", "VM.Backup"]))).await;
    sim.state().set_running(100, false);
    let pve = client_for(&sim, LIMITED, LIMITED_SECRET);
    let err = pve
        .restore_over(100, BACKUP_100, "local-lvm")
        .await
        .unwrap_err();
    assert_eq!(api_status(&err), (403, "Permission check failed".into()));
    assert_eq!(sim.state().accepted_mutations(), 0);

    // no Datastore.AllocateSpace on the target storage: named
    let sim =
        sim_with(SimConfig::default().token(token_lacking(&["Datastore.AllocateSpace"]))).await;
    sim.state().set_running(100, false);
    let pve = client_for(&sim, LIMITED, LIMITED_SECRET);
    let err = pve
        .restore_over(100, BACKUP_100, "local-lvm")
        .await
        .unwrap_err();
    let missing = err.missing_privilege().expect("a privilege is named");
    assert_eq!(missing.path, "/storage/local-lvm");
    assert_eq!(missing.privileges, ["Datastore.AllocateSpace"]);
    assert_eq!(sim.state().accepted_mutations(), 0);
    assert_eq!(sim.state().guest(100).unwrap().config["cores"], "2");
}

/// What a restore test does (issue 16): restore a backup into a new vmid with fresh MACs and
/// no start, start it, stop it, destroy it — each step failable on its own.
#[tokio::test]
async fn a_scratch_restore_cycle_with_each_step_failed_once() {
    let sim = sim().await;
    let pve = client(&sim);
    let state = sim.state();
    let wait = fast_wait();
    let original_net = state.guest(100).unwrap().config["net0"].clone();
    let scratch = |vmid| RestoreRequest {
        vmid,
        archive: BACKUP_100.into(),
        storage: Some("local-lvm".into()),
        unique: true,
        start: false,
        ..Default::default()
    };

    // the restore task fails: no half-made guest is left
    sim.faults()
        .fail_tasks_of("vzrestore", "9001", "unable to restore CT 9001 - disk full");
    let upid = pve.restore_lxc(&scratch(9001)).await.unwrap();
    let err = wait_task(&pve, &upid, &wait).await.unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(state.guest(9001).is_none());

    // a restore into 9000 works: stopped, fresh MAC, its own disk
    let upid = pve.restore_lxc(&scratch(9000)).await.unwrap();
    wait_task(&pve, &upid, &wait).await.unwrap();
    let g = state.guest(9000).unwrap();
    assert!(!g.running);
    let net0 = &g.config["net0"];
    assert!(net0.contains("hwaddr=BC:24:11:"), "{net0}");
    assert_ne!(*net0, original_net);
    assert!(g.config["rootfs"].starts_with("local-lvm:vm-9000-disk-0,"));

    // start fails for this guest only
    sim.faults()
        .fail_tasks_of("vzstart", "9000", "startup for container '9000' failed");
    let upid = pve.start(9000).await.unwrap();
    let err = wait_task(&pve, &upid, &wait).await.unwrap_err();
    assert!(err.to_string().contains("startup for container"), "{err}");
    assert!(!state.guest(9000).unwrap().running);
    let upid = pve.start(101).await.unwrap();
    wait_task(&pve, &upid, &wait).await.unwrap();
    sim.faults().clear_task_faults();

    let upid = pve.start(9000).await.unwrap();
    wait_task(&pve, &upid, &wait).await.unwrap();
    let status = pve.guest_status(9000).await.unwrap();
    assert_eq!(status.status, GuestStatus::Running);
    let upid = pve.stop(9000).await.unwrap();
    wait_task(&pve, &upid, &wait).await.unwrap();

    // destroy fails once, the guest stays; then it goes
    sim.faults()
        .fail_tasks_of("vzdestroy", "9000", "lvremove 'pve/vm-9000-disk-0' error");
    let upid = pve.destroy_guest(9000).await.unwrap();
    assert!(wait_task(&pve, &upid, &wait).await.is_err());
    assert!(state.guest(9000).is_some());
    sim.faults().clear_task_faults();
    let upid = pve.destroy_guest(9000).await.unwrap();
    wait_task(&pve, &upid, &wait).await.unwrap();
    assert!(state.guest(9000).is_none());
}

/// `{"data": null}` where a list belongs is a failed read naming the endpoint, for every list
/// the client reads.
#[tokio::test]
async fn a_null_list_is_a_decode_error_naming_the_endpoint() {
    let sim = sim().await;
    let pve = client(&sim);
    let upid = pve.start(101).await.unwrap();
    wait_task(&pve, &upid, &fast_wait()).await.unwrap();
    let null = |path: &str| {
        sim.faults().fail_next(
            1,
            HttpFault::body(200, r#"{"data":null}"#).only(Some("GET"), Some(path)),
        );
    };
    let check = |what: &str, err: ProxmoxError, path: &str| match &err {
        ProxmoxError::Decode {
            path: p, detail, ..
        } => {
            assert_eq!(p, path, "{what}");
            assert!(detail.contains("expected a list"), "{what}: {detail}");
        }
        other => panic!("{what}: not a decode error: {other}"),
    };
    null("/nodes/pve/lxc");
    check("lxc", pve.list_lxc().await.unwrap_err(), "/nodes/pve/lxc");
    null("/storage");
    check("storage", pve.list_storage().await.unwrap_err(), "/storage");
    null("/nodes/pve/storage");
    check(
        "node storage",
        pve.node_storage().await.unwrap_err(),
        "/nodes/pve/storage",
    );
    null("/content");
    check(
        "content",
        pve.storage_content("local", None, None).await.unwrap_err(),
        "/nodes/pve/storage/local/content",
    );
    null("/snapshot");
    check(
        "snapshots",
        pve.list_snapshots(100).await.unwrap_err(),
        "/nodes/pve/lxc/100/snapshot",
    );
    null("/nodes");
    check("nodes", pve.nodes().await.unwrap_err(), "/nodes");
    null("/log");
    let err = pve.task_log(&upid, 0, 0).await.unwrap_err();
    assert!(err.to_string().contains("expected a list"), "{err}");
    // the next reads are whole again
    assert_eq!(pve.list_lxc().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_warm_client_opens_no_new_connections_and_requests_count_by_template() {
    let sim = sim().await;
    let pve = client(&sim);
    pve.node_status().await.unwrap();
    let state = sim.state();
    assert_eq!(state.connections_accepted(), 1);
    assert_eq!(state.tls_handshakes(), 1);
    for _ in 0..3 {
        pve.list_lxc().await.unwrap();
        pve.guest_config(100).await.unwrap();
        pve.guest_config(101).await.unwrap();
    }
    assert_eq!(state.connections_accepted(), 1, "a steady client reuses");
    assert_eq!(state.requests_to("GET /nodes/{node}/lxc/{vmid}/config"), 6);
    assert_eq!(state.requests_to("GET /nodes/{node}/lxc"), 3);
    let all = state.requests_by_template();
    assert_eq!(all.get("GET /nodes/{node}/status"), Some(&1));
    assert_eq!(all.values().sum::<u64>(), state.total_requests());
    // an error status closes the connection (pveproxy's Connection: close), so the next
    // request connects again: the counter sees it
    let _ = pve.guest_config(4242).await.unwrap_err();
    pve.list_lxc().await.unwrap();
    assert_eq!(state.connections_accepted(), 2);
}

//! Every mutating operation of the real `PveClient` plus `wait_task` against the simulator:
//! the UPID is waited on and the change is then visible in the simulator's state.

use std::collections::BTreeMap;

use felhom_proxmox::{
    wait_task, ConfigUpdate, GuestStatus, ProxmoxApi, RestoreRequest, SetConfigOutcome,
    VzdumpOutcome, VzdumpRequest,
};

use crate::fixture::{client, fast_wait, sim};

fn set(pairs: &[(&str, &str)]) -> ConfigUpdate {
    ConfigUpdate {
        set: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn start_and_stop_are_tasks_whose_effect_shows_once_waited() {
    let sim = sim().await;
    let pve = client(&sim);
    let state = sim.state();
    assert!(!state.guest(101).unwrap().running);

    let upid = pve.start(101).await.unwrap();
    assert_eq!(upid.node(), "pve");
    let view = state.task(upid.as_str()).expect("the sim knows the task");
    assert_eq!(
        (
            view.task_type.as_str(),
            view.id.as_str(),
            view.user.as_str()
        ),
        ("vzstart", "101", "felhom@pve!agent")
    );
    let out = wait_task(&pve, &upid, &fast_wait()).await.unwrap();
    assert_eq!(out.exitstatus, "OK");
    assert!(out.warnings.is_empty());
    assert!(out.polls >= 1);
    assert!(state.guest(101).unwrap().running, "started");
    assert_eq!(
        pve.guest_status(101).await.unwrap().status,
        GuestStatus::Running
    );

    let upid = pve.stop(101).await.unwrap();
    assert_eq!(state.task(upid.as_str()).unwrap().task_type, "vzstop");
    wait_task(&pve, &upid, &fast_wait()).await.unwrap();
    assert!(!state.guest(101).unwrap().running, "stopped");
    assert_eq!(
        pve.guest_status(101).await.unwrap().status,
        GuestStatus::Stopped
    );

    // PVE refuses at the POST, synchronously, when there is nothing to do.
    let err = pve.stop(101).await.unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert!(err.to_string().contains("CT 101 not running"), "{err}");
    let err = pve.start(100).await.unwrap_err();
    assert!(err.to_string().contains("CT 100 already running"), "{err}");
}

#[tokio::test]
async fn set_config_is_applied_synchronously_without_a_task() {
    let sim = sim().await;
    let pve = client(&sim);
    let state = sim.state();
    let tasks_before = state.tasks().len();
    let before = pve.guest_config(100).await.unwrap();

    let update = ConfigUpdate {
        digest: before.digest.clone(),
        ..set(&[("cores", "4"), ("memory", "4096"), ("onboot", "1")])
    };
    assert_eq!(
        pve.set_config(100, &update).await.unwrap(),
        SetConfigOutcome::Applied
    );
    assert_eq!(
        state.tasks().len(),
        tasks_before,
        "no task for an lxc config"
    );
    let view = state.guest(100).unwrap();
    assert_eq!(view.config["cores"], "4");
    assert_eq!(view.config["memory"], "4096");
    assert_ne!(Some(view.digest.as_str()), before.digest.as_deref());

    let after = pve.guest_config(100).await.unwrap();
    assert_eq!(after.cores, Some(4));
    assert_eq!(after.memory, Some(4096));
    assert_eq!(after.onboot, Some(true));

    // Deleting a key.
    let del = ConfigUpdate {
        delete: vec!["onboot".into()],
        ..Default::default()
    };
    assert_eq!(
        pve.set_config(100, &del).await.unwrap(),
        SetConfigOutcome::Applied
    );
    assert_eq!(pve.guest_config(100).await.unwrap().onboot, None);
    assert!(!state.guest(100).unwrap().config.contains_key("onboot"));
}

/// PVE stores the description as `#` comment lines and reads it back with a trailing newline.
/// The client shows that quirk as it is; making "x" and "x\n" compare equal is the reconcile
/// normalizer's job (`felhom_reconcile::normalize`, `DescriptionNormalizer`).
#[tokio::test]
async fn description_round_trip_shows_pves_trailing_newline() {
    let sim = sim().await;
    let pve = client(&sim);
    let out = pve
        .set_config(101, &set(&[("description", "x")]))
        .await
        .unwrap();
    assert_eq!(out, SetConfigOutcome::Applied);
    let cfg = pve.guest_config(101).await.unwrap();
    assert_eq!(cfg.description.as_deref(), Some("x\n"));
    assert_eq!(
        sim.state().guest(101).unwrap().description.as_deref(),
        Some("x\n")
    );

    // Inner lines and special characters survive; trailing blank lines do not.
    pve.set_config(101, &set(&[("description", "a & b\n\n c=d\n\n")]))
        .await
        .unwrap();
    assert_eq!(
        pve.guest_config(101).await.unwrap().description.as_deref(),
        Some("a & b\n\n c=d\n")
    );
}

#[tokio::test]
async fn snapshot_rollback_and_delete() {
    let sim = sim().await;
    let pve = client(&sim);
    let state = sim.state();
    let wait = fast_wait();

    let upid = pve
        .snapshot(100, "pre-upgrade", Some("before the upgrade"))
        .await
        .unwrap();
    assert_eq!(state.task(upid.as_str()).unwrap().task_type, "vzsnapshot");
    wait_task(&pve, &upid, &wait).await.unwrap();
    let snaps = pve.list_snapshots(100).await.unwrap();
    let snap = snaps
        .iter()
        .find(|s| s.name == "pre-upgrade")
        .unwrap_or_else(|| panic!("{snaps:?}"));
    assert_eq!(snap.description.as_deref(), Some("before the upgrade\n"));
    assert!(snap.snaptime.is_some());
    let current = snaps.iter().find(|s| s.is_current()).unwrap();
    assert_eq!(current.parent.as_deref(), Some("pre-upgrade"));

    pve.set_config(100, &set(&[("cores", "6")])).await.unwrap();
    assert_eq!(pve.guest_config(100).await.unwrap().cores, Some(6));

    let upid = pve.rollback(100, "pre-upgrade", false).await.unwrap();
    assert_eq!(state.task(upid.as_str()).unwrap().task_type, "vzrollback");
    wait_task(&pve, &upid, &wait).await.unwrap();
    let cfg = pve.guest_config(100).await.unwrap();
    assert_eq!(cfg.cores, Some(2), "the snapshot's value is back");
    assert_eq!(cfg.extra.get("parent"), Some(&"pre-upgrade".into()));
    assert_eq!(
        pve.guest_status(100).await.unwrap().status,
        GuestStatus::Stopped,
        "pve stops a running container to roll it back"
    );

    let upid = pve.delete_snapshot(100, "pre-upgrade").await.unwrap();
    assert_eq!(
        state.task(upid.as_str()).unwrap().task_type,
        "vzdelsnapshot"
    );
    wait_task(&pve, &upid, &wait).await.unwrap();
    let snaps = pve.list_snapshots(100).await.unwrap();
    assert_eq!(
        snaps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["current"]
    );
    assert!(state.guest(100).unwrap().snapshots.is_empty());
}

#[tokio::test]
async fn vzdump_then_restore_creates_a_guest_from_the_backup() {
    let sim = sim().await;
    let pve = client(&sim);
    let state = sim.state();
    let wait = fast_wait();
    pve.set_config(101, &set(&[("description", "db box")]))
        .await
        .unwrap();

    let before = pve
        .storage_content("local", Some("backup"), Some(101))
        .await
        .unwrap();
    assert!(before.is_empty(), "{before:?}");
    let dump = VzdumpRequest {
        vmid: 101,
        storage: "local".into(),
        notes: Some("{{guestname}} on {{node}}".into()),
        protected: true,
        ..Default::default()
    };
    let VzdumpOutcome::Task(upid) = pve.vzdump(&dump).await.unwrap() else {
        panic!("a backup of an existing guest runs a task")
    };
    assert_eq!(state.task(upid.as_str()).unwrap().task_type, "vzdump");
    wait_task(&pve, &upid, &wait).await.unwrap();

    let after = pve
        .storage_content("local", Some("backup"), Some(101))
        .await
        .unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    let backup = &after[0];
    assert!(
        backup.volid.starts_with("local:backup/vzdump-lxc-101-")
            && backup.volid.ends_with(".tar.zst"),
        "{}",
        backup.volid
    );
    assert_eq!(backup.notes.as_deref(), Some("db on pve"));
    assert!(backup.protected);
    assert_eq!(backup.vmid, Some(101));

    // Restore it as a new guest. The default token holds neither VM.Config.Network (hostname)
    // nor VM.Config.Disk (rootfs), so it passes only the target storage.
    let restore = RestoreRequest {
        vmid: 105,
        archive: backup.volid.clone(),
        storage: Some("local-lvm".into()),
        unique: true,
        ..Default::default()
    };
    let upid = pve.restore_lxc(&restore).await.unwrap();
    assert_eq!(state.task(upid.as_str()).unwrap().task_type, "vzrestore");
    let out = wait_task(&pve, &upid, &wait).await.unwrap();
    assert_eq!(out.exitstatus, "OK");

    let guests = pve.list_lxc().await.unwrap();
    let restored = guests
        .iter()
        .find(|g| g.vmid == 105)
        .unwrap_or_else(|| panic!("{guests:?}"));
    assert_eq!(restored.name.as_deref(), Some("db"));
    assert_eq!(restored.status, GuestStatus::Stopped);
    let cfg = pve.guest_config(105).await.unwrap();
    assert_eq!(cfg.hostname.as_deref(), Some("db"));
    assert_eq!(cfg.cores, Some(1));
    assert_eq!(cfg.memory, Some(1024));
    assert_eq!(cfg.description.as_deref(), Some("db box\n"));
    assert!(
        cfg.rootfs
            .as_deref()
            .is_some_and(|r| r.starts_with("local-lvm:vm-105-disk-0,")),
        "{:?}",
        cfg.rootfs
    );
    assert_eq!(cfg.rootfs_size_bytes(), Some(8 * 1024 * 1024 * 1024));
    assert_eq!(cfg.lock, None);
}

/// `"OK"` instead of a UPID decodes as "nothing ran". Real PVE answers it when every requested
/// guest lives on another cluster node; the one-node simulator answers it for a vmid it does
/// not have, where PVE 9 (`PVE::API2::VZDump`, "include IDs for deleted guests, and visibly
/// fail later") would run a task failing with `job errors`: a known difference of the sim.
#[tokio::test]
async fn vzdump_answering_ok_decodes_as_nothing_ran() {
    let sim = sim().await;
    let pve = client(&sim);
    let dump = VzdumpRequest {
        vmid: 4242,
        storage: "local".into(),
        ..Default::default()
    };
    assert_eq!(pve.vzdump(&dump).await.unwrap(), VzdumpOutcome::NothingRan);
    assert!(sim.state().tasks().is_empty());
}

#[tokio::test]
async fn a_restore_request_with_extra_options_reaches_pve_intact() {
    // `extra` options are sent verbatim; the sim stores them in the restored config.
    let sim = sim().await;
    let pve = client(&sim);
    let restore = RestoreRequest {
        vmid: 106,
        archive: "local:backup/vzdump-lxc-100-2025_01_02-03_04_05.tar.zst".into(),
        storage: Some("local-lvm".into()),
        extra: BTreeMap::from([
            ("cores".to_owned(), "3".to_owned()),
            ("description".to_owned(), "restored & renamed".to_owned()),
        ]),
        ..Default::default()
    };
    let upid = pve.restore_lxc(&restore).await.unwrap();
    wait_task(&pve, &upid, &fast_wait()).await.unwrap();
    let cfg = pve.guest_config(106).await.unwrap();
    assert_eq!(cfg.hostname.as_deref(), Some("web"), "from the backup");
    assert_eq!(cfg.cores, Some(3), "given options win");
    assert_eq!(cfg.description.as_deref(), Some("restored & renamed\n"));
}

//! Every read operation of the real `PveClient` against the simulator's default host over
//! pinned TLS, decoded into the typed answers (and the legacy shapes of older PVE).

use felhom_proxmox::{
    GuestStatus, ProxmoxApi, TaskExit, TaskFilter, TaskSource, TaskState, Upid, VzdumpOutcome,
    VzdumpRequest,
};
use felhom_pve_sim::{SimConfig, DEFAULT_PVE_VERSION};

use crate::fixture::{client, fast_wait, fingerprint, raw_get, sim, sim_with};

const GIB: u64 = 1024 * 1024 * 1024;
const DEFAULT_BACKUP: &str = "local:backup/vzdump-lxc-100-2025_01_02-03_04_05.tar.zst";

#[tokio::test]
async fn host_reads_version_nodes_and_node_status() {
    let sim = sim().await;
    let pve = client(&sim);

    let v = pve.version().await.unwrap();
    assert_eq!(v.version, DEFAULT_PVE_VERSION);
    assert_eq!(v.release.as_deref(), Some("9.1"));
    assert!(v.repoid.is_some_and(|r| r.len() == 16));

    let nodes = pve.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let n = &nodes[0];
    assert_eq!(n.node, "pve");
    assert_eq!(n.status.as_str(), "online");
    assert_eq!(
        n.ssl_fingerprint.as_deref(),
        Some(sim.fingerprint().as_str())
    );
    assert_eq!(
        n.fingerprint().expect("reported").expect("parses"),
        fingerprint(&sim),
        "the fingerprint /nodes reports is the one the client pins"
    );
    assert_eq!(n.maxcpu, Some(8));
    assert_eq!(n.maxmem, Some(32 * GIB));

    let st = pve.node_status().await.unwrap();
    assert!(
        st.pveversion
            .starts_with(&format!("pve-manager/{DEFAULT_PVE_VERSION}/")),
        "{}",
        st.pveversion
    );
    assert_eq!(st.cpuinfo.cpus, Some(8));
    assert_eq!(st.memory.total, 32 * GIB);
    assert!(st.memory.used > 0 && st.memory.used < st.memory.total);
    assert_eq!(
        st.loadavg.len(),
        3,
        "loadavg arrives as strings and decodes"
    );
    assert!(st.rootfs.total > st.rootfs.used);
}

#[tokio::test]
async fn guest_reads_list_status_config_and_snapshots() {
    let sim = sim().await;
    let pve = client(&sim);

    let mut guests = pve.list_lxc().await.unwrap();
    guests.sort_by_key(|g| g.vmid);
    let ids: Vec<(u32, Option<&str>, &GuestStatus)> = guests
        .iter()
        .map(|g| (g.vmid, g.name.as_deref(), &g.status))
        .collect();
    assert_eq!(
        ids,
        [
            (100, Some("web"), &GuestStatus::Running),
            (101, Some("db"), &GuestStatus::Stopped)
        ]
    );
    assert_eq!(
        guests[0].maxmem,
        Some(2048 * 1024 * 1024),
        "bytes in the list"
    );
    assert_eq!(guests[0].maxdisk, Some(8 * GIB));
    assert_eq!(guests[0].cpus, Some(2.0));

    let web = pve.guest_status(100).await.unwrap();
    assert_eq!(web.vmid, 100);
    assert_eq!(web.status, GuestStatus::Running);
    assert!(web.pid.is_some());
    let db = pve.guest_status(101).await.unwrap();
    assert_eq!(db.status, GuestStatus::Stopped);
    assert_eq!(db.uptime, Some(0));

    let cfg = pve.guest_config(100).await.unwrap();
    assert_eq!(cfg.cores, Some(2));
    assert_eq!(cfg.memory, Some(2048), "MiB in the config");
    assert_eq!(cfg.swap, Some(512));
    assert_eq!(cfg.hostname.as_deref(), Some("web"));
    assert_eq!(
        cfg.rootfs.as_deref(),
        Some("local-lvm:vm-100-disk-0,size=8G")
    );
    assert_eq!(cfg.rootfs_size_bytes(), Some(8 * GIB));
    assert_eq!(cfg.description.as_deref(), Some("web server\n"));
    let view = sim.state().guest(100).unwrap();
    assert_eq!(cfg.digest.as_deref(), Some(view.digest.as_str()));
    assert_eq!(cfg.lock, None);

    let snaps = pve.list_snapshots(100).await.unwrap();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert!(snaps[0].is_current());
    assert_eq!(snaps[0].description.as_deref(), Some("You are here!"));
    assert_eq!(snaps[0].running, Some(true));
}

#[tokio::test]
async fn storage_reads_list_node_storage_and_content() {
    let sim = sim().await;
    let pve = client(&sim);

    let mut cluster = pve.list_storage().await.unwrap();
    cluster.sort_by(|a, b| a.storage.cmp(&b.storage));
    let ids: Vec<(&str, Option<&str>)> = cluster
        .iter()
        .map(|s| (s.storage.as_str(), s.storage_type.as_deref()))
        .collect();
    assert_eq!(
        ids,
        [("local", Some("dir")), ("local-lvm", Some("lvmthin"))]
    );
    assert_eq!(cluster[0].content, ["backup", "iso", "rootdir", "vztmpl"]);
    assert_eq!(cluster[0].path.as_deref(), Some("/var/lib/vz"));

    let node = pve.node_storage().await.unwrap();
    assert_eq!(node.len(), 2, "{node:?}");
    for s in &node {
        let (total, used) = (s.total.unwrap(), s.used.unwrap());
        assert!(total > 0 && used <= total, "{s:?}");
        assert_eq!(s.active, Some(true), "{s:?}");
    }

    let content = pve.storage_content("local", None, None).await.unwrap();
    let volids: Vec<&str> = content.iter().map(|c| c.volid.as_str()).collect();
    assert!(volids.contains(&DEFAULT_BACKUP), "{volids:?}");
    assert!(
        volids.contains(&"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"),
        "{volids:?}"
    );
    let backups = pve
        .storage_content("local", Some("backup"), Some(100))
        .await
        .unwrap();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let b = &backups[0];
    assert_eq!(b.volid, DEFAULT_BACKUP);
    assert_eq!(b.vmid, Some(100));
    assert_eq!(b.notes.as_deref(), Some("web nightly"));
    assert_eq!(b.ctime, Some(felhom_pve_sim::DEFAULT_BACKUP_CTIME));
    assert!(!b.protected);
    assert!(pve
        .storage_content("local", Some("backup"), Some(101))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn task_reads_status_and_log() {
    let sim = sim().await;
    let pve = client(&sim);
    let dump = |vmid| VzdumpRequest {
        vmid,
        storage: "local".into(),
        ..Default::default()
    };

    // A task that stays running for the whole test, whatever the machine's load.
    sim.faults()
        .slow_tasks(Some("vzdump"), std::time::Duration::from_secs(600));
    let VzdumpOutcome::Task(slow) = pve.vzdump(&dump(101)).await.unwrap() else {
        panic!("a backup of an existing guest runs a task")
    };
    assert_eq!(slow.node(), "pve");
    let running = pve.task_status(&slow).await.unwrap();
    assert_eq!(running.status, TaskState::Running);
    assert_eq!(running.exitstatus, None, "no exit status while running");
    assert_eq!(running.upid.as_deref(), Some(slow.as_str()));
    assert_eq!(running.worker_type.as_deref(), Some("vzdump"));
    assert_eq!(running.id.as_deref(), Some("101"));
    assert_eq!(running.user.as_deref(), Some("felhom@pve"));
    assert_eq!(running.tokenid.as_deref(), Some("agent"));
    assert!(running.pid.is_some() && running.starttime.is_some());

    // One that finishes at the default pace.
    sim.faults().clear();
    let VzdumpOutcome::Task(upid) = pve.vzdump(&dump(100)).await.unwrap() else {
        panic!("a backup of an existing guest runs a task")
    };
    sim.state().wait_task(upid.as_str()).await.unwrap();
    let done = pve.task_status(&upid).await.unwrap();
    assert_eq!(done.status, TaskState::Stopped);
    assert_eq!(done.exitstatus.as_deref(), Some("OK"));
    assert_eq!(done.id.as_deref(), Some("100"));

    let all = pve.task_log(&upid, 0, 0).await.unwrap();
    let total = all.total.expect("pve sends total");
    assert_eq!(total as usize, all.lines.len());
    assert!(total >= 2, "{all:?}");
    assert_eq!(all.lines[0].n, 1, "1-based line numbers");
    assert_eq!(all.lines.last().unwrap().t, "TASK OK");
    let page = pve.task_log(&upid, 1, 1).await.unwrap();
    assert_eq!(page.lines.len(), 1);
    assert_eq!(page.lines[0].n, 2, "start is a 0-based offset");
    assert_eq!(page.lines[0].t, all.lines[1].t);

    // The same finished task through the waiter.
    let out = felhom_proxmox::wait_task(&pve, &upid, &fast_wait())
        .await
        .unwrap();
    assert_eq!(out.exitstatus, "OK");

    // An unknown but well-formed UPID is a typed 400, not a hang.
    let ghost: Upid = "UPID:pve:00001234:00005678:6778A1B2:vzstart:101:felhom@pve!agent:"
        .parse()
        .unwrap();
    let err = pve.task_status(&ghost).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
}

#[tokio::test]
async fn task_list_filters_by_guest_type_time_and_source() {
    let sim = sim().await;
    let pve = client(&sim);
    let since = sim.state().now();
    sim.faults()
        .slow_tasks(Some("vzstart"), std::time::Duration::from_secs(600));
    let running = pve.start(101).await.unwrap();
    sim.faults().clear();
    let stopped = pve.stop(100).await.unwrap();
    sim.state().wait_task(stopped.as_str()).await.unwrap();

    let of = |vmid, kind: &str, source| TaskFilter {
        vmid: Some(vmid),
        typefilter: Some(kind.to_owned()),
        since: Some(since),
        source,
        limit: None,
    };
    // Active tasks are listed only when asked for, with RUNNING as their status.
    let archive = pve
        .list_tasks(&of(101, "vzstart", TaskSource::Archive))
        .await
        .unwrap();
    assert!(archive.tasks.is_empty(), "{archive:?}");
    assert_eq!(
        archive.total, None,
        "pve's formatter leaves out a total of 0"
    );
    let all = pve
        .list_tasks(&of(101, "vzstart", TaskSource::All))
        .await
        .unwrap();
    assert_eq!(all.total, Some(1));
    assert_eq!(all.tasks[0].upid, running.as_str());
    assert!(all.tasks[0].is_running());
    assert_eq!(all.tasks[0].id.as_deref(), Some("101"));
    assert_eq!(all.tasks[0].tokenid.as_deref(), Some("agent"));
    // A finished one carries its exit text as its status, and its end.
    let stop = pve
        .list_tasks(&of(100, "vzstop", TaskSource::All))
        .await
        .unwrap();
    assert_eq!(stop.tasks.len(), 1);
    assert_eq!(stop.tasks[0].upid, stopped.as_str());
    assert_eq!(stop.tasks[0].exit(), Some(TaskExit::Ok));
    assert!(stop.tasks[0].endtime.is_some());
    // Filters that match nothing: another guest, another type, a later start.
    for filter in [
        of(102, "vzstart", TaskSource::All),
        of(101, "vzstop", TaskSource::All),
        TaskFilter {
            since: Some(since + 3600),
            ..of(101, "vzstart", TaskSource::All)
        },
    ] {
        let none = pve.list_tasks(&filter).await.unwrap();
        assert!(none.tasks.is_empty(), "{filter:?}: {none:?}");
    }
    assert_eq!(sim.state().requests_to("GET /nodes/{node}/tasks"), 6);
}

#[tokio::test]
async fn permissions_show_what_the_token_may_do() {
    let sim = sim().await;
    let pve = client(&sim);
    let perms = pve.permissions().await.unwrap();
    for p in felhom_pve_sim::AGENT_PRIVILEGES {
        assert!(perms.allows("/vms/100", p), "{p} on /vms/100: {perms:?}");
        assert!(perms.allows("/", p), "{p} on /");
    }
    assert!(
        !perms.allows("/vms/100", "VM.Config.Disk"),
        "privsep: the token has only its own ACL"
    );
    assert_eq!(perms.at("/").and_then(|m| m.get("VM.Backup")), Some(&true));
}

#[tokio::test]
async fn legacy_types_decode() {
    // PVE before 8.2 sent the container list's vmid as a string.
    let sim = sim_with(SimConfig::default().legacy_types(true)).await;
    let pve = client(&sim);
    let mut guests = pve.list_lxc().await.unwrap();
    guests.sort_by_key(|g| g.vmid);
    assert_eq!(
        guests.iter().map(|g| g.vmid).collect::<Vec<_>>(),
        [100, 101]
    );
    // The mode really is on: the raw answer carries strings.
    let raw = raw_get(&sim, "/nodes/pve/lxc").await;
    assert!(raw["data"][0]["vmid"].is_string(), "{raw}");
}

//! vzdump and restore: the backup volume, `VM.Backup` checked inside the task, the storage
//! privilege at the POST, restore creating (or overwriting) a guest.

use felhom_pve_sim::{Acl, SimConfig, TokenSpec, ADMINISTRATOR_PRIVILEGES, AGENT_PRIVILEGES};

use crate::client::{sim, sim_with, Client};

fn without(privs: &[&str], missing: &str) -> Vec<&'static str> {
    AGENT_PRIVILEGES
        .iter()
        .copied()
        .filter(|p| !privs.contains(p) && *p != missing)
        .collect()
}

fn token_without(id: &str, missing: &str) -> TokenSpec {
    TokenSpec::new(id, "pw")
        .acl(Acl::new("/", &without(&[], missing), true))
        .user_acl(Acl::new("/", ADMINISTRATOR_PRIVILEGES, true))
}

#[tokio::test(start_paused = true)]
async fn vzdump_creates_a_backup_volume_with_notes_and_protection() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let before = sim.state().storage_content("local").len();
    let upid = c
        .post(
            "/nodes/pve/vzdump",
            &[
                ("vmid", "100"),
                ("storage", "local"),
                ("mode", "snapshot"),
                ("notes-template", "{{guestname}} by felhom"),
                ("protected", "1"),
            ],
        )
        .await
        .upid();
    assert!(upid.contains(":vzdump:100:felhom@pve!agent:"), "{upid}");
    assert_eq!(
        sim.state().guest(100).unwrap().lock.as_deref(),
        Some("backup")
    );
    assert_eq!(c.wait_task(&upid).await["exitstatus"], "OK");
    assert_eq!(sim.state().guest(100).unwrap().lock, None);
    let log = c.task_log(&upid).await;
    assert!(
        log[0].starts_with("INFO: starting new backup job: vzdump 100"),
        "{log:?}"
    );
    assert_eq!(log.last().map(String::as_str), Some("TASK OK"));

    let content = c
        .get("/nodes/pve/storage/local/content?content=backup&vmid=100")
        .await
        .data();
    let items = content.as_array().unwrap();
    assert_eq!(items.len(), 2, "{content}");
    let new = items
        .iter()
        .find(|i| i["notes"] == "web by felhom")
        .expect("the new backup");
    let volid = new["volid"].as_str().unwrap();
    assert!(volid.starts_with("local:backup/vzdump-lxc-100-"), "{volid}");
    assert!(volid.ends_with(".tar.zst"));
    assert_eq!(new["format"], "tar.zst");
    assert_eq!(new["subtype"], "lxc");
    assert_eq!(new["protected"], 1);
    assert_eq!(new["vmid"], 100);
    assert_eq!(sim.state().storage_content("local").len(), before + 1);

    // a vmid that lives nowhere here: nothing to do, no task
    let r = c
        .post(
            "/nodes/pve/vzdump",
            &[("vmid", "4242"), ("storage", "local")],
        )
        .await;
    assert_eq!(r.data(), "OK");
}

#[tokio::test]
async fn missing_vm_backup_fails_inside_the_task_not_at_the_post() {
    let sim =
        sim_with(SimConfig::default().token(token_without("bk@pve!nobackup", "VM.Backup"))).await;
    let c = Client::token(&sim, "bk@pve!nobackup", "pw");
    let before = sim.state().storage_content("local").len();
    let r = c
        .post(
            "/nodes/pve/vzdump",
            &[("vmid", "100"), ("storage", "local")],
        )
        .await;
    assert_eq!(r.status, 200, "the POST succeeds");
    let upid = r.upid();
    let done = c.wait_task(&upid).await;
    assert_eq!(
        done["exitstatus"],
        "Permission check failed (/vms/100, VM.Backup)"
    );
    assert_eq!(
        c.task_log(&upid).await.last().map(String::as_str),
        Some("TASK ERROR: Permission check failed (/vms/100, VM.Backup)")
    );
    assert_eq!(sim.state().storage_content("local").len(), before);
    assert_eq!(sim.state().guest(100).unwrap().lock, None);
}

#[tokio::test]
async fn missing_datastore_allocate_space_is_refused_at_the_post() {
    let sim = sim_with(
        SimConfig::default().token(token_without("bk@pve!nospace", "Datastore.AllocateSpace")),
    )
    .await;
    let c = Client::token(&sim, "bk@pve!nospace", "pw");
    let r = c
        .post(
            "/nodes/pve/vzdump",
            &[("vmid", "100"), ("storage", "local")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.reason,
        "Permission check failed (/storage/local, Datastore.AllocateSpace)"
    );
    assert!(sim.state().tasks().is_empty());
    // and the backups it may not touch are not listed
    let r = c
        .get("/nodes/pve/storage/local/content?content=backup")
        .await;
    assert_eq!(r.data(), serde_json::json!([]));
}

#[tokio::test(start_paused = true)]
async fn restore_creates_a_guest_from_a_backup() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let backup = sim
        .state()
        .storage_content("local")
        .into_iter()
        .find(|v| v.content == "backup")
        .expect("default backup of 100");
    let upid = c
        .post(
            "/nodes/pve/lxc",
            &[
                ("vmid", "105"),
                ("restore", "1"),
                ("ostemplate", &backup.volid),
                ("storage", "local-lvm"),
                ("description", "restored"),
            ],
        )
        .await
        .upid();
    assert!(upid.contains(":vzrestore:105:"));
    assert_eq!(
        sim.state().guest(105).unwrap().lock.as_deref(),
        Some("create")
    );
    assert_eq!(c.wait_task(&upid).await["exitstatus"], "OK");
    let cfg = c.get("/nodes/pve/lxc/105/config").await.data();
    assert_eq!(cfg["hostname"], "web", "from the backed-up config");
    assert_eq!(cfg["memory"], 2048);
    assert_eq!(cfg["description"], "restored\n", "given options win");
    assert_eq!(cfg["rootfs"], "local-lvm:vm-105-disk-0,size=8G");
    assert!(cfg.get("lock").is_none());
    assert!(!sim.state().guest(105).unwrap().running);

    // over an existing CT: needs force, and the CT must be stopped
    let form = [
        ("vmid", "100"),
        ("restore", "1"),
        ("ostemplate", backup.volid.as_str()),
        ("storage", "local-lvm"),
    ];
    let r = c.post("/nodes/pve/lxc", &form).await;
    assert_eq!(r.reason, "CT 100 already exists on node 'pve'");
    let mut forced = form.to_vec();
    forced.push(("force", "1"));
    let r = c.post("/nodes/pve/lxc", &forced).await;
    assert_eq!(r.reason, "can't overwrite running container");
    sim.state().set_running(100, false);
    sim.state().set_config(100, "memory", "512");
    let upid = c.post("/nodes/pve/lxc", &forced).await.upid();
    assert_eq!(c.wait_task(&upid).await["exitstatus"], "OK");
    assert_eq!(sim.state().guest(100).unwrap().config["memory"], "2048");

    // the content type must match
    let r = c
        .post(
            "/nodes/pve/lxc",
            &[
                ("vmid", "106"),
                ("restore", "1"),
                (
                    "ostemplate",
                    "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                ),
            ],
        )
        .await;
    assert_eq!(r.status, 500);
    assert!(
        r.reason.ends_with("content type needs to be 'backup'"),
        "{}",
        r.reason
    );
}

#[tokio::test]
async fn create_from_a_template_and_destroy() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let upid = c
        .post(
            "/nodes/pve/lxc",
            &[
                ("vmid", "110"),
                (
                    "ostemplate",
                    "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                ),
                ("storage", "local-lvm"),
                ("memory", "256"),
                ("start", "1"),
            ],
        )
        .await
        .upid();
    assert!(upid.contains(":vzcreate:110:"));
    assert_eq!(c.wait_task(&upid).await["exitstatus"], "OK");
    let g = sim.state().guest(110).unwrap();
    assert!(g.running);
    assert_eq!(g.config["rootfs"], "local-lvm:vm-110-disk-0,size=4G");
    assert_eq!(g.config["ostype"], "debian");
    assert_eq!(g.config["memory"], "256");
    // options are checked one by one: hostname and rootfs are network and disk settings
    // (a token without VM.Config.Network: the agent's role has it for restore tests)
    let tmpl = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";
    sim.state()
        .add_token(token_without("felhom@pve!nonet", "VM.Config.Network"));
    let c = Client::token(&sim, "felhom@pve!nonet", "pw");
    let r = c
        .post(
            "/nodes/pve/lxc",
            &[("vmid", "111"), ("ostemplate", tmpl), ("hostname", "x")],
        )
        .await;
    assert_eq!(
        r.reason,
        "Permission check failed (/vms/111, VM.Config.Network)"
    );
    let r = c
        .post(
            "/nodes/pve/lxc",
            &[
                ("vmid", "111"),
                ("ostemplate", tmpl),
                ("rootfs", "local-lvm:4"),
            ],
        )
        .await;
    assert_eq!(
        r.reason,
        "Permission check failed (/vms/111, VM.Config.Disk)"
    );
    assert!(sim.state().guest(111).is_none());
    let r = c.delete("/nodes/pve/lxc/110").await;
    assert_eq!(r.reason, "unable to destroy CT 110 - container is running");
    let upid = c.delete("/nodes/pve/lxc/110?force=1&purge=1").await.upid();
    assert_eq!(c.wait_task(&upid).await["exitstatus"], "OK");
    assert!(sim.state().guest(110).is_none());
    let log = c.task_log(&upid).await;
    assert_eq!(
        log[0],
        "  Logical volume \"vm-110-disk-0\" successfully removed."
    );
}

#[tokio::test]
async fn creating_needs_vm_allocate_at_the_post() {
    let sim =
        sim_with(SimConfig::default().token(token_without("mk@pve!noalloc", "VM.Allocate"))).await;
    let c = Client::token(&sim, "mk@pve!noalloc", "pw");
    let r = c
        .post(
            "/nodes/pve/lxc",
            &[
                ("vmid", "120"),
                (
                    "ostemplate",
                    "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                ),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.reason, "Permission check failed");
    assert!(sim.state().guest(120).is_none());
}

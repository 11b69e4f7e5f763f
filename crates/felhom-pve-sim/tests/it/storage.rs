//! Storage lists and content, silently filtered by datastore privileges.

use felhom_pve_sim::{Acl, SimConfig, TokenSpec};
use serde_json::json;

use crate::client::{sim, sim_with, Client};

#[tokio::test]
async fn storage_lists_have_pve_shapes() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let cluster = c.get("/storage").await.data();
    let local = cluster
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["storage"] == "local")
        .unwrap();
    assert_eq!(local["type"], "dir");
    assert_eq!(local["content"], "backup,iso,rootdir,vztmpl");
    assert_eq!(local["path"], "/var/lib/vz");
    assert_eq!(local["digest"].as_str().unwrap().len(), 40);
    let lvm = c.get("/storage?type=lvmthin").await.data();
    assert_eq!(lvm.as_array().unwrap().len(), 1);

    let node = c.get("/nodes/pve/storage").await.data();
    let lvm = node
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["storage"] == "local-lvm")
        .unwrap();
    assert_eq!(lvm["active"], 1);
    assert_eq!(lvm["enabled"], 1);
    let total = lvm["total"].as_u64().unwrap();
    let used = lvm["used"].as_u64().unwrap();
    assert_eq!(lvm["avail"].as_u64().unwrap(), total - used);
    assert_eq!(used, 16 << 30, "two 8 GiB root disks");
    let r = c.get("/nodes/pve/storage?content=backup").await.data();
    assert_eq!(r.as_array().unwrap().len(), 1);
    let r = c.get("/nodes/pve/storage?storage=nope").await;
    assert_eq!(r.json()["errors"], json!({"storage": "No such storage."}));

    let tmpl = c
        .get("/nodes/pve/storage/local/content?content=vztmpl")
        .await
        .data();
    assert_eq!(
        tmpl[0]["volid"],
        "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
    );
    assert_eq!(tmpl[0]["format"], "tzst");
    let backups = c
        .get("/nodes/pve/storage/local/content?content=backup")
        .await
        .data();
    assert_eq!(
        backups[0]["volid"],
        "local:backup/vzdump-lxc-100-2025_01_02-03_04_05.tar.zst"
    );
    assert_eq!(backups[0]["ctime"], 1_735_787_045u64);
    assert_eq!(backups[0]["notes"], "web nightly");
    assert!(backups[0].get("protected").is_none());
    let r = c.get("/nodes/pve/storage/nope/content").await;
    assert_eq!(r.reason, "storage 'nope' does not exist");
}

#[tokio::test]
async fn storage_is_hidden_without_datastore_privileges() {
    let sim = sim_with(
        SimConfig::default().token(
            TokenSpec::new("vm@pve!only", "x")
                .acl(Acl::new("/vms", &["VM.Audit"], true))
                .user_acl(Acl::new("/", &["VM.Audit", "Datastore.Audit"], true)),
        ),
    )
    .await;
    let c = Client::token(&sim, "vm@pve!only", "x");
    assert_eq!(c.get("/storage").await.json(), json!({"data": []}));
    assert_eq!(
        c.get("/nodes/pve/storage").await.json(),
        json!({"data": []})
    );
    let r = c.get("/nodes/pve/storage/local/content").await;
    assert_eq!(
        r.reason,
        "Permission check failed (/storage/local, Datastore.Audit|Datastore.AllocateSpace)"
    );
    // guest disks need VM.Config.Disk as well, so even the default token does not list them
    let disks = Client::new(&sim)
        .get("/nodes/pve/storage/local-lvm/content")
        .await;
    assert_eq!(disks.data(), json!([]));
}

//! Guests: the silently filtered list (privsep intersection), status and config shapes, the
//! description newline, the synchronous config PUT, digests, locks and deletions.

use felhom_pve_sim::{Acl, GuestSpec, SimConfig, TokenSpec};
use serde_json::json;

use crate::client::{sim, sim_with, Client};

fn vmids(r: &crate::client::Resp) -> Vec<u64> {
    let mut ids: Vec<u64> = r
        .data()
        .as_array()
        .expect("list")
        .iter()
        .map(|g| g["vmid"].as_u64().expect("numeric vmid"))
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn the_list_is_filtered_by_the_token_and_user_privilege_intersection() {
    let config = SimConfig::default()
        // token may audit everything, its user only 101: the intersection is 101
        .token(
            TokenSpec::new("ops@pve!narrow", "a")
                .acl(Acl::new("/", &["VM.Audit"], true))
                .user_acl(Acl::new("/vms/101", &["VM.Audit"], true)),
        )
        // privsep token without ACLs of its own: sees nothing, gets no error
        .token(TokenSpec::new("ops@pve!bare", "b"))
        // privsep off: the user's privileges
        .token(TokenSpec::new("ops@pve!full", "c").privsep(false))
        .token(
            TokenSpec::new("adm@pve!all", "d")
                .privsep(false)
                .user_acl(Acl::new("/vms", &["VM.Audit"], true)),
        );
    let sim = sim_with(config).await;
    assert_eq!(
        vmids(&Client::new(&sim).get("/nodes/pve/lxc").await),
        [100, 101]
    );
    assert_eq!(
        vmids(
            &Client::token(&sim, "ops@pve!narrow", "a")
                .get("/nodes/pve/lxc")
                .await
        ),
        [101]
    );
    let bare = Client::token(&sim, "ops@pve!bare", "b")
        .get("/nodes/pve/lxc")
        .await;
    assert_eq!(bare.status, 200);
    assert_eq!(bare.json(), json!({"data": []}));
    assert_eq!(
        vmids(
            &Client::token(&sim, "ops@pve!full", "c")
                .get("/nodes/pve/lxc")
                .await
        ),
        [101]
    );
    assert_eq!(
        vmids(
            &Client::token(&sim, "adm@pve!all", "d")
                .get("/nodes/pve/lxc")
                .await
        ),
        [100, 101]
    );
    // the narrow token cannot read 100 directly
    let r = Client::token(&sim, "ops@pve!narrow", "a")
        .get("/nodes/pve/lxc/100/status/current")
        .await;
    assert_eq!(r.reason, "Permission check failed (/vms/100, VM.Audit)");
    // and its permissions say why
    let r = Client::token(&sim, "ops@pve!narrow", "a")
        .get("/access/permissions")
        .await;
    let perms = r.data();
    assert!(perms.get("/vms").is_none(), "{perms}");
    assert_eq!(perms["/vms/101"], json!({"VM.Audit": 1}));
}

#[tokio::test]
async fn access_permissions_report_the_tokens_privileges() {
    let sim = sim_with(
        SimConfig::default().token(
            TokenSpec::new("ops@pve!tok", "t")
                .acl(Acl::new("/", &["VM.Audit"], true))
                .user_acl(Acl::new("/", &["VM.Audit"], true)),
        ),
    )
    .await;
    let c = Client::new(&sim);
    let all = c.get("/access/permissions").await.data();
    assert_eq!(all["/"]["VM.Backup"], 1);
    assert!(all["/"].get("Sys.Modify").is_none());
    let one = c.get("/access/permissions?path=/vms/100").await.data();
    assert_eq!(one.as_object().unwrap().len(), 1);
    assert_eq!(one["/vms/100"]["VM.Config.Options"], 1);
    // the owning user's own privileges: Administrator, with Sys.Audit on /access to look
    let user = c
        .get("/access/permissions?userid=felhom@pve&path=/")
        .await
        .data();
    assert_eq!(user["/"]["Sys.Modify"], 1);
    // without Sys.Audit on /access, other users' permissions are refused
    let r = Client::token(&sim, "ops@pve!tok", "t")
        .get("/access/permissions?userid=root@pam")
        .await;
    assert_eq!(r.reason, "Permission check failed (/access, Sys.Audit)");
}

#[tokio::test]
async fn list_and_status_use_bytes_and_pve_types() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let list = c.get("/nodes/pve/lxc").await.data();
    let web = list
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["vmid"] == 100)
        .unwrap()
        .clone();
    assert_eq!(web["status"], "running");
    assert_eq!(web["name"], "web");
    assert_eq!(web["type"], "lxc");
    assert_eq!(web["maxmem"], 2048u64 * 1024 * 1024);
    assert_eq!(web["maxswap"], 512u64 * 1024 * 1024);
    assert_eq!(web["maxdisk"], 8u64 << 30);
    assert_eq!(web["cpus"], 2);
    assert!(web["pid"].is_u64());
    let db = c.get("/nodes/pve/lxc/101/status/current").await.data();
    assert_eq!(db["status"], "stopped");
    assert_eq!(db["vmid"], 101);
    assert_eq!(db["ha"], json!({"managed": 0}));
    assert!(db.get("pid").is_none());
    assert!(db.get("lock").is_none());

    sim.faults().set_legacy_types(true);
    let list = c.get("/nodes/pve/lxc").await.data();
    assert!(list[0]["vmid"].is_string(), "{list}");
}

#[tokio::test]
async fn config_reads_mib_keys_only_when_set_and_the_description_with_a_newline() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let cfg = c.get("/nodes/pve/lxc/100/config").await.data();
    assert_eq!(cfg["memory"], 2048);
    assert_eq!(cfg["cores"], 2);
    assert_eq!(cfg["unprivileged"], 1);
    assert_eq!(cfg["rootfs"], "local-lvm:vm-100-disk-0,size=8G");
    assert_eq!(cfg["description"], "web server\n");
    assert_eq!(cfg["digest"].as_str().unwrap().len(), 40);
    assert!(cfg.get("onboot").is_none());
    assert!(cfg.get("lock").is_none());
    assert_eq!(
        cfg["digest"],
        sim.state().guest(100).unwrap().digest.as_str()
    );
}

#[tokio::test]
async fn set_config_is_synchronous_and_returns_null() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let before = c.get("/nodes/pve/lxc/100/config").await.data()["digest"].clone();
    let r = c
        .put(
            "/nodes/pve/lxc/100/config",
            &[
                ("description", "hello"),
                ("cores", "4"),
                ("onboot", "1"),
                ("tags", "b;a,b"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"data": null}));
    assert!(sim.state().tasks().is_empty(), "no task for a config PUT");
    let cfg = c.get("/nodes/pve/lxc/100/config").await.data();
    assert_eq!(cfg["description"], "hello\n");
    assert_eq!(cfg["cores"], 4);
    assert_eq!(cfg["onboot"], 1);
    assert_eq!(cfg["tags"], "a;b");
    assert_ne!(cfg["digest"], before);

    // the newline read back, sent again, does not grow
    let r = c
        .put("/nodes/pve/lxc/100/config", &[("description", "hello\n")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        c.get("/nodes/pve/lxc/100/config").await.data()["description"],
        "hello\n"
    );

    // JSON bodies work too, with JSON booleans
    let r = c
        .send(
            "PUT",
            "/nodes/pve/lxc/100/config",
            Some((
                "application/json",
                br#"{"memory": 1024, "onboot": false}"#.to_vec(),
            )),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cfg = c.get("/nodes/pve/lxc/100/config").await.data();
    assert_eq!(cfg["memory"], 1024);
    assert_eq!(cfg["onboot"], 0);

    // delete removes keys; deleting an unset key is fine; required keys stay
    let r = c
        .put(
            "/nodes/pve/lxc/100/config",
            &[("delete", "description,onboot,swap")],
        )
        .await;
    assert_eq!(r.status, 200);
    let cfg = c.get("/nodes/pve/lxc/100/config").await.data();
    assert!(cfg.get("description").is_none() && cfg.get("onboot").is_none());
    let r = c
        .put("/nodes/pve/lxc/100/config", &[("delete", "memory")])
        .await;
    assert_eq!(r.reason, "unable to delete required option 'memory'");
    let r = c
        .put("/nodes/pve/lxc/100/config", &[("delete", "bogus")])
        .await;
    assert_eq!(r.json()["errors"]["delete"], "unknown option 'bogus'");
    let r = c.put("/nodes/pve/lxc/100/config", &[]).await;
    assert_eq!(r.reason, "no options specified");
}

#[tokio::test]
async fn a_stale_digest_is_refused_and_nothing_changes() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let digest = c.get("/nodes/pve/lxc/100/config").await.data()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // someone else edits the file
    assert!(sim.state().set_config(100, "cores", "6"));
    let r = c
        .put(
            "/nodes/pve/lxc/100/config",
            &[("cores", "3"), ("digest", &digest)],
        )
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.reason,
        "detected modified configuration - file changed by other user? Try again."
    );
    assert_eq!(sim.state().guest(100).unwrap().config["cores"], "6");
    // with the current digest it goes through
    let digest = sim.state().guest(100).unwrap().digest;
    let r = c
        .put(
            "/nodes/pve/lxc/100/config",
            &[("cores", "3"), ("digest", &digest)],
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_locked_guest_refuses_config_changes() {
    let sim = sim().await;
    let c = Client::new(&sim);
    sim.state().set_lock(100, Some("backup"));
    let r = c.put("/nodes/pve/lxc/100/config", &[("cores", "3")]).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.reason, "CT is locked (backup)");
    let list = c.get("/nodes/pve/lxc").await.data();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["vmid"] == 100)
        .expect("guest 100 listed");
    assert_eq!(entry["lock"], "backup");
}

#[tokio::test]
async fn state_handle_adds_and_removes_guests() {
    let sim = sim().await;
    let c = Client::new(&sim);
    sim.state().add_guest(
        GuestSpec::new(200, "extra")
            .running(true)
            .description("a\n\nb\n\n"),
    );
    let cfg = c.get("/nodes/pve/lxc/200/config").await.data();
    assert_eq!(cfg["hostname"], "extra");
    assert_eq!(cfg["description"], "a\n\nb\n");
    assert!(sim.state().remove_guest(200));
    assert_eq!(c.get("/nodes/pve/lxc/200/config").await.status, 500);
}

#[tokio::test]
async fn index_lists_are_shuffled_by_seed_unless_sorted_is_asked_for() {
    use felhom_pve_sim::ListOrder;
    let host = |order| {
        let mut c = SimConfig::default().list_order(order);
        for vmid in 102..110 {
            c = c.guest(GuestSpec::new(vmid, "g"));
        }
        c
    };
    let vmids = |list: serde_json::Value| -> Vec<u64> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|g| g["vmid"].as_u64().unwrap())
            .collect()
    };
    let sorted: Vec<u64> = (100..110).collect();
    let mut seen = Vec::new();
    for order in [
        ListOrder::Shuffled(1),
        ListOrder::Shuffled(2),
        ListOrder::default(),
    ] {
        let sim = sim_with(host(order)).await;
        let c = Client::new(&sim);
        let first = vmids(c.get("/nodes/pve/lxc").await.data());
        let again = vmids(c.get("/nodes/pve/lxc").await.data());
        assert_eq!(first, again, "stable for one seed");
        assert_ne!(first, sorted);
        let mut back = first.clone();
        back.sort_unstable();
        assert_eq!(back, sorted);
        seen.push(first);
    }
    assert_ne!(seen[0], seen[1]);
    let sim = sim_with(host(ListOrder::Sorted)).await;
    let c = Client::new(&sim);
    assert_eq!(vmids(c.get("/nodes/pve/lxc").await.data()), sorted);
    // the snapshot list keeps PVE's synthetic `current` last
    let sim = sim_with(
        SimConfig::default().guest(
            GuestSpec::new(102, "s")
                .snapshot("s1", "", 1)
                .snapshot("s2", "", 2)
                .snapshot("s3", "", 3),
        ),
    )
    .await;
    let snaps = Client::new(&sim)
        .get("/nodes/pve/lxc/102/snapshot")
        .await
        .data();
    let names: Vec<&str> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4);
    assert_eq!(names[3], "current");
    assert_ne!(names[..3], ["s1", "s2", "s3"]);
}

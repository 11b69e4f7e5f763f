//! `GET /storage`, `GET /nodes/{node}/storage` and `.../storage/{storage}/content`: silently
//! filtered by `Datastore.Audit|Datastore.AllocateSpace`, and per volume by
//! `PVE::Storage::check_volume_access`.

use serde_json::{json, Map, Value};

use super::{ApiError, ApiResult, Ctx, Reply};
use crate::lxcconf;
use crate::state::{Inner, Storage};

const LIST_PRIVS: &[&str] = &["Datastore.Audit", "Datastore.AllocateSpace"];

/// One listed volume, before access checks.
pub(crate) struct Item {
    pub(crate) volid: String,
    pub(crate) vtype: String,
    pub(crate) owner: Option<u32>,
    pub(crate) json: Value,
}

/// What `parse_volname` would say about a volume name: content type and owner.
pub(crate) fn classify(volname: &str) -> (String, Option<u32>) {
    if let Some(file) = volname.strip_prefix("backup/") {
        let owner = file
            .strip_prefix("vzdump-")
            .and_then(|r| r.split_once('-'))
            .and_then(|(_, r)| r.split('-').next())
            .and_then(|id| id.parse().ok());
        return ("backup".to_string(), owner);
    }
    for t in ["vztmpl", "iso", "snippets", "import"] {
        if volname.starts_with(&format!("{t}/")) {
            return (t.to_string(), None);
        }
    }
    // vm-100-disk-0, subvol-100-disk-0, 100/vm-100-disk-0.raw
    let owner = volname
        .split(['/', '-'])
        .find(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse().ok());
    ("images".to_string(), owner)
}

fn content_list(st: &Storage) -> String {
    let mut c = st.spec.content.clone();
    c.sort();
    c.dedup();
    c.join(",")
}

/// Guest disks and stored volumes of one storage.
pub(crate) fn items(inner: &Inner, sid: &str) -> Vec<Item> {
    let mut out = Vec::new();
    let Some(st) = inner.storages.get(sid) else {
        return out;
    };
    for v in st.volumes.values() {
        let (vtype, owner) = classify(&v.name);
        let mut m = Map::new();
        let volid = format!("{sid}:{}", v.name);
        m.insert("volid".into(), json!(volid));
        m.insert("content".into(), json!(v.content));
        m.insert("format".into(), json!(v.format));
        m.insert("size".into(), json!(v.size));
        m.insert("ctime".into(), json!(v.ctime));
        if let Some(id) = v.vmid.or(owner) {
            m.insert("vmid".into(), json!(id));
        }
        if let Some(s) = &v.subtype {
            m.insert("subtype".into(), json!(s));
        }
        if let Some(n) = &v.notes {
            // only the first line of the .notes file is listed
            m.insert("notes".into(), json!(n.split('\n').next().unwrap_or("")));
        }
        if v.protected {
            m.insert("protected".into(), json!(1));
        }
        out.push(Item {
            volid,
            vtype: if v.content == "backup" {
                "backup".into()
            } else {
                vtype
            },
            owner: v.vmid.or(owner),
            json: Value::Object(m),
        });
    }
    for g in inner.guests.values() {
        for mp in g.volumes() {
            let Some((vsid, _)) = lxcconf::parse_volume_id(&mp.volume) else {
                continue;
            };
            if vsid != sid {
                continue;
            }
            let volid = mp.volume.clone();
            out.push(Item {
                volid: volid.clone(),
                vtype: "images".to_string(),
                owner: Some(g.vmid),
                json: json!({
                    "volid": volid,
                    // list_volumes: volumes of LXC guests are listed as rootdir
                    "content": "rootdir",
                    "format": "raw",
                    "size": mp.size.unwrap_or(4 << 30),
                    "ctime": inner.boot_epoch,
                    "vmid": g.vmid,
                }),
            });
        }
    }
    out.sort_by(|a, b| a.volid.cmp(&b.volid));
    out
}

/// `check_volume_access` (no target vmid): may `authid` see this volume?
pub(crate) fn volume_visible(ctx: &Ctx<'_>, sid: &str, item: &Item) -> bool {
    let spath = format!("/storage/{sid}");
    if ctx.allowed(&spath, &["Datastore.Allocate"]) {
        return true;
    }
    match (item.vtype.as_str(), item.owner) {
        ("iso" | "vztmpl" | "import", _) => ctx
            .inner
            .principals
            .allows(ctx.authid, &spath, LIST_PRIVS, true),
        ("backup", Some(owner)) => {
            ctx.allowed(&spath, &["Datastore.AllocateSpace"])
                && ctx.allowed(&format!("/vms/{owner}"), &["VM.Backup"])
        }
        ("images" | "rootdir", Some(owner)) => {
            ctx.allowed(&spath, &["Datastore.Audit"])
                && ctx.allowed(&format!("/vms/{owner}"), &["VM.Config.Disk"])
        }
        _ => false,
    }
}

fn storage_cfg_digest(inner: &Inner) -> String {
    let mut text = String::new();
    for (id, st) in &inner.storages {
        text.push_str(&format!(
            "{}: {id}\n\tcontent {}\n",
            st.spec.storage_type,
            content_list(st)
        ));
        for (k, v) in &st.spec.settings {
            text.push_str(&format!("\t{k} {v}\n"));
        }
        text.push('\n');
    }
    lxcconf::digest(&text)
}

pub(super) fn index(ctx: &mut Ctx<'_>) -> ApiResult {
    let digest = storage_cfg_digest(ctx.inner);
    let type_filter = ctx.params.str("type");
    let mut out = Vec::new();
    for (id, st) in &ctx.inner.storages {
        if !ctx
            .inner
            .principals
            .allows(ctx.authid, &format!("/storage/{id}"), LIST_PRIVS, true)
        {
            continue;
        }
        if type_filter
            .as_deref()
            .is_some_and(|t| t != st.spec.storage_type)
        {
            continue;
        }
        let mut m = Map::new();
        m.insert("storage".into(), json!(id));
        m.insert("type".into(), json!(st.spec.storage_type));
        m.insert("content".into(), json!(content_list(st)));
        m.insert("digest".into(), json!(digest));
        for (k, v) in &st.spec.settings {
            m.insert(k.clone(), json!(v));
        }
        if st.spec.shared {
            m.insert("shared".into(), json!(1));
        }
        if !st.spec.enabled {
            m.insert("disable".into(), json!(1));
        }
        if st.supports("backup") {
            m.insert("prune-backups".into(), json!("keep-all=1"));
        }
        out.push(Value::Object(m));
    }
    Ok(Reply::data(Value::Array(out)))
}

/// Bytes in use on a storage: the unmodelled part plus every listed volume.
pub(crate) fn used_bytes(inner: &Inner, sid: &str) -> u64 {
    let base = inner
        .storages
        .get(sid)
        .map(|s| s.spec.base_used)
        .unwrap_or(0);
    // the sizes `items` lists, summed without building the listing (a storage index reads
    // this for every storage on every heartbeat)
    let Some(st) = inner.storages.get(sid) else {
        return base;
    };
    let stored: u64 = st.volumes.values().map(|v| v.size).sum();
    let disks: u64 = inner
        .guests
        .values()
        .flat_map(|g| g.volumes())
        .filter(|mp| lxcconf::parse_volume_id(&mp.volume).is_some_and(|(vsid, _)| vsid == sid))
        .map(|mp| mp.size.unwrap_or(4 << 30))
        .sum();
    base + stored + disks
}

pub(super) fn node_index(ctx: &mut Ctx<'_>) -> ApiResult {
    if let Some(only) = ctx.params.str("storage") {
        if !ctx.inner.storages.contains_key(&only) {
            return Err(ApiError::param("storage", "No such storage.".to_string()));
        }
    }
    let wanted: Vec<String> = ctx
        .params
        .str("content")
        .map(|c| lxcconf::split_list(&c))
        .unwrap_or_default();
    let only_enabled = ctx.params.flag("enabled");
    let only = ctx.params.str("storage");
    let mut out = Vec::new();
    for (id, st) in &ctx.inner.storages {
        if only.as_deref().is_some_and(|o| o != id) {
            continue;
        }
        if !ctx
            .inner
            .principals
            .allows(ctx.authid, &format!("/storage/{id}"), LIST_PRIVS, true)
        {
            continue;
        }
        if !wanted.is_empty() && !wanted.iter().any(|w| st.supports(w)) {
            continue;
        }
        if only_enabled && !st.spec.enabled {
            continue;
        }
        let mut m = Map::new();
        m.insert("storage".into(), json!(id));
        m.insert("type".into(), json!(st.spec.storage_type));
        m.insert("content".into(), json!(content_list(st)));
        m.insert("shared".into(), json!(u8::from(st.spec.shared)));
        m.insert("enabled".into(), json!(u8::from(st.spec.enabled)));
        if st.spec.enabled {
            let total = st.spec.total;
            let used = used_bytes(ctx.inner, id).min(total);
            m.insert("active".into(), json!(1));
            m.insert("total".into(), json!(total));
            m.insert("used".into(), json!(used));
            m.insert("avail".into(), json!(total - used));
            if total > 0 {
                m.insert("used_fraction".into(), json!(used as f64 / total as f64));
            }
        } else {
            m.insert("active".into(), json!(0));
            m.insert("total".into(), json!(0));
            m.insert("used".into(), json!(0));
            m.insert("avail".into(), json!(0));
        }
        out.push(Value::Object(m));
    }
    Ok(Reply::data(Value::Array(out)))
}

pub(super) fn content(ctx: &mut Ctx<'_>) -> ApiResult {
    let sid = ctx.params.str("storage").unwrap_or_default();
    let Some(st) = ctx.inner.storages.get(&sid) else {
        return Err(ApiError::internal(format!(
            "storage '{sid}' does not exist"
        )));
    };
    if !st.spec.enabled {
        return Err(ApiError::internal(format!("storage '{sid}' is disabled")));
    }
    let content = ctx.params.str("content");
    let vmid = ctx.params.int("vmid").and_then(|v| u32::try_from(v).ok());
    let mut out = Vec::new();
    for item in items(ctx.inner, &sid) {
        if content
            .as_deref()
            .is_some_and(|c| item.json["content"] != c)
        {
            continue;
        }
        if vmid.is_some() && item.owner != vmid {
            continue;
        }
        // volumes the caller may not access are skipped, not refused
        if !volume_visible(ctx, &sid, &item) {
            continue;
        }
        out.push(item.json);
    }
    Ok(Reply::data(Value::Array(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_classify_like_parse_volname() {
        assert_eq!(
            classify("backup/vzdump-lxc-100-2025_01_02-03_04_05.tar.zst"),
            ("backup".to_string(), Some(100))
        );
        assert_eq!(
            classify("vztmpl/debian.tar.zst"),
            ("vztmpl".to_string(), None)
        );
        assert_eq!(classify("vm-101-disk-0"), ("images".to_string(), Some(101)));
        assert_eq!(
            classify("105/vm-105-disk-0.raw"),
            ("images".to_string(), Some(105))
        );
    }

    #[test]
    fn used_bytes_sums_what_the_content_listing_lists() {
        use crate::config::{GuestSpec, SimConfig};
        let config = SimConfig::default()
            .guest(GuestSpec::new(102, "files").rootfs("local:102/vm-102-disk-0.raw,size=3G"))
            .guest(
                GuestSpec::new(103, "nosize")
                    .rootfs("local-lvm:vm-103-disk-0")
                    .set("mp0", "local:103/vm-103-disk-1.raw,mp=/srv,size=1G"),
            );
        let inner = Inner::from_config(&config, String::new()).unwrap();
        for sid in ["local", "local-lvm", "missing"] {
            let base = inner.storages.get(sid).map_or(0, |s| s.spec.base_used);
            let listed: u64 = items(&inner, sid)
                .iter()
                .map(|i| i.json["size"].as_u64().unwrap_or(0))
                .sum();
            assert_eq!(used_bytes(&inner, sid), base + listed, "{sid}");
        }
        assert!(used_bytes(&inner, "local-lvm") > inner.storages["local-lvm"].spec.base_used);
    }
}

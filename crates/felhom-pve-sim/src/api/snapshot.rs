//! LXC snapshots (`pve-container` `API2/LXC/Snapshot.pm` over `AbstractConfig`'s snapshot
//! code): list, create, rollback (restores the snapshot's config, keeps the description,
//! stops a running CT) and delete, each with its config lock while the task runs.

use serde_json::{json, Map, Value};

use super::{lock_error, ApiError, ApiResult, Ctx, Reply};
use crate::lxcconf::{self, Section};
use crate::state::{Guest, Inner};

pub(super) fn list(ctx: &mut Ctx<'_>) -> ApiResult {
    let vmid = ctx.vmid();
    let g = ctx.guest(vmid)?;
    let mut out = Vec::new();
    for (name, snap) in &g.snapshots {
        let mut m = Map::new();
        m.insert("name".into(), json!(name));
        m.insert(
            "snaptime".into(),
            json!(snap
                .keys
                .get("snaptime")
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0)),
        );
        m.insert(
            "description".into(),
            json!(snap.description().unwrap_or_default()),
        );
        if let Some(p) = snap.keys.get("parent") {
            m.insert("parent".into(), json!(p));
        }
        out.push(Value::Object(m));
    }
    // the synthetic entry: literally "You are here!", no newline
    let mut current = Map::new();
    current.insert("name".into(), json!("current"));
    current.insert("digest".into(), json!(g.digest()));
    current.insert("running".into(), json!(u8::from(g.running)));
    current.insert("description".into(), json!("You are here!"));
    if let Some(p) = g.conf.keys.get("parent") {
        current.insert("parent".into(), json!(p));
    }
    out.push(Value::Object(current));
    Ok(Reply::data(Value::Array(out)))
}

fn snapshots_supported(inner: &Inner, g: &Guest) -> bool {
    g.volumes().iter().all(|mp| {
        lxcconf::parse_volume_id(&mp.volume)
            .and_then(|(sid, _)| inner.storages.get(sid))
            .is_some_and(|s| s.snapshots_supported())
    })
}

/// `__snapshot_copy_config`: everything but the lock, description, unused disks and snapshot
/// bookkeeping.
fn copy_config(source: &Section) -> Section {
    let keys = source
        .keys
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "snapstate" | "snaptime" | "vmstate" | "lock" | "digest"
            ) && !k.starts_with("unused")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Section {
        description: Vec::new(),
        keys,
    }
}

fn clear_lock(inner: &mut Inner, vmid: u32, lock: &str) {
    if let Some(g) = inner.guests.get_mut(&vmid) {
        if g.lock() == Some(lock) {
            g.set_lock(None);
        }
    }
}

pub(super) fn create(ctx: &mut Ctx<'_>) -> ApiResult {
    let vmid = ctx.vmid();
    let snapname = ctx.params.str("snapname").unwrap_or_default();
    for reserved in ["current", "vzdump", "pending"] {
        if snapname.eq_ignore_ascii_case(reserved) {
            return Err(ApiError::internal(format!(
                "unable to use snapshot name '{snapname}' (reserved name)"
            )));
        }
    }
    let comment = ctx.params.str("description");
    let vm = vmid.to_string();
    // __snapshot_prepare, inside the worker
    let early = match ctx.inner.guests.get(&vmid) {
        None => Some(ctx.no_config(vmid)),
        Some(g) if g.is_template() => {
            Some("you can't take a snapshot if it's a template".to_string())
        }
        Some(g) => lock_error(g)
            .or_else(|| {
                g.snapshots
                    .contains_key(&snapname)
                    .then(|| format!("snapshot name '{snapname}' already used"))
            })
            .or_else(|| {
                (!snapshots_supported(ctx.inner, g))
                    .then(|| "snapshot feature is not available".to_string())
            }),
    };
    if let Some(err) = early {
        let upid = ctx.inner.spawn_failed_task(
            ctx.faults,
            "vzsnapshot",
            &vm,
            ctx.authid,
            Vec::new(),
            &err,
        );
        return Ok(Reply::data(json!(upid)));
    }
    let now = ctx.now();
    if let Some(g) = ctx.inner.guests.get_mut(&vmid) {
        g.set_lock(Some("snapshot"));
    }
    let no_config = ctx.no_config(vmid);
    let upid = ctx.inner.spawn_task(
        ctx.faults,
        "vzsnapshot",
        &vm,
        ctx.authid,
        Vec::new(),
        Box::new(
            move |inner: &mut Inner, fail: Option<&str>, _log: &mut Vec<String>| {
                clear_lock(inner, vmid, "snapshot");
                if let Some(msg) = fail {
                    return Err(msg.to_string());
                }
                let g = inner.guests.get_mut(&vmid).ok_or(no_config)?;
                let mut snap = copy_config(&g.conf);
                snap.keys.insert("snaptime".into(), now.to_string());
                snap.set_description(comment.as_deref().unwrap_or(""));
                g.snapshots.insert(snapname.clone(), snap);
                g.conf.keys.insert("parent".into(), snapname);
                Ok(())
            },
        ),
    );
    Ok(Reply::data(json!(upid)))
}

pub(super) fn rollback(ctx: &mut Ctx<'_>) -> ApiResult {
    let vmid = ctx.vmid();
    let snapname = ctx.params.str("snapname").unwrap_or_default();
    let start = ctx.params.flag("start");
    let vm = vmid.to_string();
    let early = match ctx.inner.guests.get(&vmid) {
        None => Some(ctx.no_config(vmid)),
        Some(g) if !g.snapshots.contains_key(&snapname) => {
            Some(format!("snapshot '{snapname}' does not exist"))
        }
        Some(g) => lock_error(g),
    };
    if let Some(err) = early {
        let upid = ctx.inner.spawn_failed_task(
            ctx.faults,
            "vzrollback",
            &vm,
            ctx.authid,
            Vec::new(),
            &err,
        );
        return Ok(Reply::data(json!(upid)));
    }
    let mut log = Vec::new();
    if let Some(g) = ctx.inner.guests.get_mut(&vmid) {
        g.set_lock(Some("rollback"));
        // __snapshot_rollback_vm_stop: a running CT is stopped first
        if g.running {
            g.running = false;
            log.push(format!("stopping CT {vmid}"));
        }
    }
    let no_config = ctx.no_config(vmid);
    let upid = ctx.inner.spawn_task(
        ctx.faults,
        "vzrollback",
        &vm,
        ctx.authid,
        log,
        Box::new(
            move |inner: &mut Inner, fail: Option<&str>, log: &mut Vec<String>| {
                clear_lock(inner, vmid, "rollback");
                if let Some(msg) = fail {
                    return Err(msg.to_string());
                }
                let now = inner.clock.now();
                let pid = inner.next_guest_pid();
                let g = inner.guests.get_mut(&vmid).ok_or(no_config)?;
                let snap = g
                    .snapshots
                    .get(&snapname)
                    .ok_or_else(|| format!("snapshot '{snapname}' does not exist"))?;
                // __snapshot_apply_config: keep description and unused disks, copy the rest
                let mut conf = copy_config(snap);
                conf.description = g.conf.description.clone();
                for (k, v) in &g.conf.keys {
                    if k.starts_with("unused") {
                        conf.keys.insert(k.clone(), v.clone());
                    }
                }
                conf.keys.insert("parent".into(), snapname.clone());
                g.conf = conf;
                if start {
                    g.running = true;
                    g.started_at = now;
                    g.pid = pid;
                    log.push(format!("starting CT {vmid}"));
                }
                Ok(())
            },
        ),
    );
    Ok(Reply::data(json!(upid)))
}

pub(super) fn delete(ctx: &mut Ctx<'_>) -> ApiResult {
    let vmid = ctx.vmid();
    let snapname = ctx.params.str("snapname").unwrap_or_default();
    let force = ctx.params.flag("force");
    let vm = vmid.to_string();
    let early = match ctx.inner.guests.get(&vmid) {
        None => Some(ctx.no_config(vmid)),
        Some(g) if !g.snapshots.contains_key(&snapname) => {
            Some(format!("snapshot '{snapname}' does not exist"))
        }
        Some(g) if !force => lock_error(g),
        Some(_) => None,
    };
    if let Some(err) = early {
        let upid = ctx.inner.spawn_failed_task(
            ctx.faults,
            "vzdelsnapshot",
            &vm,
            ctx.authid,
            Vec::new(),
            &err,
        );
        return Ok(Reply::data(json!(upid)));
    }
    if let Some(g) = ctx.inner.guests.get_mut(&vmid) {
        g.set_lock(Some("snapshot-delete"));
    }
    let no_config = ctx.no_config(vmid);
    let upid = ctx.inner.spawn_task(
        ctx.faults,
        "vzdelsnapshot",
        &vm,
        ctx.authid,
        Vec::new(),
        Box::new(
            move |inner: &mut Inner, fail: Option<&str>, _log: &mut Vec<String>| {
                clear_lock(inner, vmid, "snapshot-delete");
                if let Some(msg) = fail {
                    return Err(msg.to_string());
                }
                let g = inner.guests.get_mut(&vmid).ok_or(no_config)?;
                let removed = g
                    .snapshots
                    .remove(&snapname)
                    .ok_or_else(|| format!("snapshot '{snapname}' does not exist"))?;
                // children and the current config point at the removed one's parent instead
                let new_parent = removed.keys.get("parent").cloned();
                let repoint = |keys: &mut std::collections::BTreeMap<String, String>| {
                    if keys.get("parent") == Some(&snapname) {
                        match &new_parent {
                            Some(p) => keys.insert("parent".into(), p.clone()),
                            None => keys.remove("parent"),
                        };
                    }
                };
                for s in g.snapshots.values_mut() {
                    repoint(&mut s.keys);
                }
                repoint(&mut g.conf.keys);
                Ok(())
            },
        ),
    );
    Ok(Reply::data(json!(upid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_copies_leave_out_bookkeeping_and_description() {
        let mut s = Section::new(Some("desc"), Default::default());
        for (k, v) in [
            ("cores", "2"),
            ("lock", "backup"),
            ("unused0", "x"),
            ("snaptime", "1"),
            ("parent", "a"),
        ] {
            s.keys.insert(k.into(), v.into());
        }
        let c = copy_config(&s);
        assert_eq!(c.keys.keys().collect::<Vec<_>>(), ["cores", "parent"]);
        assert!(c.description.is_empty());
    }
}

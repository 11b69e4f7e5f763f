//! `POST /nodes/{node}/vzdump` (`PVE::API2::VZDump` + `PVE::VZDump::exec_backup`): the storage
//! privilege is checked at the POST, `VM.Backup` inside the worker (a token without it gets a
//! UPID and a failed task). Each guest gets `lock: backup` while the task runs and a
//! `vzdump-lxc-<vmid>-<time>.tar.<ext>` volume when it completes.

use serde_json::json;

use super::{ApiError, ApiResult, Ctx, Reply};
use crate::clock::{log_timestamp, vzdump_timestamp};
use crate::config::VolumeSpec;
use crate::lxcconf;
use crate::state::Inner;

fn archive_format(compress: &str) -> &'static str {
    match compress {
        "0" => "tar",
        "1" | "lzo" => "tar.lzo",
        "gzip" => "tar.gz",
        _ => "tar.zst",
    }
}

fn expand_notes(template: &str, name: &str, node: &str, vmid: u32) -> String {
    template
        .replace("{{cluster}}", node)
        .replace("{{guestname}}", name)
        .replace("{{node}}", node)
        .replace("{{vmid}}", &vmid.to_string())
}

pub(super) fn vzdump(ctx: &mut Ctx<'_>) -> ApiResult {
    let all = ctx.params.flag("all");
    let vmid_list = ctx.params.str("vmid");
    if all && vmid_list.is_some() {
        return Err(ApiError::param(
            "all",
            "option conflicts with option 'vmid'".to_string(),
        ));
    }
    if !(all || ctx.params.flag("stop") || ctx.params.contains("pool")) && vmid_list.is_none() {
        return Err(ApiError::param(
            "vmid",
            "property is missing and it is not optional".to_string(),
        ));
    }
    for root_only in ["tmpdir", "dumpdir", "script", "job-id"] {
        if ctx.params.contains(root_only) {
            return Err(ApiError::param(
                root_only,
                "Only root may set this option.".to_string(),
            ));
        }
    }
    let storage = ctx
        .params
        .str("storage")
        .unwrap_or_else(|| "local".to_string());
    ctx.check(&format!("/storage/{storage}"), &["Datastore.AllocateSpace"])?;

    let node = ctx.inner.node.clone();
    let requested: Vec<u32> = if all {
        ctx.inner.guests.keys().copied().collect()
    } else {
        let mut ids: Vec<u32> = lxcconf::split_list(&vmid_list.unwrap_or_default())
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let local: Vec<u32> = requested
        .iter()
        .copied()
        .filter(|id| ctx.inner.guests.contains_key(id))
        .collect();
    if !all && local.is_empty() {
        // nothing to back up on this node: the API answers without forking a worker
        return Ok(Reply::data(json!("OK")));
    }
    let task_id = if local.len() == 1 {
        local[0].to_string()
    } else {
        String::new()
    };
    let mode = ctx
        .params
        .str("mode")
        .unwrap_or_else(|| "snapshot".to_string());
    let compress = ctx
        .params
        .str("compress")
        .unwrap_or_else(|| "zstd".to_string());
    let notes_template = ctx.params.str("notes-template");
    let protected = ctx.params.flag("protected");
    let mut cmdline = format!(
        "vzdump {} --storage {storage} --mode {mode} --compress {compress}",
        local
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if all {
        cmdline = format!("vzdump --all 1 --storage {storage} --mode {mode} --compress {compress}");
    }
    if let Some(t) = &notes_template {
        cmdline.push_str(&format!(" --notes-template '{t}'"));
    }
    if protected {
        cmdline.push_str(" --protected 1");
    }
    cmdline.push_str(&format!(" --node {node}"));
    let log = vec![format!("INFO: starting new backup job: {cmdline}")];

    // PVE::VZDump->new and exec_backup, inside the worker
    let early = match ctx.inner.storages.get(&storage) {
        None => Some(format!("storage '{storage}' does not exist")),
        Some(st) if !st.supports("backup") => {
            Some(format!("storage '{storage}' does not support backups"))
        }
        Some(_) => None,
    };
    let early = early.or_else(|| {
        if all {
            return None;
        }
        local
            .iter()
            .find_map(|id| ctx.check(&format!("/vms/{id}"), &["VM.Backup"]).err())
            .map(|e| e.message)
    });
    if let Some(err) = early {
        let upid = ctx
            .inner
            .spawn_failed_task(ctx.faults, "vzdump", &task_id, ctx.authid, log, &err);
        return Ok(Reply::data(json!(upid)));
    }
    // with --all, guests the caller may not back up are skipped silently
    let targets: Vec<u32> = local
        .into_iter()
        .filter(|id| !all || ctx.allowed(&format!("/vms/{id}"), &["VM.Backup"]))
        .collect();
    // guests already locked fail individually; the others carry lock: backup meanwhile
    let mut locked_before = Vec::new();
    for id in &targets {
        if let Some(g) = ctx.inner.guests.get_mut(id) {
            match g.lock() {
                Some(l) => locked_before.push((*id, l.to_string())),
                None => g.set_lock(Some("backup")),
            }
        }
    }
    let dumpdir = ctx
        .inner
        .storages
        .get(&storage)
        .and_then(|s| s.spec.settings.get("path"))
        .map(|p| format!("{p}/dump"))
        .unwrap_or_else(|| format!("/mnt/pve/{storage}/dump"));
    let started = ctx.now();
    let effect = move |inner: &mut Inner,
                       fail: Option<&str>,
                       lines: &mut Vec<String>|
          -> Result<(), String> {
        let release = |inner: &mut Inner| {
            for id in &targets {
                if let Some(g) = inner.guests.get_mut(id) {
                    if g.lock() == Some("backup") {
                        g.set_lock(None);
                    }
                }
            }
        };
        if let Some(msg) = fail {
            release(inner);
            return Err(msg.to_string());
        }
        let mut errors = 0;
        let format = archive_format(&compress);
        for id in &targets {
            lines.push(format!("INFO: Starting Backup of VM {id} (lxc)"));
            if let Some((_, l)) = locked_before.iter().find(|(v, _)| v == id) {
                lines.push(format!(
                    "ERROR: Backup of VM {id} failed - CT is locked ({l})"
                ));
                errors += 1;
                continue;
            }
            let Some(g) = inner.guests.get(id) else {
                lines.push(format!("ERROR: Backup of VM {id} failed - unable to find configuration file for VM {id}"));
                errors += 1;
                continue;
            };
            let name = g.name();
            let ts = vzdump_timestamp(started);
            let file = format!("vzdump-lxc-{id}-{ts}.{format}");
            let mut config = g.conf.keys.clone();
            config.remove("lock");
            let size = super::lxc::vmstatus(inner, g, false)["maxdisk"]
                .as_u64()
                .unwrap_or(0)
                / 6;
            lines.push(format!(
                "INFO: Backup started at {}",
                log_timestamp(started)
            ));
            lines.push(format!(
                "INFO: status = {}",
                if g.running { "running" } else { "stopped" }
            ));
            lines.push(format!("INFO: CT Name: {name}"));
            lines.push("INFO: including mount point rootfs ('/') in backup".to_string());
            lines.push(format!("INFO: creating vzdump archive '{dumpdir}/{file}'"));
            lines.push(format!(
                "INFO: Total bytes written: {} ({}MiB, 120MiB/s)",
                size * 2,
                size * 2 / (1 << 20)
            ));
            lines.push(format!("INFO: archive file size: {}MB", size / 1_000_000));
            let notes = notes_template
                .as_ref()
                .map(|t| expand_notes(t, &name, &inner.node, *id));
            if notes.is_some() {
                lines.push("INFO: adding notes to backup".to_string());
            }
            if protected {
                lines.push("INFO: marking backup as protected".to_string());
            }
            let volume = VolumeSpec {
                name: format!("backup/{file}"),
                content: "backup".to_string(),
                format: format.to_string(),
                size,
                ctime: started,
                vmid: Some(*id),
                subtype: Some("lxc".to_string()),
                notes,
                protected,
                guest_config: Some(config),
                guest_description: g.conf.description(),
            };
            if let Some(st) = inner.storages.get_mut(&storage) {
                st.volumes.insert(volume.name.clone(), volume);
            }
            let elapsed = inner.clock.now().saturating_sub(started);
            lines.push(format!(
                "INFO: Finished Backup of VM {id} ({:02}:{:02}:{:02})",
                elapsed / 3600,
                elapsed / 60 % 60,
                elapsed % 60
            ));
            lines.push(format!(
                "INFO: Backup finished at {}",
                log_timestamp(inner.clock.now())
            ));
        }
        release(inner);
        if errors > 0 {
            lines.push("INFO: Backup job finished with errors".to_string());
            Err("job errors".to_string())
        } else {
            lines.push("INFO: Backup job finished successfully".to_string());
            Ok(())
        }
    };
    let upid = ctx.inner.spawn_task(
        ctx.faults,
        "vzdump",
        &task_id,
        ctx.authid,
        log,
        Box::new(effect),
    );
    Ok(Reply::data(json!(upid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_notes() {
        assert_eq!(archive_format("zstd"), "tar.zst");
        assert_eq!(archive_format("0"), "tar");
        assert_eq!(archive_format("1"), "tar.lzo");
        assert_eq!(
            expand_notes("{{guestname}} on {{node}} ({{vmid}})", "web", "pve", 100),
            "web on pve (100)"
        );
    }
}
